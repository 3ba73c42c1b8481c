"""The test databases are built by the migrations, as production's are; this keeps the models from
drifting from them: a model change without its migration would pass every test here and then
fail in production (a column the code reads that `manage.py migrate` never made)."""

import pytest
from django.core.management import call_command


@pytest.mark.django_db  # makemigrations checks the applied history too
def test_every_model_change_has_its_migration(capsys):
    try:
        call_command("makemigrations", "--check", "--dry-run", verbosity=1)
    except SystemExit:  # --check: exit 1 when a migration is missing
        pytest.fail(f"models changed without a migration (manage.py makemigrations):\n{capsys.readouterr().out}")
    assert "No changes detected" in capsys.readouterr().out
