from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from generations.webhooks import webhook_secret_get_or_create, webhook_secret_rotate


class Command(BaseCommand):
    help = "Show (or rotate) an account's webhook signing secret. The last line of stdout is the whsec_ secret."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--rotate", action="store_true", help="replace it: the old secret stops verifying")

    def handle(self, *args, email, rotate, **options):
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with email {email}; create it with hub_createuser")
        if rotate:
            row = webhook_secret_rotate(user=user)
            self.stderr.write(f"Rotated the webhook secret of {user.email}; the old one no longer verifies.")
        else:
            row = webhook_secret_get_or_create(user=user)
        self.stdout.write(row.secret)
