import pytest

from accounts.services import user_create


@pytest.fixture
def operator():
    return user_create(email="ops@example.com", password="ops password 1", is_staff=True)


@pytest.fixture
def console(client, operator):
    client.force_login(operator)
    return client
