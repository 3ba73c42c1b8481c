from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.services import user_create
from apikeys.services import api_key_create
from billing.models import AccountType, GrantSource
from billing.services import account_get_or_create, account_set_type, credits_grant
from hub.infra.local_secrets import local_password

DEMO_EMAIL = "demo@example.com"
DEMO_CREDITS = 1000


class Command(BaseCommand):
    help = "Make sure the demo account exists with credits and print a fresh API key for it."

    def handle(self, *args, **options):
        User = get_user_model()
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            user = user_create(email=DEMO_EMAIL)
        account = account_get_or_create(user=user)
        account_set_type(account=account, account_type=AccountType.PRO)
        if account.balance < DEMO_CREDITS // 10:
            credits_grant(account=account, amount=DEMO_CREDITS, source=GrantSource.PROMO, reason="demo top-up")
        password = local_password(user, name="demo_password")
        _, raw = api_key_create(owner=user, name="make run")
        account.refresh_from_db()
        self.stdout.write(f"Demo account {DEMO_EMAIL} (password {password}) has {account.balance} credits.")
        self.stdout.write(f"Fresh API key (shown once): {raw}")
