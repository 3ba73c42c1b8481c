"""A generation's history: one GenerationEvent row per transition, written with it.

Each transition appends its events in the transaction that makes it — on the hot paths, in the
very statement (a common table expression of the create's, the claim's and the finish's
statements on PostgreSQL): no round trip of its own, and a transition that does not commit (a
claim that lost its race, a charge refused) leaves no event. One INSERT writes a transition's
events (events_sql), wherever it runs.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connection, connections

from generations.models import GenerationEvent

# The attempt of an event whose row the statement is writing: `attempts` of the row its
# condition reads (a claim's new attempt, known only once the claim's UPDATE ran).
ROW_ATTEMPT = None


@dataclass(frozen=True)
class Event:
    kind: str
    attempt: int | None  # or ROW_ATTEMPT
    at: datetime
    outcome: str = ""
    latency_ms: int | None = None
    detail: dict = field(default_factory=dict)


def events_sql(generation_id: str, events: Iterable[Event], *, condition: str = "WHERE TRUE") -> tuple[str, list]:
    """One INSERT of the generation's `events`, written when `condition` (a FROM and a WHERE, say
    a common table expression's rows) yields a row: as a statement of its own, or as a common
    table expression of the transition's statement. Plain SQL that PostgreSQL and SQLite both
    run: the integers are cast, so that a UNION of parameters has their types everywhere."""
    db = connections[DEFAULT_DB_ALIAS]
    adapt_time, detail = db.ops.adapt_datetimefield_value, GenerationEvent._meta.get_field("detail")
    selects, params = [], []
    for event in events:
        attempt = "attempts" if event.attempt is ROW_ATTEMPT else "CAST(%s AS integer)"
        selects.append(f"SELECT %s, %s, {attempt}, %s, CAST(%s AS integer), %s, %s {condition}")
        params += [generation_id, event.kind] + ([] if event.attempt is ROW_ATTEMPT else [event.attempt])
        params += [event.outcome, event.latency_ms, detail.get_db_prep_save(event.detail, db), adapt_time(event.at)]
    return f"INSERT INTO {_TABLE} ({_COLUMNS}) {' UNION ALL '.join(selects)}", params


def events_write(generation_id: str, events: Iterable[Event]) -> None:
    """events_sql as a statement of its own: call it inside the transition's transaction."""
    with connection.cursor() as cursor:
        cursor.execute(*events_sql(generation_id, events))


_TABLE = GenerationEvent._meta.db_table
_COLUMNS = "generation_id, kind, attempt, outcome, latency_ms, detail, created_at"
