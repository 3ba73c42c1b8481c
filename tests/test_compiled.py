"""hub.compiled: a queryset compiled once answers what the queryset answers, for any values."""

import pytest
from django.db.models import Value
from django.db.models.signals import post_save
from django.utils import timezone

from apikeys.models import ApiKey, EmailVerification
from apikeys.services import api_key_create
from generations.models import FINISHED, Generation, GenerationStatus
from hub.compiled import INT_MARKER, STR_MARKER, CompiledQuery, insert, query_instances
from tests.factories import create_generation, make_generation, make_user

pytestmark = pytest.mark.django_db


def test_a_compiled_query_answers_like_its_queryset_for_every_value():
    owner = make_user(credits=100)
    done, queued = make_generation(owner), create_generation(owner)
    finished = CompiledQuery(lambda pk: Generation.objects.filter(pk=pk, status__in=FINISHED), STR_MARKER)
    for generation in (done, queued, Generation(pk="gen_missing")):
        expected = list(Generation.objects.filter(pk=generation.pk, status__in=FINISHED))
        assert finished.all(generation.pk) == expected
        assert finished.first(generation.pk) == next(iter(expected), None)
    assert finished.all(done.pk)[0].status == GenerationStatus.SUCCEEDED


def test_two_markers_take_their_own_places():
    owner = make_user(credits=100)
    generation = create_generation(owner)
    by_owner = CompiledQuery(
        lambda pk, owner_id: Generation.objects.filter(pk=pk, owner_id=owner_id), STR_MARKER, INT_MARKER
    )
    assert by_owner.all(generation.pk, owner.pk) == [generation]
    assert by_owner.all(generation.pk, owner.pk + 1) == []


def test_a_marker_the_query_does_not_carry_is_refused():
    unused = CompiledQuery(lambda pk: Generation.objects.all(), STR_MARKER)
    with pytest.raises(ValueError, match="exactly once"):
        unused.all("gen_x")


def _values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_rows_in_any_column_order_become_the_instances_the_orm_builds():
    owner = make_user(credits=100)
    generation = create_generation(owner, webhook_url="https://example.com/hook", webhook_events=["succeeded"])
    columns = [field.column for field in Generation._meta.concrete_fields][::-1]  # not the model's order
    table = Generation._meta.db_table
    expected = Generation.objects.get(pk=generation.pk)
    for order in (columns, columns[::-1], columns):  # each statement's shape is its own, also when remembered
        sql = f"SELECT {', '.join(order)} FROM {table} WHERE id = %s"
        (row,) = query_instances(Generation, sql, [generation.pk])
        assert _values(row) == _values(expected)
    assert row.webhook_events == ["succeeded"]  # a JSON column, through the field's converter
    assert row._state.adding is False and row._state.db == "default" and row.get_deferred_fields() == set()


def test_missing_columns_are_deferred_and_other_columns_are_attributes():
    owner = make_user(credits=100)
    generation = create_generation(owner)
    table = Generation._meta.db_table
    (row,) = query_instances(
        Generation, f"SELECT id, status, 41 + 1 AS answer FROM {table} WHERE id = %s", [generation.pk]
    )
    assert (row.pk, row.status, row.answer) == (generation.pk, GenerationStatus.QUEUED, 42)
    assert "prompt" in row.get_deferred_fields()
    assert row.prompt == generation.prompt  # loaded on access, as for any deferred field


def test_rows_without_the_primary_key_are_refused():
    with pytest.raises(ValueError, match="primary key"):
        query_instances(Generation, f"SELECT status FROM {Generation._meta.db_table}", [])


def test_select_related_objects_and_annotations_come_with_the_row(django_assert_num_queries):
    owner = make_user(credits=100)
    key, _ = api_key_create(owner=owner)
    with_owner = CompiledQuery(
        lambda pk: ApiKey.objects.select_related("owner").annotate(tag=Value("x")).filter(pk=pk), STR_MARKER
    )
    with django_assert_num_queries(1):
        (found,) = with_owner.all(key.pk)
        assert (found.pk, found.owner.pk, found.owner.email, found.tag) == (key.pk, owner.pk, owner.email, "x")
    assert _values(found) == _values(ApiKey.objects.get(pk=key.pk))
    assert _values(found.owner) == _values(type(owner).objects.get(pk=owner.pk))


def test_nested_and_reverse_one_to_one_relations_come_with_the_row(django_assert_num_queries):
    verified, unverified = make_user(credits=100), make_user(credits=100)
    EmailVerification.objects.create(owner=verified, verified_at=timezone.now())
    keys = [api_key_create(owner=owner)[0] for owner in (verified, unverified)]
    with_verification = CompiledQuery(
        lambda pk: ApiKey.objects.select_related("owner", "owner__email_verification").filter(pk=pk), STR_MARKER
    )
    with django_assert_num_queries(2):
        found = [with_verification.first(key.pk) for key in keys]
        assert found[0].owner.email_verification.verified_at is not None
        assert found[0].owner.email_verification.owner is found[0].owner  # set both ways, as Django does
        with pytest.raises(EmailVerification.DoesNotExist):  # the outer join's empty side: cached
            _ = found[1].owner.email_verification


def test_what_a_compiled_query_cannot_build_is_refused():
    for build in (
        lambda pk: ApiKey.objects.filter(pk=pk).values("pk"),
        lambda pk: ApiKey.objects.filter(pk=pk).prefetch_related("owner"),
    ):
        with pytest.raises(ValueError, match="model instances"):
            CompiledQuery(build, STR_MARKER).all("key_x")


DEADLINE = timezone.now()


def _generation(owner, generation_id: str) -> Generation:
    return Generation(
        id=generation_id,
        owner=owner,
        model_id="gpt-image-2",
        prompt="A lighthouse",
        size="1024x1024",
        quality="low",
        n=2,
        aspect_ratio="1:1",
        tier="1K",
        price_per_image=2,
        credits_requested=4,
        deadline_at=DEADLINE,
        webhook_url="https://example.com/hook",
        webhook_events=["succeeded", "failed"],
    )


def test_insert_writes_the_row_that_save_writes():
    owner = make_user(credits=100)
    saved = _generation(owner, "gen_" + "s" * 24)
    saved.save(force_insert=True)
    inserted = insert(_generation(owner, "gen_" + "i" * 24))
    assert inserted._state.adding is False and inserted._state.db == "default"
    rows = [_values(Generation.objects.get(pk=pk)) for pk in (saved.pk, inserted.pk)]
    for row in rows:
        row.pop("id")
        row.pop("created_at")  # auto_now_add: set by both, a moment apart
    assert rows[0] == rows[1]
    assert Generation.objects.get(pk=inserted.pk).created_at == inserted.created_at


def test_insert_is_a_save_when_the_model_has_receivers():
    owner = make_user(credits=100)
    seen = []

    def receiver(sender, instance, created, **kwargs):
        seen.append((instance.pk, created))

    post_save.connect(receiver, sender=Generation)
    try:
        generation = insert(_generation(owner, "gen_" + "r" * 24))
    finally:
        post_save.disconnect(receiver, sender=Generation)
    assert seen == [(generation.pk, True)]
