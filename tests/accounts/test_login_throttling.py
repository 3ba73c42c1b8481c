import pytest

from tests.factories import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


def _sign_in(client, password, *, email="alice@example.com", ip="203.0.113.7"):
    return client.post("/account/login/", {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_repeated_wrong_passwords_lock_out_even_the_right_one(client):
    make_user(email="alice@example.com")
    assert [_sign_in(client, "guess").status_code for _ in range(5)] == [200, 200, 200, 200, 429]
    response = _sign_in(client, PASSWORD)
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content
    assert client.get("/account/").status_code == 302


def test_changing_the_case_of_the_email_does_not_reset_the_count(client):
    make_user(email="alice@example.com")
    for email in [
        "alice@example.com",
        "Alice@example.com",
        "ALICE@example.com",
        "alice@Example.com",
        "aLice@example.com",
    ]:
        _sign_in(client, "guess", email=email)
    assert _sign_in(client, PASSWORD, email="Alice@Example.COM").status_code == 429


def test_a_lockout_from_one_address_does_not_lock_the_user_out_elsewhere(client):
    make_user(email="alice@example.com")
    for _ in range(6):
        _sign_in(client, "guess", ip="203.0.113.7")
    assert _sign_in(client, PASSWORD, ip="198.51.100.20").status_code == 302


def test_the_admin_sign_in_is_throttled_too(client):
    make_user(email="ops@example.com")
    for _ in range(5):
        client.post("/admin/login/", {"username": "ops@example.com", "password": "guess"}, REMOTE_ADDR="203.0.113.9")
    response = client.post(
        "/admin/login/", {"username": "ops@example.com", "password": PASSWORD}, REMOTE_ADDR="203.0.113.9"
    )
    assert response.status_code == 429
