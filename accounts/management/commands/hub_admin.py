import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from billing.services import account_get_or_create

ADMIN_EMAIL = "admin@example.com"


class Command(BaseCommand):
    help = "Make sure a local operator login exists and print it (its password is kept in var/)."

    def add_arguments(self, parser):
        parser.add_argument("--email", default=ADMIN_EMAIL)

    def handle(self, *args, email, **options):
        User = get_user_model()
        user = User.objects.filter(username=email).first() or User.objects.create_user(username=email, email=email)
        if not (user.is_staff and user.is_superuser and user.is_active):
            user.is_staff = user.is_superuser = user.is_active = True
            user.save(update_fields=["is_staff", "is_superuser", "is_active"])
        account_get_or_create(user=user)
        self.stdout.write(f"Admin login: {email} / {_stored_password(user)}")


def _stored_password(user) -> str:
    """A random password kept in the git-ignored var/ folder, reset if it no longer matches."""
    path = settings.VAR_DIR / "admin_password"
    if not path.exists() or not user.check_password(path.read_text().strip()):
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
        user.set_password(path.read_text().strip())
        user.save(update_fields=["password"])
    return path.read_text().strip()
