"""The upstreams' metrics: each worker counts its calls (and their time, and the waits for a
slot); the web's /metrics reads every upstream's shared state at scrape time."""

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from hub.infra.metrics import LATENCY_BUCKETS
from upstreams.circuit import CLOSED
from upstreams.models import Upstream
from upstreams.state import upstream_state
from upstreams.targets import DEFAULT_NAME, default_target

CALLS = Counter(
    "hub_upstream_calls_total",
    "Provider calls by upstream and outcome (ok, rate_limited, failed, rejected)",
    ["upstream", "outcome"],
)
CALL_LATENCY = Histogram(
    "hub_upstream_call_duration_seconds", "Time of one provider call", ["upstream"], buckets=LATENCY_BUCKETS
)
BUDGET_WAIT = Histogram(
    "hub_upstream_wait_seconds",
    "Time a generation waited for a slot of its model's upstreams (cooldown, calls in flight, images per minute)",
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "hub_generation_queue_wait_seconds",
    "Time a generation waited for its turn: from its hand-over to the queue (first attempt: creation) to its claim",
    buckets=LATENCY_BUCKETS,
)
CIRCUIT_OPENED = Counter(
    "hub_upstream_circuit_opened_total", "Circuits opened (or reopened by a failed probe)", ["upstream"]
)


class UpstreamStateCollector:
    """Every upstream's circuit, slots in use, limit and cooldown, from Redis (one script per
    upstream): the rows, and the default upstream of the environment."""

    def collect(self):
        families = {
            "open": GaugeMetricFamily(
                "hub_upstream_circuit_open", "1 while the circuit is open or half-open", labels=["upstream"]
            ),
            "slots": GaugeMetricFamily(
                "hub_upstream_slots_in_use", "Calls in flight, across workers", labels=["upstream"]
            ),
            "limit": GaugeMetricFamily(
                "hub_upstream_concurrency_limit",
                "Calls in flight allowed now: min(configured, learned)",
                labels=["upstream"],
            ),
            "learned": GaugeMetricFamily(
                "hub_upstream_learned_limit", "The limit learned from 429s", labels=["upstream"]
            ),
            "cooldown": GaugeMetricFamily(
                "hub_upstream_cooldown_seconds", "Left of the 429 cooldown", labels=["upstream"]
            ),
        }
        rows = [(up.name, up.pk, up.concurrency) for up in Upstream.objects.only("name", "concurrency")]
        for name, upstream_id, configured in [*rows, (DEFAULT_NAME, default_target("openai").upstream_id, None)]:
            state = upstream_state(upstream_id)
            if not state.known:
                continue
            families["open"].add_metric([name], 0 if state.circuit == CLOSED else 1)
            families["slots"].add_metric([name], state.slots_in_use)
            families["limit"].add_metric([name], state.limit(configured))
            if state.learned_limit is not None:
                families["learned"].add_metric([name], state.learned_limit)
            families["cooldown"].add_metric([name], state.cooldown_seconds)
        yield from families.values()
