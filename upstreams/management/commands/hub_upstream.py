import argparse
import json

from django.core.management.base import BaseCommand, CommandError

from hub.http.bounds import column_option
from hub.http.errors import HubError
from upstreams.models import Adapter, Upstream
from upstreams.services import credentials_rotate, upstream_create, upstream_set_enabled, upstream_set_prices
from upstreams.state import describe, upstream_state


def _models(text: str) -> dict[str, str]:
    """`gpt-image-2,gpt-image-1=my-deployment` → {catalog id: the upstream's model id or ""}."""
    pairs = [item.strip().partition("=") for item in text.split(",") if item.strip()]
    return {model.strip(): own.strip() for model, _, own in pairs}


def _prices(text: str) -> dict:
    """A JSON object (checked by upstreams.costs.prices_check when it is stored)."""
    try:
        prices = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not JSON") from None
    if not isinstance(prices, dict):
        raise argparse.ArgumentTypeError("not a JSON object")
    return prices


PRICES_HELP = (
    'what the provider bills, as JSON: {"per_image": {"low": {"1024x1024": "0.011", "*": "0.016"},'
    ' "*": {"*": "0.167"}}}'
    ' or {"per_million_tokens": {"input_text": "5", "input_image": "10", "output_image": "40", "output_text": "10"}};'
    " {} for none"
)


class Command(BaseCommand):
    help = (
        "The upstreams that serve catalog models: `add NAME --provider openai|azure --base-url URL --api-key KEY"
        " --models gpt-image-2[,…] [--concurrency N] [--images-per-minute N] [--priority N] [--weight N]`,"
        " [--prices JSON]`, `prices NAME JSON`, `list`, `disable NAME`, `enable NAME`, `rotate-keys`"
        " (re-encrypt every credential with the first"
        " key of HUB_UPSTREAM_KEYS). A credential is only ever shown as its hint (sk-…abcd)."
    )

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="command", required=True)
        add = commands.add_parser("add", help="add an upstream")
        add.add_argument("name", help="letters, digits, - and _")
        add.add_argument("--provider", choices=Adapter.values, default=Adapter.OPENAI, help="the adapter")
        add.add_argument(
            "--base-url", default="", help="an OpenAI-compatible server's base URL (…/v1); Azure: the endpoint"
        )
        add.add_argument("--api-key", required=True, help="the upstream's credential (stored encrypted)")
        add.add_argument("--api-version", default="", help="Azure OpenAI's api-version")
        add.add_argument(
            "--models",
            type=_models,
            required=True,
            help="catalog model ids, comma-separated; MODEL=ID when the upstream names it otherwise",
        )
        add.add_argument(
            "--concurrency",
            type=column_option(Upstream, "concurrency", min_value=1),
            default=None,
            help="calls in flight at once (default: learned from 429s)",
        )
        add.add_argument(
            "--images-per-minute",
            type=column_option(Upstream, "images_per_minute", min_value=1),
            default=None,
            help="images per sliding minute (default: no limit)",
        )
        add.add_argument(
            "--priority",
            type=column_option(Upstream, "priority", min_value=0),
            default=0,
            help="lower first (default 0)",
        )
        add.add_argument(
            "--weight",
            type=column_option(Upstream, "weight", min_value=1),
            default=1,
            help="share among one priority (default 1)",
        )
        add.add_argument("--prices", type=_prices, default=None, help=PRICES_HELP)
        priced = commands.add_parser("prices", help="set what an upstream's calls cost from now on")
        priced.add_argument("name")
        priced.add_argument("prices", type=_prices, help=PRICES_HELP)
        commands.add_parser("list", help="every upstream, its models and its state now")
        for verb in ("disable", "enable"):
            commands.add_parser(verb, help=f"{verb} an upstream").add_argument("name")
        commands.add_parser("rotate-keys", help="re-encrypt every credential with HUB_UPSTREAM_KEYS' first key")

    def handle(self, *args, command, **options):
        try:
            if command == "add":
                self._add(options)
            elif command == "list":
                self._list()
            elif command == "prices":
                upstream = upstream_set_prices(name=options["name"], prices=options["prices"])
                self.stdout.write(
                    f"{upstream.name}: prices {json.dumps(upstream.prices) if upstream.prices else 'none'}"
                )
            elif command == "rotate-keys":
                self.stdout.write(f"Re-encrypted {credentials_rotate()} credential(s) with the first key")
            else:
                upstream = upstream_set_enabled(name=options["name"], enabled=command == "enable")
                self.stdout.write(f"{upstream.name}: {'enabled' if upstream.enabled else 'disabled'}")
        except HubError as error:
            raise CommandError(error.message) from None

    def _add(self, options) -> None:
        upstream = upstream_create(
            name=options["name"],
            adapter=options["provider"],
            base_url=options["base_url"],
            api_key=options["api_key"],
            api_version=options["api_version"],
            models=options["models"],
            priority=options["priority"],
            weight=options["weight"],
            concurrency=options["concurrency"],
            images_per_minute=options["images_per_minute"],
            prices=options["prices"],
        )
        self.stdout.write(f"Added {upstream.name} ({upstream.credential_hint}): {self._summary(upstream)}")
        self.stdout.write(upstream.pk)

    def _list(self) -> None:
        for upstream in Upstream.objects.prefetch_related("routes"):
            state = describe(upstream_state(upstream.pk), upstream.concurrency)
            enabled = "enabled" if upstream.enabled else "disabled"
            self.stdout.write(
                f"{upstream.name}  {enabled}  {upstream.credential_hint}  {self._summary(upstream)}  [{state}]"
            )

    @staticmethod
    def _summary(upstream: Upstream) -> str:
        models = ", ".join(
            f"{route.model_id}={route.upstream_model}" if route.upstream_model else route.model_id
            for route in upstream.routes.all()
        )
        limits = [
            f"{upstream.concurrency} at once" if upstream.concurrency else "concurrency learned",
            f"{upstream.images_per_minute} images/min" if upstream.images_per_minute else None,
        ]
        where = upstream.base_url or "api.openai.com"
        prices = json.dumps(upstream.prices, separators=(",", ":")) if upstream.prices else "no prices"
        return (
            f"{upstream.adapter} {where}; models {models}; priority {upstream.priority}, weight {upstream.weight};"
            f" {', '.join(limit for limit in limits if limit)}; {prices}"
        )
