"""Querysets of the hot paths, compiled to SQL once per process.

Django compiles a queryset to SQL on every execution: on this machine ~0.27 ms of CPU for a
two-condition filter, against ~0.08 ms for sending the SQL and reading the row. A request path
that runs the same few shapes on every request (the sync wait's reads, an account's lock)
compiles each once: `CompiledQuery(build, markers)` calls `build(*markers)`, keeps the SQL and
where each marker landed among its parameters, and later puts the real values there. The SQL is
Django's own, so it follows the models and the database; only the values change.

Rows become model instances the way Django's iterables build them — which columns are which
object's fields, the fields' database converters, `Model.from_db`, select_related objects,
annotations — with that layout worked out once: from the compiler for a compiled queryset, from
the result's columns (once per statement) for hand-written SQL (`query_instances`). Rows read
through RawQuerySet, as before, paid its column matching (quadratic in the model's fields) and
converter lookup on every query: ~18 % of a web process's CPU in the sync-c32-0s profile (yappi),
more than sending the queries.
"""

import functools
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model, QuerySet, signals
from django.db.models.query import ModelIterable

# Marker values no real argument has: an id no row has, a string no id contains.
INT_MARKER = -7_340_029
STR_MARKER = "\x00hub-compiled\x00"


class CompiledQuery:
    def __init__(self, build: Callable[..., QuerySet], *markers: Any):
        """`markers`: one value per argument of `build`, distinct, of the argument's type (so that
        the field accepts it): INT_MARKER + i or STR_MARKER + str(i)."""
        self._build = build
        self._markers = markers
        self._compiled: dict[str, tuple[_Layout, str, list, list[int | None]]] = {}  # per vendor

    def sql_params(self, *values: Any) -> tuple[str, list]:
        """The SQL and its parameters for `values` (in `build`'s argument order)."""
        _, sql, params, slots = self._compile()
        return sql, [p if slot is None else values[slot] for p, slot in zip(params, slots, strict=True)]

    def all(self, *values: Any) -> list[Model]:
        """The model instances the queryset would return, with its annotations and its
        select_related objects; no prefetch_related."""
        with connection.cursor() as cursor:
            cursor.execute(*self.sql_params(*values))
            return self.instances(cursor.fetchall())

    def instances(self, rows: list[tuple]) -> list[Model]:
        """The model instances in rows of this query's SQL (sent with others, say)."""
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
            compiled = self._compiled[connection.vendor] = (_Layout(queryset, compiler), sql, list(params), slots)
        return compiled

    def _slot(self, param: Any) -> int | None:
        for i, marker in enumerate(self._markers):
            if type(param) is type(marker) and param == marker:
                return i
        return None


class _Layout:
    """Where a compiled queryset's row holds each object, read from the compiler as Django's
    ModelIterable and RelatedPopulator read it — worked out once, not on every query."""

    def __init__(self, queryset: QuerySet, compiler):
        if queryset._iterable_class is not ModelIterable or queryset._prefetch_related_lookups:
            raise ValueError("a compiled query returns model instances, without prefetch_related")
        select = compiler.select
        self.main = _Part(select, compiler.klass_info)
        self.annotations = list(compiler.annotation_col_map.items())
        self.converters = _converters(enumerate(column for column, _, _ in select))

    def instances(self, rows: list[tuple]) -> list[Model]:
        converters = _current_converters(self.converters)
        alias = connection.alias
        result = []
        for row in rows:
            if converters:
                row = _converted(row, converters)
            instance = self.main.build(row, alias)
            for name, position in self.annotations:
                setattr(instance, name, row[position])
            result.append(instance)
        return result


class _Part:
    """One object of the row (the queryset's model, or a select_related one) and the objects
    selected with it, set on each other by the setters Django's compiler names for the relation."""

    def __init__(self, select, info: dict):
        if info.get("from_parent"):
            raise ValueError("a compiled query does not follow multi-table inheritance")
        fields = info["select_fields"]
        self.model, self.start, self.end = info["model"], fields[0], fields[-1] + 1
        self.names = [column.target.attname for column, _, _ in select[self.start : self.end]]
        self.pk = self.start + self.names.index(self.model._meta.pk.attname)
        self.local_setter, self.remote_setter = info.get("local_setter"), info.get("remote_setter")
        self.related = [_Part(select, related) for related in info.get("related_klass_infos", [])]

    def build(self, row, alias: str) -> Model:
        instance = self.model.from_db(alias, self.names, row[self.start : self.end])
        for part in self.related:
            part.attach(row, instance, alias)
        return instance

    def attach(self, row, to: Model, alias: str) -> None:
        """As RelatedPopulator.populate: the related object, or None for an outer join's empty side."""
        related = None if row[self.pk] is None else self.build(row, alias)
        self.local_setter(to, related)
        if related is not None:
            self.remote_setter(related, to)


def _converters(expressions) -> list:
    """(position, expression, field converters, whether the backend has some) for each of
    (position, expression) that has converters, as SQLCompiler.get_converters finds them."""
    found = []
    for position, expression in expressions:
        functions = expression.get_db_converters(connection)
        backend = bool(connection.ops.get_db_converters(expression))
        if functions or backend:
            found.append((position, expression, functions, backend))
    return found


