from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.services import user_create
from billing.models import AccountType, CreditGrant, GrantSource
from billing.services import account_get_or_create, account_set_type, credits_grant
from hub.http.bounds import column_option


class Command(BaseCommand):
    help = "Create a user with a credit account (or top up an existing one)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--credits", type=column_option(CreditGrant, "amount", min_value=0), default=0)
        parser.add_argument("--account-type", default=None, choices=AccountType.values)
        parser.add_argument("--password", default=None)

    @transaction.atomic
    def handle(self, *args, email, credits, account_type, password, **options):
        User = get_user_model()
        user = User.objects.filter(email__iexact=email).first()
        created = user is None
        if created:
            user = user_create(email=email, password=password)
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
        account = account_get_or_create(user=user)
        if account_type:
            account_set_type(account=account, account_type=account_type)
        if credits:
            credits_grant(account=account, amount=credits, source=GrantSource.ADMIN, reason="hub_createuser")
        account.refresh_from_db()
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {user.email}: {account.balance} credits, {account.account_type}")
