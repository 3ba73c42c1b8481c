"""python -m bench run SCENARIO [SCENARIO ...] [overrides]   (or `all`; `list` shows them)

Each scenario starts a local production-style stack, drives it, tears it down, then prints one
table headed by the exact command, and saves it under bench/results/. See bench/README.md.
"""

import argparse
import dataclasses
import os
import resource
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

from bench.scenarios import SCENARIOS, Context, run

RESULTS = Path(__file__).resolve().parent / "results"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the scenarios")
    run_parser = sub.add_parser("run", help="run scenarios (or `all`)")
    run_parser.add_argument("scenarios", nargs="+", metavar="SCENARIO", choices=[*SCENARIOS, "all"])
    run_parser.add_argument("--requests", type=int, help="requests per measured phase")
    run_parser.add_argument("--a-requests", type=int, help="tenant A's async burst (upstream scenarios)")
    run_parser.add_argument("--b-requests", type=int, help="tenant B's sync calls (upstream scenarios)")
    run_parser.add_argument("--outage-seconds", type=float, help="how long one key answers 500 (outage)")
    run_parser.add_argument("--concurrency", type=int, help="concurrent clients")
    run_parser.add_argument("--provider-latency", type=float, help="fake provider latency, seconds")
    run_parser.add_argument("--png-bytes", type=int, help="size of the fake provider's PNG")
    run_parser.add_argument("--time-limit", type=float, help="seconds after which no new request starts")
    run_parser.add_argument(
        "--ramp", type=float, help="seconds over which the clients start one after another (default 0: all at once)"
    )
    run_parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="async-c32, history-1m: floor and hub in turn this many times; stream-c16-2s: sync and streamed",
    )
    run_parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="generation worker processes, as replicas (each deploy/bin/worker, its own Celery node)",
    )
    run_parser.add_argument("--history", type=int, default=1_000_000, help="past generations (history-1m)")
    run_parser.add_argument(
        "--env",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the hub processes (repeatable)",
    )
    return parser.parse_args(argv)


def command_line(argv: list[str]) -> str:
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd() + os.sep) else sys.executable
    return shlex.join([python, "-m", "bench", *argv])


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.command == "list":
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:18} {scenario.description}")
        return 0
    signal.signal(signal.SIGTERM, _interrupt)  # teardown runs on SIGTERM as on Ctrl-C
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000 clients need 1000+ sockets, hub too
    names = list(SCENARIOS) if "all" in args.scenarios else args.scenarios
    overrides = {
        field: getattr(args, field)
        for field in (
            "requests",
            "concurrency",
            "provider_latency",
            "png_bytes",
            "time_limit",
            "ramp",
            "a_requests",
            "b_requests",
            "outage_seconds",
        )
        if getattr(args, field) is not None
    }
    try:
        failed = _run_all(names, overrides, args, command_line(argv))
    except KeyboardInterrupt:
        print("interrupted; the stack was torn down", file=sys.stderr)
        return 130
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _run_all(names: list[str], overrides: dict, args: argparse.Namespace, command: str) -> list[str]:
    """Run the scenarios one after another; the names of those that failed."""
    failed = []
    for name in names:
        scenario = dataclasses.replace(SCENARIOS[name], **overrides)
        base = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
        print(f"=== {name}: {scenario.description}", file=sys.stderr, flush=True)
        try:
            table = run(scenario, Context(base, dict(args.env), args.history, args.rounds, args.workers))
        except Exception:  # noqa: BLE001 - one scenario's failure must not stop the next; its traceback is shown
            traceback.print_exc()
            failed.append(name)
            continue
        print(table.save(base, command), flush=True)
        print(f"saved {base.with_suffix('.md')} and .json", file=sys.stderr)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