def _current_converters(shaped: list) -> list:
    """(position, converters, expression) with the backend's converters taken from the current
    DatabaseWrapper (they are bound to it; there is one per thread or greenlet); the fields' own
    (from_db_value) are the same for every query."""
    return [
        (position, [*connection.ops.get_db_converters(expression), *functions] if backend else functions, expression)
        for position, expression, functions, backend in shaped
    ]


def _converted(row: tuple, converters: list) -> list:
    row = list(row)
    for position, functions, expression in converters:
        value = row[position]
        for convert in functions:
            value = convert(value, expression, connection)
        row[position] = value
    return row


def query_instances(model: type[Model], sql: str, params: list) -> list[Model]:
    """`model.objects.raw(sql, params)`, listed, without RawQuerySet's work on every query.
    `sql` names its result columns (a queryset's SELECT, `RETURNING` + columns_sql())."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return _instances(model, sql, cursor)


def columns_sql(model: type[Model]) -> str:
    """The model's columns, quoted, for a hand-written `RETURNING` or `SELECT`: named rather than
    `*`, so that a statement's result columns are fixed by its text, as a queryset's are."""
    return _columns_sql(model, connection.vendor)


@functools.cache
def _columns_sql(model: type[Model], vendor: str) -> str:
    return ", ".join(connection.ops.quote_name(field.column) for field in model._meta.concrete_fields)


# Shapes by statement (its SQL): reading cursor.description builds a column object per column on
# every query (psycopg), ~40 % of what _instances() cost.
_SHAPE_OF_STATEMENT: dict = {}
SHAPES_KEPT = 512  # statements are the code's (the claim's, the finish's per image count …)


def _instances(model: type[Model], sql: str, cursor) -> list[Model]:
    """The instances of `model` in the rows of `sql`, executed on `cursor`: its columns are the
    model's (any subset holding the primary key, in any order), and any other column is set on
    each instance as an attribute. The shape of its columns is remembered by the SQL."""
    key = (sql, model, connection.vendor)
    shape = _SHAPE_OF_STATEMENT.get(key)
    if shape is None:
        shape = _shape(model, tuple(column[0] for column in cursor.description), connection.vendor)
        if len(_SHAPE_OF_STATEMENT) < SHAPES_KEPT:
            _SHAPE_OF_STATEMENT[key] = shape
    names, positions, extras, shaped = shape
    converters = _current_converters(shaped)
    result = []
    for row in cursor.fetchall():
        if converters:
            row = _converted(row, converters)
        instance = model.from_db(connection.alias, names, [row[position] for position in positions])
        for name, position in extras:
            setattr(instance, name, row[position])
        result.append(instance)
    return result


@functools.cache
def _shape(model: type[Model], columns: tuple[str, ...], vendor: str):
    """For rows of `columns`: the field names and positions Model.from_db takes, the extra
    columns, and for each field column that has converters (as SQLCompiler.get_converters finds
    them) its position, expression, field converters and whether the backend has some too.
    `vendor` keys the cache: converters are the backend's."""
    if model._meta.pk.column not in columns:
        raise ValueError(f"rows of {model.__name__} must hold its primary key column")
    position_of = {column: position for position, column in enumerate(columns)}
    names, positions, expressions = [], [], []
    for field in model._meta.concrete_fields:  # the order Model.from_db expects
        position = position_of.pop(field.column, None)
        if position is None:
            continue  # deferred
        names.append(field.attname)
        positions.append(position)
        expressions.append((position, field.get_col(model._meta.db_table)))
    extras = list(position_of.items())  # the columns no field has
    return names, positions, extras, _converters(expressions)


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
    WHERE) yields one row. The caller runs the statement, then calls inserted(instance)."""
    if _has_save_receivers(type(instance)):
        raise ValueError(f"{type(instance).__name__} has save receivers: save() it")
    columns, placeholders, params = _insert_values(instance, connections[DEFAULT_DB_ALIAS])
    return f"INSERT INTO {columns} SELECT {placeholders} {condition}", params


def inserted(instance: Model) -> Model:
    """Mark `instance` saved, as save() does."""
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return instance


def _has_save_receivers(model: type[Model]) -> bool:
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


def _insert_values(instance: Model, db) -> tuple[str, str, list]:
    """`table (columns)`, their placeholders and the values of every concrete field. `db` is the connection wrapper
    itself, not the `connection` proxy: each field's get_db_prep_save reads the connection's ops,
    and through the proxy each read is a thread-local lookup (a generation's row: 28 fields)."""
    columns, placeholders, fields = _insert_columns(type(instance), db.vendor)
    return columns, placeholders, [field.get_db_prep_save(field.pre_save(instance, True), db) for field in fields]


@functools.cache
def _insert_columns(model: type[Model], vendor: str) -> tuple[str, str, list]:
    fields = model._meta.concrete_fields
    if any(field.db_returning or field.generated or field.has_db_default() for field in fields):
        raise ValueError(f"{model.__name__} has fields the database fills in: save() it")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    return f"{quote(model._meta.db_table)} ({columns})", ", ".join(["%s"] * len(fields)), list(fields)
