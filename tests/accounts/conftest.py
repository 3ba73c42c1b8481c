import pytest

from tests.factories import make_user


@pytest.fixture
def member(client):
    """A signed-in user with a client: (user, client)."""
    user = make_user(email="member@example.com")
    client.force_login(user)
    return user, client
