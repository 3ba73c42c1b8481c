"""The signed-in user's pages. Every read goes through an owner-scoped selector, so another
user's key or generation id answers 404 exactly like a missing one."""

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.forms import AlertsForm, ApiKeyCreateForm, ApiKeyLimitsForm, AutoTopUpForm, SignUpForm
from accounts.quickstart import quickstart_commands
from accounts.services import email_verification_send, user_email_confirm, user_sign_up
from accounts.throttle import client_ip, sign_up_attempt_allowed
from apikeys.selectors import api_key_get_for_owner, api_keys_for_owner, email_verification_pending, usage_for_owner
from apikeys.services import api_key_create, api_key_revoke
from billing.alerts import low_balance_threshold_set
from billing.autotopup import (
    autotopup_card_setup_start,
    autotopup_configure,
    autotopup_disable,
    autotopup_of,
    autotopup_resume,
)
from billing.payments import checkout_start
from billing.selectors import (
    account_type_limits,
    billing_history_for_account,
    credits_by_kind,
    credits_summary,
    grants_for_account,
    ledger_for_account,
    packs_for_sale,
    purchases_for_account,
)
from billing.services import account_settle
from billing.stripe_gateway import stripe_enabled
from generations.catalog import enabled_models
from generations.limits import key_limits_set, limits_effective
from generations.selectors import (
    generation_events,
    generation_get_for_owner,
    generation_queue_positions,
    generations_for_owner,
    webhook_deliveries_for_account,
    webhook_deliveries_for_generation,
)
from generations.services import generation_cancel as services_generation_cancel
from generations.webhooks import (
    account_webhook_set,
    account_webhook_url,
    webhook_secret_get_or_create,
    webhook_secret_rotate,
)
from hub.http.errors import HubError, InvalidRequest, NotFound, PaymentsUnavailable, RateLimited
from hub.http.public_url import base_url
from hub.infra.timefmt import utc_day

USAGE_DAYS = 30
LEDGER_PAGE_SIZE = 25
PURCHASES_SHOWN = 50
GENERATIONS_PAGE_SIZE = 20
SIGNED_UP_EMAIL = "signed_up_email"  # session key: the address the "check your inbox" page names


