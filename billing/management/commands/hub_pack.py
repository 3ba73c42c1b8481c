from django.core.management.base import BaseCommand, CommandError

from billing.money import money
from billing.payments import pack_create
from billing.selectors import packs_for_sale
from hub.http.errors import HubError


class Command(BaseCommand):
    help = (
        "Credit packs users can buy (when Stripe is configured): `add NAME --credits N --price-cents P"
        " --currency usd [--expires-days D]` prints the new pack's id last; `list` shows the packs for sale."
        " Deactivate or edit a pack in the admin."
    )

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="command", required=True)
        add = commands.add_parser("add", help="add a pack for sale")
        add.add_argument("name")
        add.add_argument("--credits", type=int, required=True, help="credits granted per purchase")
        add.add_argument("--price-cents", type=int, required=True, help="price in the currency's smallest unit")
        add.add_argument("--currency", default="usd", help="ISO code, e.g. usd (default), eur, jpy")
        add.add_argument("--expires-days", type=int, default=None, help="the credits expire this many days after")
        commands.add_parser("list", help="the packs for sale")

    def handle(self, *args, command, **options):
        if command == "list":
            for pack in packs_for_sale():
                expiry = f", expire after {pack.expires_days} days" if pack.expires_days else ""
                price = money(pack.price_cents, pack.currency)
                self.stdout.write(f"{pack.id}  {pack.name}: {pack.credits} credits for {price}{expiry}")
            return
        try:
            pack = pack_create(
                name=options["name"],
                credits=options["credits"],
                price_cents=options["price_cents"],
                currency=options["currency"],
                expires_days=options["expires_days"],
            )
        except HubError as error:
            raise CommandError(error.message) from error
        price = money(pack.price_cents, pack.currency)
        self.stdout.write(f"Added {pack.name}: {pack.credits} credits for {price}")
        self.stdout.write(pack.id)
