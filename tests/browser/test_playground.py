"""The playground in Chromium, with a real worker: a user prices a request, generates, watches the
partial images sharpen into the final ones through the events stream (the session's), and finds
the generation in the history. Screenshots: playground, playground-partial, playground-final."""

import re

import pytest
from playwright.sync_api import expect

from billing.selectors import credits_summary_for_user
from generations.models import Generation
from tests.browser.conftest import sign_in
from tests.conftest import relays_partials
from tests.factories import make_user

PASSWORD = "correct horse battery"  # the factories' password


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@relays_partials
def test_a_user_prices_generates_and_watches_partial_images_become_the_final_ones(page, celery_worker, screenshot):
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    user = make_user(email="grace@example.com", credits=100)
    sign_in(page, "grace@example.com", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Playground").click()
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("100")

    cost = page.get_by_test_id("cost")
    expect(cost).to_have_text("8 credits")  # gpt-image-2, auto size and quality, one image
    page.get_by_label("Quality").select_option("low")
    expect(cost).to_have_text("2 credits")
    page.get_by_label("Images").select_option("2")
    page.get_by_label("Size").select_option("1536x1024")
    expect(cost).to_have_text("4 credits")
    # a lighthouse the local provider takes 4 s to paint: its partial images come over that time
    page.get_by_label("Prompt").fill("A lighthouse at dawn, watercolor [sleep:4]")
    screenshot(page, "playground")

    page.get_by_role("button", name="Generate").click()
    expect(page).to_have_url(re.compile(r"/account/playground/\?generation=gen_\w+$"))
    generation = Generation.objects.get(owner=user)
    expect(page.get_by_test_id("balance")).to_have_text("96")  # charged as the API charges: 2 × 2
    slots = page.locator(".playground-slot")
    expect(slots).to_have_count(2)

    status = page.locator("#playground-status")
    expect(status).to_contain_text("partial image", timeout=15_000)
    first = slots.nth(0)
    expect(first).to_have_attribute("data-state", "partial")
    expect(first.locator("img")).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    expect(first.locator("img")).to_have_js_property("naturalWidth", 1536)
    expect(first.locator("figcaption")).to_contain_text("partial")
    screenshot(page, "playground-partial")
    expect(first.locator("figcaption")).to_contain_text("partial 2")  # a finer one replaces it

    expect(status).to_have_text("Done: 2 images, 4 credits.", timeout=15_000)
    for index in range(2):
        expect(slots.nth(index)).to_have_attribute("data-state", "final")
        image = slots.nth(index).locator("img")
        expect(image).not_to_have_attribute("src", re.compile(r"^data:"))
        expect(image).to_have_js_property("naturalWidth", 1536)
    screenshot(page, "playground-final")

    page.get_by_role("link", name=f"{generation.id} in your history").click()
    expect(page.locator(".badge")).to_have_text("succeeded")
    expect(page.locator(".gallery img")).to_have_count(2)
    assert credits_summary_for_user(user_id=user.pk).credits == 96
    assert problems == []
