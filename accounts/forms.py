from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from apikeys.models import ApiKey
from billing.models import AutoTopUp, CreditAccount
from billing.money import money
from generations.schema import N_MAX
from generations.schema_fields import PROMPT_MAX_LENGTH
from generations.webhook_urls import WEBHOOK_URL_MAX_LENGTH
from hub.http.bounds import integer_form_field

EXPIRY_CHOICES = [("", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In 1 year")]


def _email_field(**attrs) -> forms.EmailField:
    return forms.EmailField(
        label="Email",
        max_length=150,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autocapitalize": "none", **attrs}),
    )


class SignUpForm(forms.Form):
    email = _email_field(autofocus=True)
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean_email(self) -> str:
        # Whether the address already has an account is never said here (accounts.services.user_sign_up).
        return self.cleaned_data["email"].strip().lower()

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password1")
        if password and password != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        elif password and cleaned.get("email"):
            User = get_user_model()
            try:
                password_validation.validate_password(password, User(username=cleaned["email"], email=cleaned["email"]))
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class EmailAuthenticationForm(AuthenticationForm):
    username = _email_field(autofocus=True)

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "e.g. production server"}))
    expires_in = forms.ChoiceField(label="Expires", choices=EXPIRY_CHOICES, required=False)

    def expires_at(self):
        days = self.cleaned_data["expires_in"]
        return timezone.now() + timedelta(days=int(days)) if days else None


class ApiKeyLimitsForm(forms.Form):
    """A key's own limits; a blank field means the plan's default (shown as the placeholder)."""

    allowed_models = forms.MultipleChoiceField(
        label="Allowed models",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every model your plan allows.",
    )
    images_per_minute = integer_form_field(
        ApiKey, "images_per_minute", min_value=1, label="Images per minute", required=False
    )
    concurrency = integer_form_field(
        ApiKey,
        "concurrency",
        min_value=1,
        label="Generations at once",
        required=False,
        help_text="Queued and running together.",
    )
    monthly_credits = integer_form_field(
        ApiKey,
        "monthly_credits",
        min_value=0,
        label="Credits per month",
        required=False,
        help_text="Charged minus refunded, per UTC month.",
    )

    def __init__(self, *args, model_ids: list[str], defaults, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].choices = [(model_id, model_id) for model_id in model_ids]
        for name in ("images_per_minute", "concurrency", "monthly_credits"):
            default = getattr(defaults, name)
            self.fields[name].widget.attrs["placeholder"] = f"plan: {default}" if default is not None else "no limit"

    def limits(self) -> dict:
        return {**self.cleaned_data, "allowed_models": self.cleaned_data["allowed_models"] or None}


class AutoTopUpForm(forms.Form):
    pack = forms.ChoiceField(label="Pack to buy")
    threshold = integer_form_field(
        AutoTopUp,
        "threshold",
        min_value=1,
        label="Threshold",
        help_text="credits: bought when a charge takes the balance under it",
    )

    def __init__(self, *args, packs, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pack"].choices = [
            (pack.id, f"{pack.name} — {pack.credits} credits, {money(pack.price_cents, pack.currency)}")
            for pack in packs
        ]


class AlertsForm(forms.Form):
    low_balance_threshold = integer_form_field(
        CreditAccount,
        "low_balance_threshold",
        min_value=1,
        required=False,
        label="Low-balance threshold",
        help_text="credits; blank: no alert.",
    )
    webhook_url = forms.CharField(
        label="Webhook endpoint for account events",
        max_length=WEBHOOK_URL_MAX_LENGTH,
        required=False,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/hub"}),
        help_text="blank: email only.",
    )


class PlaygroundForm(forms.Form):
    """The playground's request: the catalog's rules (a size or quality the model lacks) are the
    submit service's, shown on their field like the API's `param`."""

    prompt = forms.CharField(
        label="Prompt",
        max_length=PROMPT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "A lighthouse at dawn, watercolor"}),
    )
    model = forms.ChoiceField(label="Model")
    size = forms.ChoiceField(label="Size")
    quality = forms.ChoiceField(label="Quality")
    n = forms.TypedChoiceField(
        label="Images", coerce=int, choices=[(count, count) for count in range(1, N_MAX + 1)], initial=1
    )

    def __init__(self, *args, models, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(model.id, model.id) for model in models]
        # Every model's sizes and qualities: the page's script narrows them to the model chosen.
        for name, values in (("size", "sizes"), ("quality", "qualities")):
            offered = dict.fromkeys(value for model in models for value in getattr(model, values))
            self.fields[name].choices = [(value, value) for value in offered]
