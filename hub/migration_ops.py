"""Migration operations the apps share (their migrations import them: keep each as it is)."""

from django.db import migrations

from hub.infra import backends

_PATTERN_OPS_SQL = """
    SELECT indexname FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename = %s
      AND indexname LIKE '%%\\_like' AND indexdef LIKE '%%varchar_pattern_ops%%'
"""


def drop_pattern_ops_indexes(table: str) -> migrations.RunPython:
    """Drop the `varchar_pattern_ops` copies (`…_like`) PostgreSQL's backend makes beside each
    index of a character column. They serve only case-sensitive `LIKE 'prefix%'` (the admin's
    search is `UPPER(…) LIKE`, which they do not serve either), and each is one more entry to
    write with every row. Unapplied, they stay dropped; Django drops them IF EXISTS when it
    alters such a field."""

    def drop(apps, schema_editor):
        if not backends.postgresql(schema_editor.connection):
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(_PATTERN_OPS_SQL, [table])
            names = [name for (name,) in cursor.fetchall()]
        for name in names:
            schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")

    return migrations.RunPython(drop, migrations.RunPython.noop)
