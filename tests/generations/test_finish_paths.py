"""The worker's hot paths: a generation without a webhook is claimed by one `UPDATE … RETURNING`
and, when every image came, finished by one statement on PostgreSQL (its row and its images, in
common table expressions). Where a statement cannot write in its common table expressions
(SQLite) the finish is the same UPDATE and INSERT one after the other: the rows, the status and
the fence must be the same."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generations import services
from generations.models import GeneratedImage, Generation, GenerationStatus
from generations.services import ProviderCall, StoredImage, generation_claim, generation_finalize, lifecycle
from hub.infra import backends
from tests.factories import create_generation, make_user

pytestmark = pytest.mark.django_db

FIELDS = ("status", "attempts", "n", "credits_requested", "credits_refunded", "error_code", "error_message")
FIELDS += ("provider_usage",)
# What the worker hands the finish of a call whose provider reported its tokens (OpenAI's shape).
USAGE = {
    "input_tokens": 30,
    "input_tokens_details": {"text_tokens": 7, "image_tokens": 23},
    "output_tokens": 544,
    "total_tokens": 574,
}


def _call(claimed: Generation, n: int) -> ProviderCall:
    return ProviderCall(claimed.started_at, 12, "ok", images=n, usage=USAGE)


def _stored(generation_id: str, n: int) -> list[StoredImage]:
    return [StoredImage(i, f"generations/{generation_id}/{i}.png", "image/png", 64, 48, 1000 + i) for i in range(n)]


def _run(owner, *, fast: bool, monkeypatch, n: int = 2) -> Generation:
    if not fast:
        monkeypatch.setattr(lifecycle, "ONE_STATEMENT_TRANSITIONS", False)
    generation = create_generation(owner, n=n)  # also loads the catalog snapshot the claim reads
    with CaptureQueriesContext(connection) as claim:
        claimed = generation_claim(generation_id=generation.id)
    assert claimed.status == GenerationStatus.RUNNING and claimed.attempts == 1
    assert claimed.model.id == "gpt-image-2" and claimed.lease_expires_at > claimed.started_at
    with CaptureQueriesContext(connection) as finish:
        finished = generation_finalize(
            generation_id=generation.id, attempt=1, images=_stored(generation.id, n), call=_call(claimed, n)
        )
    monkeypatch.undo()
    # One statement each on the hot paths (the test's own transaction hides BEGIN/COMMIT; the
    # tests' catalog snapshot expires at once, so its read is not counted); one by one, the claim
    # and its event, the finish, its images and its events.
    statements = [
        [q["sql"] for q in queries if '"generations_imagemodel" WHERE' not in q["sql"] and "SAVEPOINT" not in q["sql"]]
        for queries in (claim, finish)
    ]
    counts = [len(s) for s in statements]
    assert counts == ([1, 1] if fast else [2, 3]), statements
    return finished


def _rows(generation: Generation) -> dict:
    row = Generation.objects.get(pk=generation.pk)
    images = GeneratedImage.objects.filter(generation=row).order_by("index")
    return {
        "generation": {name: getattr(row, name) for name in FIELDS},
        "finished": row.finished_at is not None and row.started_at <= row.finished_at,
        "images": [
            (i.index, i.storage_key.rsplit("/", 1)[1], i.content_type, i.width, i.height, i.byte_size) for i in images
        ],
        "image_ids": all(i.id.startswith("img_") and i.created_at for i in images),
    }


@pytest.mark.skipif(not backends.dml_in_cte(), reason="the one-statement finish is PostgreSQL's")
def test_the_one_statement_finish_writes_what_the_statements_one_by_one_write(monkeypatch):
    owner = make_user(credits=100)
    fast = _run(owner, fast=True, monkeypatch=monkeypatch)
    one_by_one = _run(owner, fast=False, monkeypatch=monkeypatch)
    assert fast.status == one_by_one.status == GenerationStatus.SUCCEEDED
    assert _rows(fast) == _rows(one_by_one)
    assert _rows(fast)["images"][1] == (1, "1.png", "image/png", 64, 48, 1001)
    assert fast.provider_usage == _rows(fast)["generation"]["provider_usage"] == USAGE


def test_a_stale_attempt_changes_nothing_on_the_one_statement_path():
    owner = make_user(credits=100)
    generation = create_generation(owner, n=1)
    generation_claim(generation_id=generation.id)
    Generation.objects.filter(pk=generation.pk).update(attempts=2)  # a newer attempt owns it
    claimed = Generation.objects.get(pk=generation.pk)
    stale = generation_finalize(
        generation_id=generation.id, attempt=1, images=_stored(generation.id, 1), call=_call(claimed, 1)
    )
    assert stale.status == GenerationStatus.RUNNING and stale.provider_usage is None
    assert not GeneratedImage.objects.filter(generation_id=generation.pk).exists()


def test_a_partial_result_or_a_webhook_takes_the_transactional_path():
    owner = make_user(credits=100)
    partial = create_generation(owner, n=3)
    claimed = generation_claim(generation_id=partial.id)
    done = generation_finalize(
        generation_id=partial.id, attempt=1, images=_stored(partial.id, 2), call=_call(claimed, 2)
    )
    assert (done.status, done.error_code, done.credits_refunded) == ("succeeded", "partial_result", 2)
    assert Generation.objects.get(pk=partial.pk).provider_usage == USAGE  # with the refund, in its transaction
    hooked = create_generation(owner, n=1, webhook_url="https://example.com/hook", webhook_events=["started"])
    claimed = generation_claim(generation_id=hooked.id)
    assert claimed.attempts == 1 and claimed.webhook_deliveries.filter(event="started").count() == 1
    assert generation_claim(generation_id=hooked.id) is None  # running under a live lease: not claimable


def test_the_sync_answer_reads_its_images_with_the_finished_row():
    """generation_wait's read of the finished row brings its images on PostgreSQL
    (generations.selectors.with_images): the answer is built without another query, and shows
    the images the table holds, in index order."""
    from generations.apis import GenerationOutput
    from hub.infra.timefmt import iso_z
    from tests.factories import make_generation

    finished = make_generation(make_user(credits=100), n=3)
    row = services.generation_wait(generation=finished)
    with CaptureQueriesContext(connection) as answer:
        body = GenerationOutput.data(row, root="http://testserver")
    assert len(answer) == (0 if connection.vendor == "postgresql" else 1)
    stored = GeneratedImage.objects.filter(generation_id=finished.id).order_by("index")
    assert [(image["id"], image["created_at"]) for image in body["images"]] == [
        (image.id, iso_z(image.created_at)) for image in stored
    ]
    assert len(body["data"]) == 3 and all(entry["url"] for entry in body["data"])


def _call_record(generation: Generation, images: int):
    """The record of the attempt's last provider call, as the worker hands it to the finish."""
    from upstreams.services import upstream_call_row
    from upstreams.targets import default_target

    return upstream_call_row(
        generation_id=generation.id,
        model_id=generation.model_id,
        target=default_target("openai", base_url="http://provider.invalid/v1"),
        started_at=generation.created_at,
        latency_ms=12,
        outcome="ok",
        quality="low",
        size="1024x1024",
        images=images,
    )


