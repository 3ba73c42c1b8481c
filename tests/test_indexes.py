"""Each index is one more entry to write with every row: a generation is written on every insert
and status change, a ledger row with every charge. The two tables keep the indexes their queries
use (generations/migrations/0006, billing/migrations/0004)."""

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's index copies"),
]


def _index_columns(table: str = "generations_generation") -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return {name: definition.split(" USING btree ", 1)[1] for name, definition in cursor.fetchall()}


def test_the_generations_table_has_no_index_its_queries_do_not_use():
    columns = sorted(_index_columns().values())
    assert not [c for c in columns if "varchar_pattern_ops" in c], columns
    assert "(owner_id)" not in columns  # (owner_id, created_at DESC) serves it
    assert "(owner_id, created_at DESC)" in columns
    assert sorted(columns) == sorted(
        ["(id)", "(api_key_id)", "(model_id)", "(created_at)", "(owner_id, created_at DESC)", "(status, deadline_at)"]
    )


def test_a_user_s_generations_are_listed_by_the_owner_index():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM generations_generation WHERE owner_id = 1 ORDER BY created_at DESC LIMIT 20"
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "owner_id_created_at" in plan or "generations_owner_i" in plan, plan


def test_the_ledger_indexes_a_grant_and_an_actor_only_where_a_row_has_one():
    columns = sorted(_index_columns("billing_ledgerentry").values())
    assert not [c for c in columns if "varchar_pattern_ops" in c], columns
    assert "(grant_id) WHERE (grant_id IS NOT NULL)" in columns
    assert "(actor_id) WHERE (actor_id IS NOT NULL)" in columns
    assert "(grant_id)" not in columns and "(actor_id)" not in columns
    assert "(generation_id)" in columns  # a generation's movements, of any kind
