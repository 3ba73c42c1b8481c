"""A request with an Idempotency-Key claims the key before it takes any limit: a row without
a generation until the charge commits (generations.services.generation_create). On PostgreSQL,
DROP NOT NULL only: no rewrite, no scan."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('generations', '0006_fewer_indexes'),
    ]

    operations = [
        migrations.AlterField(
            model_name='idempotencykey',
            name='generation',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='generations.generation'),
        ),
    ]
