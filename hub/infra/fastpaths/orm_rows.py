"""Rows to model instances without Django's per-query work: the layout of a statement's rows —
which columns are which object's fields, the fields' database converters, select_related
objects, annotations — worked out once, then `Model.from_db` per row.

Replaces: ModelIterable/RelatedPopulator (reading a queryset's compiler: `select`,
`klass_info`, `annotation_col_map`) for hub.compiled.CompiledQuery, and RawQuerySet's iteration
(its column matching, quadratic in the model's fields, and converter lookup on every query) for
hub.compiled.query_instances. Rows read through RawQuerySet paid ~18 % of a web process's CPU in
the sync-c32-0s profile (yappi), more than sending the queries. Off (HUB_FAST_PATH_ORM_ROWS), a
compiled query runs its queryset and query_instances Django's `raw()`.
"""

import functools

from django.db import connection
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable

from hub.infra.fastpaths import FastPath

ORM_ROWS = FastPath("ORM_ROWS", "django", "5.2.19")


class Layout:
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


# Shapes by statement (its SQL): reading cursor.description builds a column object per column on
# every query (psycopg), ~40 % of what instances_of() cost.
_SHAPE_OF_STATEMENT: dict = {}
SHAPES_KEPT = 512  # statements are the code's (the claim's, the finish's per image count …)


def instances_of(model: type[Model], sql: str, cursor) -> list[Model]:
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
