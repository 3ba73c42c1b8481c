from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.services import user_create
from billing.services import account_get_or_create
from hub.infra.local_secrets import local_password

ADMIN_EMAIL = "admin@example.com"


class Command(BaseCommand):
    help = "Make sure a local operator login exists and print it (its password is kept in var/)."

    def add_arguments(self, parser):
        parser.add_argument("--email", default=ADMIN_EMAIL)

    def handle(self, *args, email, **options):
        User = get_user_model()
        user = User.objects.filter(username=email).first() or user_create(email=email, is_staff=True)
        if not (user.is_staff and user.is_superuser and user.is_active):
            user.is_staff = user.is_superuser = user.is_active = True
            user.save(update_fields=["is_staff", "is_superuser", "is_active"])
        account_get_or_create(user=user)
        password = local_password(user, name="admin_password")
        self.stdout.write(f"Admin login: {email} / {password}")
