from django.contrib import admin, messages
from django.utils import timezone

from apikeys.models import ApiKey, EmailVerification
from apikeys.services import api_key_limits_set, api_key_revoke, email_verification_confirm
from hub.admin import LIMITS_FIELDSET, LIMITS_FORMFIELDS, ReadOnlyAdmin
from hub.limits import LIMIT_NAMES


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Keys are created by their owners; operators see and revoke them, and set their limits
    (empty = the account type's default, see Account type limits). The digest is never shown
    and the raw key is never stored. No deleting: generations keep pointing at their key."""

    list_display = [
        "display_prefix",
        "name",
        "owner",
        "created_at",
        "last_used_at",
        "expires_at",
        "status",
        "images_per_minute",
        "concurrency",
        "monthly_credits",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "expires_at", "created_at"]
    search_fields = ["id", "name", "display_prefix", "owner__email"]
    list_select_related = ["owner"]
    fieldsets = [
        (None, {"fields": ["id", "owner", "name", "display_prefix", "created_at", "last_used_at", "expires_at"]}),
        (None, {"fields": ["revoked_at"]}),
        LIMITS_FIELDSET,
    ]
    readonly_fields = [
        "id",
        "owner",
        "name",
        "display_prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    formfield_overrides = LIMITS_FORMFIELDS
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        """Only the limits are editable (readonly_fields holds the rest)."""
        return request.user.has_perm("apikeys.change_apikey")

    def save_model(self, request, obj, form, change):
        # Through the service, never obj.save(): that would write back a stale last_used_at.
        api_key_limits_set(key=obj, **{name: form.cleaned_data[name] for name in LIMIT_NAMES})

    def has_revoke_permission(self, request):
        return request.user.has_perm("apikeys.change_apikey")

    @admin.display(description="Status")
    def status(self, key):
        return key.status(timezone.now())

    @admin.action(description="Revoke the selected keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            api_key_revoke(key=key)
            self.log_change(request, key, "Revoked")
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)


@admin.register(EmailVerification)
class EmailVerificationAdmin(ReadOnlyAdmin):
    """Sign-ups' email confirmations; an operator can confirm one by hand."""

    list_display = ["owner", "created_at", "verified_at"]
    list_filter = [("verified_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["owner__email"]
    list_select_related = ["owner"]
    actions = ["confirm"]

    def has_confirm_permission(self, request):
        return request.user.has_perm("apikeys.change_emailverification")

    @admin.action(description="Confirm the selected email addresses", permissions=["confirm"])
    def confirm(self, request, queryset):
        pending = list(queryset.filter(verified_at__isnull=True).select_related("owner"))
        for verification in pending:
            email_verification_confirm(owner=verification.owner)
            self.log_change(request, verification, "Confirmed")
        self.message_user(request, f"Confirmed {len(pending)} address(es).", messages.SUCCESS)
