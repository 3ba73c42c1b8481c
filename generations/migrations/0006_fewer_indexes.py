"""A generation row is written three times (created, claimed, finished), and each write that
changes `status` (indexed with the deadline) adds an entry to every index of the table. Two
kinds of index had no query: `owner_id`'s own (Meta.indexes' (owner, -created_at) starts with
it), and the `varchar_pattern_ops` copies beside the id, the API key and the model
(hub.migration_ops)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from hub.migration_ops import drop_pattern_ops_indexes


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
        drop_pattern_ops_indexes("generations_generation"),
    ]
