"""hub.compiled: a queryset compiled once answers what the queryset answers, for any values."""

import pytest

from generations.models import FINISHED, Generation, GenerationStatus
from hub.compiled import INT_MARKER, STR_MARKER, CompiledQuery
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
