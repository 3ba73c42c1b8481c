from django.core.management.base import BaseCommand, CommandError

from apikeys.selectors import api_keys_matching
from apikeys.services import api_key_revoke


class Command(BaseCommand):
    help = (
        "Revoke the one active API key named by its id (key_…) or its leading part, e.g. the display"
        " prefix gih_live_AbC4 shown in the account pages and the admin. Refuses a prefix that names"
        " several keys (they are listed, with their ids)."
    )

    def add_arguments(self, parser):
        parser.add_argument("key", help="key id (key_…), display prefix (gih_live_AbC4) or a longer leading part")

    def handle(self, *args, key, **options):
        text = key.strip()
        matches = list(api_keys_matching(text=text)[:21])
        if not matches:
            raise CommandError(f"No active API key matches {text!r}")
        if len(matches) > 1:
            listed = "\n".join(
                f"  {m.pk}  {m.display_prefix}…  {m.owner.email}  {m.name or '(unnamed)'}" for m in matches[:20]
            )
            more = "\n  …" if len(matches) > 20 else ""
            raise CommandError(
                f"{text!r} matches {'more than 20' if more else len(matches)} active keys; revoke one by its id:\n"
                f"{listed}{more}"
            )
        (found,) = matches
        api_key_revoke(key=found)
        self.stdout.write(
            f"Revoked {found.display_prefix}… ({found.name or 'unnamed'}) of {found.owner.email}: {found.pk}"
        )
