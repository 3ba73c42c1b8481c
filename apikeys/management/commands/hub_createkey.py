from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apikeys.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a user. The last line of stdout is the raw key (shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args, email, name, expires_in_days, **options):
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with email {email}; create it with hub_createuser")
        if expires_in_days is not None and expires_in_days <= 0:
            raise CommandError("--expires-in-days must be positive")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, raw = api_key_create(owner=user, name=name, expires_at=expires_at)
        self.stderr.write(f"Created key {key.display_prefix}… for {email}; store it now, it is not shown again.")
        self.stdout.write(raw)
