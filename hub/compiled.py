"""Querysets of the hot paths, compiled to SQL once per process.

Django compiles a queryset to SQL on every execution: on this machine ~0.27 ms of CPU for a
two-condition filter, against ~0.08 ms for sending the SQL and reading the row. A request path
that runs the same few shapes on every request (the sync wait's reads, an account's lock)
compiles each once: `CompiledQuery(build, markers)` calls `build(*markers)`, keeps the SQL and
where each marker landed among its parameters, and later puts the real values there. The SQL is
Django's own, so it follows the models and the database; only the values change. Its rows become
model instances by hub.infra.fastpaths.orm_rows, as do those of hand-written SQL (`query_instances`).

With that fast path off (HUB_FAST_PATH_ORM_ROWS) a CompiledQuery is its queryset: built,
compiled and iterated by Django on every call; `query_instances` is Django's `raw()`.
"""

import functools
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model, QuerySet, signals

from hub.infra.fastpaths.orm_rows import ORM_ROWS, Layout, instances_of

# Marker values no real argument has: an id no row has, a string no id contains.
INT_MARKER = -7_340_029
STR_MARKER = "\x00hub-compiled\x00"


class CompiledQuery:
    def __init__(self, build: Callable[..., QuerySet], *markers: Any):
        """`markers`: one value per argument of `build`, distinct, of the argument's type (so that
        the field accepts it): INT_MARKER + i or STR_MARKER + str(i)."""
        self._build = build
        self._markers = markers
        self._compiled: dict[str, tuple[Layout, str, list, list[int | None]]] = {}  # per vendor

    def sql_params(self, *values: Any) -> tuple[str, list]:
        """The SQL and its parameters for `values` (in `build`'s argument order)."""
        if not ORM_ROWS.on():
            return self._build(*values).query.sql_with_params()
        _, sql, params, slots = self._compile()
        return sql, [p if slot is None else values[slot] for p, slot in zip(params, slots, strict=True)]

    def all(self, *values: Any) -> list[Model]:
        """The model instances the queryset would return, with its annotations and its
        select_related objects; no prefetch_related."""
        if not ORM_ROWS.on():
            return list(self._build(*values))
        with connection.cursor() as cursor:
            cursor.execute(*self.sql_params(*values))
            return self.instances(cursor.fetchall())

    def instances(self, rows: list[tuple]) -> list[Model]:
        """The model instances in rows of this query's SQL (sent with others, say): only with
        the fast path on (ORM_ROWS.on()); Django builds instances only from the rows it reads."""
        return self._compile()[0].instances(rows)

    def first(self, *values: Any) -> Model | None:
        """The first instance, or None."""
        return next(iter(self.all(*values)), None)

    def _compile(self):
        compiled = self._compiled.get(connection.vendor)
        if compiled is None:
            queryset = self._build(*self._markers)
            compiler = queryset.query.get_compiler(connection=connection)
            sql, params = compiler.as_sql()
            slots = [self._slot(param) for param in params]
            if sorted(slot for slot in slots if slot is not None) != list(range(len(self._markers))):
                raise ValueError("each marker must appear exactly once among the query's parameters")
            compiled = self._compiled[connection.vendor] = (Layout(queryset, compiler), sql, list(params), slots)
        return compiled

    def _slot(self, param: Any) -> int | None:
        for i, marker in enumerate(self._markers):
            if type(param) is type(marker) and param == marker:
                return i
        return None


def query_instances(model: type[Model], sql: str, params: list) -> list[Model]:
    """`model.objects.raw(sql, params)`, listed, without RawQuerySet's work on every query.
    `sql` names its result columns (a queryset's SELECT, `RETURNING` + columns_sql())."""
    if not ORM_ROWS.on():
        return list(model._default_manager.raw(sql, params))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return instances_of(model, sql, cursor)


def columns_sql(model: type[Model]) -> str:
    """The model's columns, quoted, for a hand-written `RETURNING` or `SELECT`: named rather than
    `*`, so that a statement's result columns are fixed by its text, as a queryset's are."""
    return _columns_sql(model, connection.vendor)


@functools.cache
def _columns_sql(model: type[Model], vendor: str) -> str:
    return ", ".join(connection.ops.quote_name(field.column) for field in model._meta.concrete_fields)


def insert(instance: Model) -> Model:
    """`instance.save(force_insert=True)` for a new row: one INSERT of every concrete field, its
    SQL made once per model (save() compiles it every time: with the rest of save()'s machinery,
    ~60 % of what creating a generation's row cost the web, yappi). The values are Django's own
    (each field's pre_save and get_db_prep_save). A model with pre_save/post_save receivers is
    saved by save(), which sends them."""
    model = type(instance)
    if _has_save_receivers(model):
        instance.save(force_insert=True)
        return instance
    db = connections[DEFAULT_DB_ALIAS]
    columns, placeholders, params = _insert_values(instance, db)
    with db.cursor() as cursor:
        cursor.execute(f"INSERT INTO {columns} VALUES ({placeholders})", params)
    return inserted(instance)


def insert_when(instance: Model, condition: str) -> tuple[str, list]:
    """insert()'s INSERT as `INSERT … SELECT <values> <condition>`, for a data-modifying common
    table expression of a larger statement: the row is written when `condition` (a FROM and a
    WHERE) yields one row. The caller runs the statement, then calls inserted(instance). A row
    whose primary key the database numbers (an AutoField left None) is numbered so, unread."""
    if _has_save_receivers(type(instance)):
        raise ValueError(f"{type(instance).__name__} has save receivers: save() it")
    columns, placeholders, params = _insert_values(instance, connections[DEFAULT_DB_ALIAS], numbered=True)
    return f"INSERT INTO {columns} SELECT {placeholders} {condition}", params


def inserted(instance: Model) -> Model:
    """Mark `instance` saved, as save() does."""
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return instance


def _has_save_receivers(model: type[Model]) -> bool:
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


def _insert_values(instance: Model, db, *, numbered: bool = False) -> tuple[str, str, list]:
    """`table (columns)`, their placeholders and the values of every concrete field. `db` is the connection wrapper
    itself, not the `connection` proxy: each field's get_db_prep_save reads the connection's ops,
    and through the proxy each read is a thread-local lookup (a generation's row: 28 fields).
    `numbered`: an auto primary key left None is left out, for the database to number."""
    model = type(instance)
    numbered = numbered and instance.pk is None and model._meta.pk.db_returning
    columns, placeholders, fields = _insert_columns(model, db.vendor, numbered)
    return columns, placeholders, [field.get_db_prep_save(field.pre_save(instance, True), db) for field in fields]


@functools.cache
def _insert_columns(model: type[Model], vendor: str, numbered: bool = False) -> tuple[str, str, list]:
    fields = [field for field in model._meta.concrete_fields if not (numbered and field.primary_key)]
    if any(field.db_returning or field.generated or field.has_db_default() for field in fields):
        raise ValueError(f"{model.__name__} has fields the database fills in: save() it")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    return f"{quote(model._meta.db_table)} ({columns})", ", ".join(["%s"] * len(fields)), list(fields)
