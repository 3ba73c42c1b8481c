import pytest
from django.contrib.auth import get_user_model


@pytest.fixture
def operator():
    return get_user_model().objects.create_superuser(username="ops@example.com", email="ops@example.com", password="ops password 1")


@pytest.fixture
def console(client, operator):
    client.force_login(operator)
    return client
