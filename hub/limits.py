"""The four limits a key can carry, in one place: the fields (on `apikeys.ApiKey` and, as the
defaults of an account type, on `billing.AccountTypeLimits` — which may not import each other,
so both take them from here) and the effective set a request is checked against."""

from dataclasses import dataclass, fields

from django.core.validators import MinValueValidator
from django.db import models

LIMIT_NAMES = ("allowed_models", "images_per_minute", "concurrency", "monthly_credits")


class LimitFields(models.Model):
    """Each field null = no limit of its own (a key then falls back to its account type's default)."""

    allowed_models = models.JSONField(
        null=True, blank=True, help_text='Model ids this key may use, e.g. ["gpt-image-2"]; empty = every model'
    )
    images_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Images per sliding minute (n counts)"
    )
    concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Unfinished (queued or running) generations at once",
    )
    monthly_credits = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Credits charged minus refunded per calendar month (UTC)"
    )

    class Meta:
        abstract = True


@dataclass(frozen=True)
class Limits:
    allowed_models: list[str] | None = None
    images_per_minute: int | None = None
    concurrency: int | None = None
    monthly_credits: int | None = None

    @classmethod
    def of(cls, row) -> "Limits":
        """The limits a LimitFields row sets (None: no row)."""
        if row is None:
            return cls()
        return cls(**{name: getattr(row, name) for name in LIMIT_NAMES})

    def over(self, defaults: "Limits") -> "Limits":
        """These limits, each one that is unset taken from `defaults`."""
        return Limits(
            **{
                f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(defaults, f.name)
                for f in fields(self)
            }
        )

    def describe(self) -> str:
        models_text = ",".join(self.allowed_models) if self.allowed_models else "any"
        return (
            f"models={models_text} images_per_minute={_or_none(self.images_per_minute)}"
            f" concurrency={_or_none(self.concurrency)} monthly_credits={_or_none(self.monthly_credits)}"
        )


def _or_none(value) -> str:
    return "none" if value is None else str(value)
