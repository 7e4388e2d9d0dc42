"""A real browser (Debian's Chromium, driven by Playwright) against a live server."""

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "a-long-test-password"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    # Playwright's synchronous API runs an event loop in this thread; the ORM calls the tests
    # make between browser steps are ordinary blocking calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser, live_server, trained_model):
    # Playwright's wait_for_function evaluates its predicate with eval, which the site's
    # Content-Security-Policy forbids: the tests' context bypasses it (test_csp_in_browser.py
    # checks the pages with the policy enforced).
    context = browser.new_context(base_url=live_server.url, accept_downloads=True, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def log_in(page, username, next_url="/"):
    """Log in and wait until the page it leads to has loaded, its scripts included (a test that
    chose files before the upload page's script had run saw nothing listed)."""
    page.goto(f"/accounts/login/?next={next_url}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
