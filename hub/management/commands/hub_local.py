"""`make run`'s preparation of a checkout (deploy/run-local.sh), in one process: four commands in
four processes paid Django's start-up four times (~9 of a fresh clone's ~63 s to its first image
here)."""

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Prepare this checkout to run the hub: migrate, collect the static files, then print the demo"
        " account's fresh API key (hub_demo) and the local admin login (hub_admin)."
    )
    # The system checks read the database: they run once its tables exist, after migrate.
    requires_system_checks = []

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.check()
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("hub_demo", stdout=self.stdout)
        call_command("hub_admin", stdout=self.stdout)
