from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apikeys.services import api_key_create
from hub.http.bounds import whole_number_option

EXPIRES_IN_DAYS_MAX = 36_500  # a hundred years; without the option the key never expires


class Command(BaseCommand):
    help = "Create an API key for a user. The last line of stdout is the raw key (shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--expires-in-days", type=whole_number_option(1, EXPIRES_IN_DAYS_MAX), default=None, help="default: never"
        )

    def handle(self, *args, email, name, expires_in_days, **options):
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with email {email}; create it with hub_createuser")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, raw = api_key_create(owner=user, name=name, expires_at=expires_at)
        self.stderr.write(f"Created key {key.display_prefix}… for {email}; store it now, it is not shown again.")
        self.stdout.write(raw)