def owned(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except NotFound:
            return render(request, "accounts/not_found.html", status=404)

    return wrapper


def sign_up(request):
    """The same answer whether or not the address already has an account (user_sign_up): the
    "check your inbox" page, reached by a redirect, and an email to the address."""
    if request.user.is_authenticated:
        return redirect("accounts:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not sign_up_attempt_allowed(ip_address=client_ip(request)):
            form.add_error(None, "Too many accounts were created from your network in the last hour; try again later.")
            return render(request, "accounts/signup.html", {"form": form}, status=429)
        email = form.cleaned_data["email"]
        user_sign_up(email=email, password=form.cleaned_data["password1"], site_url=base_url(request))
        request.session[SIGNED_UP_EMAIL] = email
        return redirect("accounts:signup_sent")
    return render(request, "accounts/signup.html", {"form": form})


def sign_up_sent(request):
    email = request.session.get(SIGNED_UP_EMAIL)
    if email is None:
        return redirect("accounts:signup")
    context = {"email": email, "required": settings.REQUIRE_EMAIL_VERIFICATION}
    return render(request, "accounts/signup_sent.html", context)


def verify_email(request, token: str):
    user = user_email_confirm(token=token)
    return render(request, "accounts/verify_email.html", {"confirmed": user}, status=200 if user else 400)


@require_POST
@login_required
def verify_email_resend(request):
    if email_verification_pending(owner=request.user):
        email_verification_send(user=request.user, site_url=base_url(request))
        messages.success(request, f"We sent a new confirmation link to {request.user.email}.")
    return redirect("accounts:home")


@never_cache  # it shows the webhook signing secret: no browser or proxy may keep it
@login_required
def home(request):
    account = account_settle(user=request.user)
    quickstart = quickstart_commands(api_base=f"{base_url(request)}/api/v1")
    context = {
        "summary": credits_summary(account=account),
        "quickstart": quickstart,
        "unconfirmed": settings.REQUIRE_EMAIL_VERIFICATION and email_verification_pending(owner=request.user),
        "webhook_secret": webhook_secret_get_or_create(user=request.user).secret,
        "selling": stripe_enabled(),
    }
    return render(request, "accounts/home.html", context)


@require_POST
@login_required
def webhook_secret_rotate_view(request):
    webhook_secret_rotate(user=request.user)
    messages.success(request, "Your webhook signing secret was replaced; the old one no longer verifies.")
    return redirect("accounts:home")


@never_cache  # the response to a create carries the raw key: no browser or proxy may keep it
@login_required
def api_keys(request):
    form = ApiKeyCreateForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        key, raw = api_key_create(owner=request.user, name=form.cleaned_data["name"], expires_at=form.expires_at())
        created = {"key": key, "raw": raw}
        form = ApiKeyCreateForm()
    account_type = account_settle(user=request.user).account_type
    keys = list(api_keys_for_owner(owner=request.user))
    for key in keys:
        key.limits = limits_effective(api_key=key, account_type=account_type)
    context = {
        "form": form,
        "created": created,
        "keys": keys,
        "usage": usage_for_owner(owner=request.user, today=utc_day(timezone.now()), days=USAGE_DAYS),
        "usage_days": USAGE_DAYS,
    }
    return render(request, "accounts/api_keys.html", context)


@login_required
@owned
def api_key_limits(request, key_id: str):
    """A key's own limits; an owner can only tighten what the plan allows (key_limits_set)."""
    key = api_key_get_for_owner(owner=request.user, key_id=key_id)
    defaults = account_type_limits(account_type=account_settle(user=request.user).account_type)
    model_ids = [
        model.id for model in enabled_models() if not defaults.allowed_models or model.id in defaults.allowed_models
    ]
    initial = {
        "allowed_models": key.allowed_models or [],
        "images_per_minute": key.images_per_minute,
        "concurrency": key.concurrency,
        "monthly_credits": key.monthly_credits,
    }
    form = ApiKeyLimitsForm(
        request.POST if request.method == "POST" else None, initial=initial, model_ids=model_ids, defaults=defaults
    )
    if request.method == "POST" and form.is_valid():
        try:
            key_limits_set(key=key, within_defaults=True, **form.limits())
        except HubError as error:
            form.add_error(error.param if error.param in form.fields else None, error.message)
        else:
            messages.success(request, f"Limits of {key.display_prefix}… ({key.name}) saved.")
            return redirect("accounts:api_keys")
    return render(request, "accounts/api_key_limits.html", {"key": key, "form": form, "defaults": defaults})


@login_required
@owned
def api_key_revoke_confirm(request, key_id: str):
    key = api_key_get_for_owner(owner=request.user, key_id=key_id)
    if request.method == "POST":
        api_key_revoke(key=key)
        messages.success(request, f"Key {key.display_prefix}… ({key.name}) is revoked; requests with it now fail.")
        return redirect("accounts:api_keys")
    return render(request, "accounts/api_key_revoke.html", {"key": key})


@login_required
def credits(request):
    account = account_settle(user=request.user)
    ledger = Paginator(ledger_for_account(account=account), LEDGER_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "summary": credits_summary(account=account),
        "by_kind": credits_by_kind(account=account),
        "grants": grants_for_account(account=account),
        "page": ledger,
        "selling": stripe_enabled(),
    }
    return render(request, "accounts/credits.html", context)


@login_required
def billing(request):
    """Packs to buy and auto top-up (when the hub sells credits), the low-balance alert and the
    account's webhook endpoint, the purchases with their receipts, refunds and top-ups, and the
    credits granted, expired and taken back."""
    return _billing_page(request)


def _billing_page(request, *, topup_form=None, alerts_form=None):
    """The Billing page, with a form the user just sent back when it has errors to show."""
    account = account_settle(user=request.user)
    history = Paginator(billing_history_for_account(account=account), LEDGER_PAGE_SIZE)
    packs = list(packs_for_sale()) if stripe_enabled() else None
    topup = autotopup_of(account=account)
    if packs is not None and topup_form is None:
        initial = {"pack": topup.pack_id, "threshold": topup.threshold} if topup else {}
        topup_form = AutoTopUpForm(initial=initial, packs=packs)
    if alerts_form is None:
        initial = {"low_balance_threshold": account.low_balance_threshold}
        alerts_form = AlertsForm(initial={**initial, "webhook_url": account_webhook_url(user=request.user)})
    context = {
        "summary": credits_summary(account=account),
        "packs": packs,
        "topup": topup,
        "topup_form": topup_form,
        "alerts_form": alerts_form,
        "account_deliveries": webhook_deliveries_for_account(user=request.user),
        "purchases": purchases_for_account(account=account)[:PURCHASES_SHOWN],
        "page": history.get_page(request.GET.get("page")),
        "returned": request.GET.get("checkout"),
        "card_returned": request.GET.get("card"),
    }
    return render(request, "accounts/billing.html", context)


@require_POST
@login_required
@owned
def billing_buy(request, pack_id: str):
    """Buy credits: a Stripe Checkout Session for the pack, and a redirect to its payment page.
    The credits come with Stripe's webhook, not with the user's return."""
    try:
        checkout = checkout_start(
            account=account_settle(user=request.user),
            pack_id=pack_id,
            customer_email=request.user.email,
            return_url=base_url(request) + reverse("accounts:billing"),
        )
    except (PaymentsUnavailable, RateLimited) as error:
        messages.error(request, error.message)
        return redirect("accounts:billing")
    return redirect(checkout.url)


@require_POST
@login_required
def billing_autotopup(request):
    """Save auto top-up's pack and threshold and turn it on; without a saved card (or with
    `action=card`), on to Stripe's page to save one."""
    if not stripe_enabled():
        return render(request, "accounts/not_found.html", status=404)
    account = account_settle(user=request.user)
    form = AutoTopUpForm(request.POST, packs=list(packs_for_sale()))
    if not form.is_valid():
        return _billing_page(request, topup_form=form)
    try:
        topup = autotopup_configure(
            account=account, pack_id=form.cleaned_data["pack"], threshold=form.cleaned_data["threshold"]
        )
        if topup.payment_method_id and request.POST.get("action") != "card":
            messages.success(request, "Auto top-up is on.")
            return redirect(reverse("accounts:billing") + "#auto-top-up")
        url = autotopup_card_setup_start(
            account=account, email=request.user.email, return_url=base_url(request) + reverse("accounts:billing")
        )
    except PaymentsUnavailable as error:
        messages.error(request, error.message)
        return redirect(reverse("accounts:billing") + "#auto-top-up")
    except HubError as error:
        form.add_error(error.param if error.param in form.fields else "pack", error.message)
        return _billing_page(request, topup_form=form)
    return redirect(url)


@require_POST
@login_required
def billing_autotopup_off(request):
    autotopup_disable(account=account_settle(user=request.user))
    messages.success(request, "Auto top-up is off.")
    return redirect(reverse("accounts:billing") + "#auto-top-up")


@require_POST
@login_required
def billing_autotopup_resume(request):
    autotopup_resume(account=account_settle(user=request.user))
    messages.success(request, "Auto top-up is on again.")
    return redirect(reverse("accounts:billing") + "#auto-top-up")


@require_POST
@login_required
def billing_alerts(request):
    """The low-balance alert's threshold and the account's webhook endpoint: both or neither (an
    endpoint the webhook rules refuse saves nothing)."""
    form = AlertsForm(request.POST)
    if form.is_valid():
        try:
            account_webhook_set(user=request.user, url=form.cleaned_data["webhook_url"])
        except InvalidRequest as error:
            form.add_error("webhook_url", error.message)
        else:
            account = account_settle(user=request.user)
            low_balance_threshold_set(account=account, threshold=form.cleaned_data["low_balance_threshold"])
            messages.success(request, "Alerts saved.")
            return redirect(reverse("accounts:billing") + "#alerts")
    return _billing_page(request, alerts_form=form)


@login_required
def generations(request):
    page = Paginator(generations_for_owner(owner=request.user), GENERATIONS_PAGE_SIZE).get_page(request.GET.get("page"))
    positions = generation_queue_positions(page.object_list)
    for shown in page.object_list:
        shown.queue_position = positions.get(shown.id)
    return render(request, "accounts/generations.html", {"page": page})


@login_required
@owned
def generation(request, generation_id: str):
    found = generation_get_for_owner(owner=request.user, generation_id=generation_id)
    found.queue_position = generation_queue_positions([found]).get(found.id)
    context = {
        "generation": found,
        "events": generation_events(generation=found),
        "deliveries": webhook_deliveries_for_generation(generation=found),
    }
    return render(request, "accounts/generation.html", context)


@require_POST
@login_required
@owned
def generation_cancel(request, generation_id: str):
    canceled = services_generation_cancel(owner=request.user, generation_id=generation_id)
    if canceled.status == "canceled":
        messages.success(
            request, f"Generation {canceled.id} is canceled; {canceled.credits_refunded} credits were refunded."
        )
    else:
        messages.info(request, f"Generation {canceled.id} had already finished ({canceled.status}).")
    return redirect("accounts:generation", generation_id=canceled.id)
