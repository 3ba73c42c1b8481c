from django.core.management.base import BaseCommand, CommandError

from apikeys.models import ApiKey
from apikeys.selectors import api_keys_matching
from billing.services import account_get_or_create
from generations.limits import key_limits_set, limits_effective
from hub.http.bounds import column_option
from hub.http.errors import HubError
from hub.limits import LIMIT_NAMES, Limits

UNSET = object()  # an option not given (None is "none": clear the limit)
OPTIONS = {"models": "allowed_models", **{name: name for name in LIMIT_NAMES[1:]}}


def _models(text: str) -> list[str] | None:
    if text.strip().lower() == "none":
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


class Command(BaseCommand):
    help = (
        "Show or set an API key's limits. The key is named by its id (key_…) or a unique leading part of"
        " it, e.g. the display prefix gih_live_AbC4 shown in the account pages. Each option sets one"
        " limit; 'none' clears it (the account type's default then applies); --clear clears them all."
        " Prints the key's own limits and the effective ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("key", help="key id (key_…), display prefix (gih_live_AbC4) or a longer leading part")
        parser.add_argument("--models", type=_models, default=UNSET, help="allowed model ids, comma-separated, or none")
        parser.add_argument(
            "--images-per-minute",
            type=column_option(ApiKey, "images_per_minute", min_value=1, none=True),
            default=UNSET,
            help="images per sliding minute, or none",
        )
        parser.add_argument(
            "--concurrency",
            type=column_option(ApiKey, "concurrency", min_value=1, none=True),
            default=UNSET,
            help="unfinished generations at once, or none",
        )
        parser.add_argument(
            "--monthly-credits",
            type=column_option(ApiKey, "monthly_credits", min_value=0, none=True),
            default=UNSET,
            help="credits per calendar month (UTC), or none",
        )
        parser.add_argument("--clear", action="store_true", help="clear every limit of the key first")

    def handle(self, *args, key, clear, **options):
        text = key.strip()
        matches = list(api_keys_matching(text=text)[:2])
        if not matches:
            raise CommandError(f"No active API key matches {text!r}")
        if len(matches) > 1:
            raise CommandError(f"{text!r} matches several active keys; name it by a longer part or its id (key_…)")
        (found,) = matches
        changes = dict.fromkeys(LIMIT_NAMES) if clear else {}
        changes.update({name: options[option] for option, name in OPTIONS.items() if options[option] is not UNSET})
        try:
            if changes:
                found = key_limits_set(key=found, within_defaults=False, **changes)
        except HubError as exc:
            raise CommandError(exc.message) from None
        account_type = account_get_or_create(user=found.owner).account_type
        effective = limits_effective(api_key=found, account_type=account_type)
        self.stdout.write(f"{found.display_prefix}… ({found.name or 'unnamed'}) of {found.owner.email}: {found.pk}")
        self.stdout.write(f"key:       {Limits.of(found).describe()}")
        self.stdout.write(f"effective: {effective.describe()}  (account type {account_type})")
