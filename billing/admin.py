"""Operators' credit tools. Every credit movement goes through billing.services, records the
operator and the reason, and the ledger and the grants are read-only here."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.models import (
    AccountTypeLimits,
    AutoTopUp,
    BalanceCrossing,
    CreditAccount,
    CreditGrant,
    CreditPack,
    LedgerEntry,
    ProcessedStripeEvent,
    Purchase,
    PurchaseStatus,
)
from billing.money import money
from billing.selectors import next_expiration, revenue_per_day
from billing.services import account_set_type, credits_clawback, credits_grant_bulk
from hub.admin import LIMITS_FIELDSET, LIMITS_FORMFIELDS, ReadOnlyAdmin
from hub.http.bounds import integer_form_field
from hub.http.errors import HubError

REVENUE_DAYS = 90  # the admin's "Revenue per day"
REASON_HELP = "Required. Recorded with your name, and shown to the user in their credit history."


class GrantForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=10_000_000, help_text="Credits per account.")
    expires_at = forms.DateTimeField(
        label="Expires at (UTC)",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Leave empty for credits that never expire.",
    )
    reason = forms.CharField(max_length=500, help_text=REASON_HELP)

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


class ClawbackForm(forms.Form):
    amount = integer_form_field(
        CreditAccount, "balance", min_value=1, help_text="Unspent credits to remove, soonest-expiring first."
    )
    reason = forms.CharField(max_length=500, help_text=REASON_HELP)


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    list_display = ["user_email", "account_type", "balance", "next_expiry", "updated_at"]
    list_filter = ["account_type"]
    search_fields = ["user__email", "user__username"]
    list_select_related = ["user"]
    fields = ["user", "account_type", "balance", "next_expiry", "history"]
    readonly_fields = ["user", "balance", "next_expiry", "history"]
    actions = ["grant_credits"]
    change_form_template = "admin/billing/creditaccount/change_form.html"

    def has_add_permission(self, request):
        return False  # every user gets an account when it signs up or is created

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="User", ordering="user__email")
    def user_email(self, account):
        return account.user.email or account.user.username

    @admin.display(description="Next expiration")
    def next_expiry(self, account):
        soonest = next_expiration(account=account)
        if soonest is None:
            return "—"
        return f"{soonest.credits} credits on {soonest.expires_at:%Y-%m-%d %H:%M} UTC"

    @admin.display(description="History")
    def history(self, account):
        links = [
            reverse(f"admin:billing_{model}_changelist") + f"?account__id__exact={account.pk}"
            for model in ("creditgrant", "ledgerentry", "purchase")
        ]
        return format_html('<a href="{}">Grants</a> · <a href="{}">Ledger</a> · <a href="{}">Purchases</a>', *links)

    def save_model(self, request, obj, form, change):
        # Not obj.save(): that would write back a balance read before a concurrent charge.
        if "account_type" in form.changed_data:
            account_set_type(account=obj, account_type=form.cleaned_data["account_type"])

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/grant/", view(self.grant_view), name="billing_creditaccount_grant"),
            path("<path:object_id>/clawback/", view(self.clawback_view), name="billing_creditaccount_clawback"),
            *super().get_urls(),
        ]

    @admin.action(description="Grant credits to the selected accounts…", permissions=["change"])
    def grant_credits(self, request, queryset):
        return self._grant(request, list(queryset.select_related("user")), bulk=True)

    def grant_view(self, request, object_id):
        account = self._account_to_change(request, object_id)
        return self._grant(request, [account], bulk=False) or redirect(self._change_url(account))

    def clawback_view(self, request, object_id):
        account = self._account_to_change(request, object_id)
        form = ClawbackForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            amount, reason = form.cleaned_data["amount"], form.cleaned_data["reason"]
            try:
                credits_clawback(account=account, amount=amount, actor=request.user, reason=reason)
            except HubError as error:
                form.add_error(None, error.message)
            else:
                self.log_change(request, account, f"Clawed back {amount} credits: {reason}")
                self.message_user(request, f"Clawed back {amount} credits from {account.user.email}.", messages.SUCCESS)
                return redirect(self._change_url(account))
        return self._credits_form(request, form, [account], title="Claw back credits", submit="Claw back credits")

    def _grant(self, request, accounts, *, bulk: bool):
        """The grant form and its outcome; None once the grant is made."""
        form = GrantForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            data = form.cleaned_data
            try:
                credits_grant_bulk(accounts=accounts, actor=request.user, **data)
            except HubError as error:
                form.add_error(None, error.message)
            else:
                expiry = f", expiring {data['expires_at']:%Y-%m-%d %H:%M} UTC" if data["expires_at"] else ""
                for account in accounts:
                    self.log_change(request, account, f"Granted {data['amount']} credits{expiry}: {data['reason']}")
                who = accounts[0].user.email if len(accounts) == 1 else f"{len(accounts)} accounts"
                self.message_user(request, f"Granted {data['amount']} credits{expiry} to {who}.", messages.SUCCESS)
                return None
        title = f"Grant credits to {len(accounts)} account{pluralize(len(accounts))}" if bulk else "Grant credits"
        return self._credits_form(request, form, accounts, title=title, submit="Grant credits", bulk=bulk)

    def _credits_form(self, request, form, accounts, *, title: str, submit: str, bulk: bool = False):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "form": form,
            "accounts": accounts,
            "submit": submit,
            "bulk": bulk,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "original": accounts[0] if not bulk else None,
        }
        return TemplateResponse(request, "admin/billing/credits_form.html", context)

    def _account_to_change(self, request, object_id) -> CreditAccount:
        account = self.get_object(request, object_id)
        if account is None:
            raise Http404("No such credit account")
        if not self.has_change_permission(request, account):
            raise PermissionDenied
        return account

    def _change_url(self, account) -> str:
        return reverse("admin:billing_creditaccount_change", args=[account.pk])


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "account",
        "amount",
        "remaining",
        "expires_at",
        "expired_at",
        "kind",
        "source",
        "reason",
        "granted_by",
        "purchase",
    ]
    list_filter = ["kind", "source", "created_at", "expires_at"]
    search_fields = ["account__user__email", "reason"]
    list_select_related = ["account__user", "granted_by"]
    date_hierarchy = "created_at"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "kind", "amount", "balance_after", "actor", "memo", "generation_id"]
    list_filter = ["kind", "account__account_type", "created_at"]
    search_fields = ["account__user__email", "generation_id", "memo"]
    list_select_related = ["account__user", "actor"]
    date_hierarchy = "created_at"


@admin.register(AccountTypeLimits)
class AccountTypeLimitsAdmin(admin.ModelAdmin):
    """The limits of every key of an account type that sets none of its own (empty = no limit)."""

    list_display = [
        "account_type",
        "allowed_models",
        "images_per_minute",
        "concurrency",
        "monthly_credits",
        "turn_weight",
    ]
    fieldsets = [(None, {"fields": ["account_type", "turn_weight"]}), LIMITS_FIELDSET]
    formfield_overrides = LIMITS_FORMFIELDS


class CreditPackForm(forms.ModelForm):
    class Meta:
        model = CreditPack
        fields = ["name", "credits", "price_cents", "currency", "expires_days", "active"]

    def clean_currency(self):
        return self.cleaned_data["currency"].strip().lower()  # USD is usd to Stripe


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    """What users can buy (when Stripe is configured). A pack bought once stays: deactivate it;
    its purchases keep what they cost and granted."""

    form = CreditPackForm
    list_display = ["name", "credits", "price", "expires_days", "active", "id", "created_at"]
    list_filter = ["active", "currency"]
    list_editable = ["active"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Price", ordering="price_cents")
    def price(self, pack):
        return money(pack.price_cents, pack.currency)


class ShortfallFilter(admin.SimpleListFilter):
    title = "shortfall"
    parameter_name = "shortfall"

    def lookups(self, request, model_admin):
        return [("yes", "Credits already spent when refunded or disputed")]

    def queryset(self, request, queryset):
        return queryset.filter(credits_shortfall__gt=0) if self.value() == "yes" else queryset


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    """Payments for credits, written by billing.payments from Stripe's events. `Shortfall`: the
    credits a refund or dispute called back that were already spent (or expired) — the
    operator's to settle with the user."""

    list_display = [
        "created_at",
        "id",
        "account",
        "kind",
        "status_shown",
        "credits",
        "amount",
        "refunded",
        "credits_taken_back",
        "credits_shortfall",
        "receipt",
    ]
    list_filter = ["status", "kind", ShortfallFilter, "currency", "created_at"]
    search_fields = ["id", "account__user__email", "stripe_session_id", "stripe_payment_intent_id"]
    list_select_related = ["account__user"]
    date_hierarchy = "created_at"
    change_list_template = "admin/billing/purchase/change_list.html"

    @admin.display(description="Status", ordering="status")
    def status_shown(self, purchase):
        return purchase.display_status

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, purchase):
        return money(purchase.amount_cents, purchase.currency)

    @admin.display(description="Refunded or disputed")
    def refunded(self, purchase):
        called_back = purchase.amount_called_back_cents
        return money(called_back, purchase.currency) if called_back else "—"

    @admin.display(description="Receipt")
    def receipt(self, purchase):
        return (
            format_html('<a href="{}" rel="noopener noreferrer">Receipt</a>', purchase.receipt_url)
            if purchase.receipt_url
            else "—"
        )

    def get_urls(self):
        view = self.admin_site.admin_view(self.revenue_view)
        return [path("revenue/", view, name="billing_purchase_revenue"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        failed = reverse("admin:billing_purchase_changelist") + f"?status__exact={PurchaseStatus.FAILED}"
        return super().changelist_view(request, {**(extra_context or {}), "failed_url": failed})

    def revenue_view(self, request):
        """Paid purchases per UTC day and currency over the last REVENUE_DAYS days, less refunds."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = [
            {
                "day": row.day,
                "currency": row.currency.upper(),
                "purchases": row.purchases,
                "gross": money(row.gross_cents, row.currency),
                "refunded": money(row.refunded_cents, row.currency),
                "net": money(row.net_cents, row.currency),
            }
            for row in revenue_per_day(days=REVENUE_DAYS)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Revenue per day (last {REVENUE_DAYS} days)",
            "rows": rows,
        }
        return TemplateResponse(request, "admin/billing/purchase/revenue.html", context)


@admin.register(ProcessedStripeEvent)
class ProcessedStripeEventAdmin(ReadOnlyAdmin):
    list_display = ["processed_at", "event_id", "type", "purchase"]
    list_filter = ["type", "processed_at"]
    search_fields = ["event_id", "purchase__id"]
    date_hierarchy = "processed_at"


@admin.register(AutoTopUp)
class AutoTopUpAdmin(ReadOnlyAdmin):
    """Each account's auto top-up as its owner set it on the Billing page (billing.autotopup):
    paused after two failed payments in a row, until the owner resumes it."""

    list_display = ["account", "pack", "threshold", "enabled", "card_label", "consecutive_failures", "paused_at"]
    list_filter = ["enabled", ("paused_at", admin.EmptyFieldListFilter)]
    search_fields = ["account__user__email", "stripe_customer_id"]
    list_select_related = ["account__user", "pack"]


@admin.register(BalanceCrossing)
class BalanceCrossingAdmin(ReadOnlyAdmin):
    """Each charge or expiry that took a balance under a threshold: the alert it sent, and the auto
    top-up bought for it (Purchases, kind auto top-up). Unhandled ones are in hand or retried."""

    list_display = [
        "created_at",
        "account",
        "balance_before",
        "balance_after",
        "topup_threshold",
        "alert_threshold",
        "alert_sent_at",
        "handled_at",
    ]
    list_filter = [("handled_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["account__user__email"]
    list_select_related = ["account__user"]
    date_hierarchy = "created_at"