@pytest.mark.parametrize(
    ("one_statement", "n", "delivered", "stale"),
    [(True, 1, 1, False), (False, 1, 1, False), (True, 3, 2, False), (True, 1, 1, True), (False, 1, 1, True)],
    ids=["one-statement", "one-by-one", "partial", "stale", "stale-one-by-one"],
)
def test_the_finish_writes_its_provider_calls_record_once_on_every_path(
    monkeypatch, one_statement, n, delivered, stale
):
    from upstreams.models import UpstreamCall
    from workers.upstream_calls import as_rows

    monkeypatch.setattr(lifecycle, "ONE_STATEMENT_TRANSITIONS", one_statement)
    generation = create_generation(make_user(credits=100), n=n)
    claimed = generation_claim(generation_id=generation.id)
    if stale:  # a newer attempt owns it: the call was made all the same, and is recorded
        Generation.objects.filter(pk=generation.pk).update(attempts=2)
    finished = generation_finalize(
        generation_id=generation.id,
        attempt=1,
        images=_stored(generation.id, delivered),
        call=_call(claimed, delivered),
        rows=as_rows([_call_record(generation, delivered)]),
    )
    assert finished.status == (GenerationStatus.RUNNING if stale else GenerationStatus.SUCCEEDED)
    recorded = UpstreamCall.objects.filter(generation_id=generation.pk)
    assert [(c.upstream_name, c.upstream_id, c.outcome, c.images, c.latency_ms) for c in recorded] == [
        ("default", None, "ok", delivered, 12)
    ]
    assert recorded[0].id is not None and recorded[0].cost is None  # numbered by the database; no prices
