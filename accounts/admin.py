from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.urls import reverse
from django.utils.html import format_html

from billing.models import CreditAccount
from billing.services import account_get_or_create

admin.site.site_header = "GPT Image Hub admin"
admin.site.site_title = "GPT Image Hub admin"
admin.site.index_title = "Operations"

User = get_user_model()


class CreditAccountInline(admin.StackedInline):
    """Shown on the user; changed on the credit account page, through the billing services."""

    model = CreditAccount
    fields = ["account_type", "balance", "manage"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Credits")
    def manage(self, account):
        url = reverse("admin:billing_creditaccount_change", args=[account.pk])
        return format_html('<a href="{}">Account type, grants and claw-backs →</a>', url)


def _account_field(user, name: str):
    account = getattr(user, "credit_account", None)  # None for users made by createsuperuser
    return getattr(account, name) if account else "—"


admin.site.unregister(User)


@admin.register(User)
class HubUserAdmin(UserAdmin):
    inlines = [CreditAccountInline]
    list_display = ["username", "account_type", "balance", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["credit_account__account_type", "is_staff", "is_superuser", "is_active"]
    list_select_related = ["credit_account"]
    ordering = ["-date_joined"]

    @admin.display(description="Account type", ordering="credit_account__account_type")
    def account_type(self, user):
        return _account_field(user, "account_type")

    @admin.display(description="Credits", ordering="credit_account__balance")
    def balance(self, user):
        return _account_field(user, "balance")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        account_get_or_create(user=obj)
