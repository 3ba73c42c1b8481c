"""A generation row is written three times (created, claimed, finished), and each write that
changes `status` (indexed with the deadline) adds an entry to every index of the table. Two
kinds of index had no query:

- `owner_id`'s own index: Meta.indexes' (owner, -created_at) starts with it;
- the `varchar_pattern_ops` copies PostgreSQL's backend makes beside the indexes of character
  columns (`…_like`: the id, the API key and the model), which serve only case-sensitive
  `LIKE 'prefix%'` — the admin's search is `UPPER(…) LIKE`, which they do not serve either.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

LIKE_INDEXES_SQL = """
    SELECT indexname FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename = 'generations_generation'
      AND indexname LIKE '%%\\_like' AND indexdef LIKE '%%varchar_pattern_ops%%'
"""


def drop_like_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(LIKE_INDEXES_SQL)
        names = [name for (name,) in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0005_sweep_schedule"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="generation",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="generations",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        # Unapplied, the copies stay dropped: nothing queries them.
        migrations.RunPython(drop_like_indexes, migrations.RunPython.noop),
    ]
