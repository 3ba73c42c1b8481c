"""Whole flows in a real browser: what a customer and an operator do by hand."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.services import user_create
from hub.infra.timefmt import iso_z
from tests.browser.conftest import sign_in
from tests.factories import make_key, make_user

PASSWORD = "correct horse battery"  # the factories' password


def _expect_image_widths(page, selector: str, widths: list[int]) -> None:
    """Each image loads with its width; polled by Playwright's expect.

    Not ``wait_for_function``: once its first check fails it re-evaluates the predicate with
    ``eval`` in the page, which the pages' CSP (``script-src 'self'``) rightly refuses.
    """
    images = page.locator(selector)
    expect(images).to_have_count(len(widths))
    for index, width in enumerate(widths):
        expect(images.nth(index)).to_have_js_property("naturalWidth", width)


def _credits(page, raw_key: str):
    return page.request.get("/api/v1/credits", headers={"Authorization": f"Bearer {raw_key}"})


@pytest.mark.django_db(transaction=True)
def test_sign_up_create_a_key_call_the_api_and_revoke_the_key(page, screenshot):
    page.goto("/account/password-reset/")
    page.get_by_label("Email").fill("nobody@example.com")
    screenshot(page, "password-reset")
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_role("heading")).to_have_text("Check your email")
    screenshot(page, "password-reset-sent")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/account/login/\?next=/account/$"))
    screenshot(page, "sign-in")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password", exact=True).fill("analytical engine 1843")
    page.get_by_label("Password again").fill("analytical engine 1843")
    screenshot(page, "sign-up")
    page.get_by_role("button", name="Create account").click()
    # The same answer whether or not the address has an account: a link is in the inbox.
    expect(page.get_by_role("heading")).to_have_text("Check your inbox")
    screenshot(page, "sign-up-sent")
    page.get_by_role("link", name="Sign in").click()
    sign_in(page, "ada@example.com", "analytical engine 1843")

    expect(page.get_by_test_id("balance")).to_have_text("0")
    expect(page.locator("#qs-credits")).to_contain_text("/api/v1/credits")
    screenshot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "overview-mobile")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.get_by_role("navigation").get_by_role("link", name="API Keys").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Expires").select_option("90")
    page.get_by_role("button", name="Create key").click()
    raw = page.locator("#new-key").inner_text().strip()
    assert raw.startswith("gih_live_") and len(raw) == 41
    expect(page.get_by_role("alert")).to_contain_text("only time the key is shown")
    copy = page.locator(".new-key button.copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == raw
    screenshot(page, "api-key-created")

    response = _credits(page, raw)
    assert response.status == 200
    assert response.json() == {"credits": 0, "account_type": "FREE", "next_expiration": None}

    page.get_by_role("navigation").get_by_role("link", name="API Keys").click()
    expect(page.locator("main")).not_to_contain_text(raw[13:])
    row = page.locator("#keys tbody tr", has_text="laptop")
    expect(row).to_contain_text(raw[:13])
    expect(row.locator(".badge")).to_have_text("active")
    screenshot(page, "api-keys")

    row.get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading")).to_have_text("Revoke this key?")
    screenshot(page, "api-key-revoke")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.locator("#keys tbody tr", has_text="laptop").locator(".badge")).to_have_text("revoked")
    expect(page.locator("main")).not_to_contain_text(raw[13:])

    response = _credits(page, raw)
    assert response.status == 401 and response.json()["error"]["code"] == "invalidApiKey"


@pytest.mark.django_db(transaction=True)
def test_an_operator_grants_expiring_credits_and_the_user_sees_them(page, browser, base_url, screenshot):
    user = make_user(email="grace@example.com")
    raw = make_key(user, name="prod")
    make_user(email="linus@example.com")
    user_create(email="ops@example.com", password=PASSWORD, is_staff=True)
    expires = (timezone.now() + timedelta(days=45)).replace(second=0, microsecond=0)

    page.set_viewport_size({"width": 1440, "height": 900})  # the admin's lists are wide
    sign_in(page, "ops@example.com", PASSWORD, path="/admin/login/")
    screenshot(page, "admin-home")
    page.get_by_role("link", name="Credit accounts").click()
    page.locator("#result_list tr", has_text="grace@example.com").locator("input.action-select").check()
    page.locator("select[name=action]").select_option("grant_credits")
    page.get_by_role("button", name="Go").click()
    page.get_by_label("Amount").fill("500")
    page.get_by_label("Expires at (UTC)").fill(f"{expires:%Y-%m-%dT%H:%M}")
    page.get_by_label("Reason").fill("Design partner")
    screenshot(page, "admin-grant-credits")
    page.get_by_role("button", name="Grant credits").click()
    expect(page.locator(".messagelist")).to_contain_text("Granted 500 credits")
    expect(page.locator("#result_list tr", has_text="grace@example.com")).to_contain_text("500")
    screenshot(page, "admin-credit-accounts")
    page.goto("/admin/billing/ledgerentry/")
    expect(page.locator("#result_list")).to_contain_text("Design partner")
    screenshot(page, "admin-ledger")

    customer = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    user_page = customer.new_page()
    sign_in(user_page, "grace@example.com", PASSWORD)
    user_page.get_by_role("navigation").get_by_role("link", name="Credits").click()
    expect(user_page.get_by_test_id("balance")).to_have_text("500")
    expect(user_page.get_by_test_id("next-expiration")).to_contain_text(f"500 credits on {expires:%Y-%m-%d}")
    grant = user_page.locator("#grants tbody tr")
    expect(grant).to_contain_text(f"{expires:%Y-%m-%d %H:%M}")
    expect(grant).to_contain_text("Design partner")
    screenshot(user_page, "credits")

    response = _credits(user_page, raw)
    assert response.json() == {
        "credits": 500,
        "account_type": "FREE",
        "next_expiration": {"credits": 500, "expires_at": iso_z(expires)},
    }
    customer.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_generation_made_with_the_api_shows_up_with_its_images(page, celery_worker, screenshot):
    user = make_user(email="hedy@example.com", credits=100)
    raw = make_key(user)
    body = {
        "model": "gpt-image-2",
        "prompt": "A lighthouse at dawn, watercolor",
        "size": "1536x1024",
        "quality": "low",
        "n": 2,
    }
    response = page.request.post("/api/v1/images/generations", data=body, headers={"Authorization": f"Bearer {raw}"})
    assert response.status == 200, response.text()
    generation_id = response.json()["id"]

    sign_in(page, "hedy@example.com", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Generations").click()
    row = page.locator("#generations tbody tr", has_text=generation_id)
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(row).to_contain_text("gpt-image-2")
    _expect_image_widths(page, "#generations img.thumb", [1536])
    screenshot(page, "generations")

    row.get_by_role("link", name=generation_id, exact=True).click()
    _expect_image_widths(page, ".gallery img", [1536, 1536])
    screenshot(page, "generation")

    page.goto("/account/credits/")
    expect(page.get_by_test_id("balance")).to_have_text("96")


@pytest.mark.django_db(transaction=True)
def test_copy_and_rotate_the_webhook_secret(page, screenshot):
    make_user(email="hooks@example.com")
    sign_in(page, "hooks@example.com", PASSWORD)
    secret = page.locator("#webhook-secret").inner_text().strip()
    assert secret.startswith("whsec_")
    copy = page.locator("#webhooks-title ~ .code-block button.copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "webhook-secret")
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_role("status")).to_contain_text("no longer verifies")
    rotated = page.locator("#webhook-secret").inner_text().strip()
    assert rotated.startswith("whsec_") and rotated != secret
