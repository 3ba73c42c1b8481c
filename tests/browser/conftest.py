"""Playwright drives Debian's Chromium (`make chromium` installs it) against pytest-django's
live server. Screenshots of every page land in test-artifacts/screenshots/."""

import os

import pytest

from tests.conftest import ROOT

# Playwright's sync API runs an event loop in this thread, and Django then refuses the ORM
# calls the (synchronous) tests make; nothing here is actually async.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_PATH = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.access(CHROMIUM_PATH, os.X_OK):
        pytest.fail(f"{CHROMIUM_PATH} is missing: run `make chromium` (apt-get install -y chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM_PATH,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def base_url(live_server):
    return live_server.url


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # Granted up front: a grant made after the page opened leaves clipboard writes pending.
    return {
        **browser_context_args,
        "viewport": {"width": 1280, "height": 800},
        "permissions": ["clipboard-read", "clipboard-write"],
    }


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

    return take


def sign_in(page, email: str, password: str, *, path: str = "/account/login/") -> None:
    page.goto(path)
    page.get_by_label("Email" if path.startswith("/account") else "Username").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in" if path.startswith("/account") else "Log in").click()
