from django.db import migrations, models

from generations.options import ALL_OPTIONS


def offer_every_option(apps, schema_editor):
    """The rows that exist already offer every option (they passed none on before, and refused
    none): their operators narrow them in the admin. Rows made later offer what they are given."""
    apps.get_model("generations", "ImageModel").objects.update(options=ALL_OPTIONS)


class Migration(migrations.Migration):
    dependencies = [("generations", "0009_generation_events")]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="options",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="imagemodel",
            name="options",
            field=models.JSONField(
                blank=True, default=dict, help_text="OpenAI options it accepts: name → allowed values, or true for any"
            ),
        ),
        migrations.RunPython(offer_every_option, migrations.RunPython.noop),
    ]
