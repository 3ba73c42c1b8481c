from django.db import migrations

from generations.catalog_seed import seed_catalog


def seed(apps, schema_editor):
    seed_catalog(apps.get_model("generations", "ImageModel"))


class Migration(migrations.Migration):
    dependencies = [("generations", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
