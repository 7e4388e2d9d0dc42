"""Screenshots of the upload, run and history pages at 1366x768 for docs/screenshots/ (shown in
the README; the top of a drifted run's page in docs/operations.md). Not part of `make test`:
`make screenshots` makes them again."""

import os
from pathlib import Path

import pytest

from tests.browser.conftest import PASSWORD, log_in
from tests.helpers import BAD_INPUTS, dev_photos, make_user

pytestmark = [pytest.mark.screenshots, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TARGET = Path(os.environ.get("SCREENSHOTS_DIR", Path(__file__).resolve().parents[2] / "docs" / "screenshots"))


def test_screenshots_of_the_operator_pages(browser, live_server, production_with_baseline, settings):
    settings.REVIEW_SECOND_OPINION_RATE = 0.0
    TARGET.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(60_000)
    make_user("olga", "operators", password=PASSWORD)
    log_in(page, "olga", next_url="/upload/")
    classes = ["jeans", "watches", "tops", "casual_shoes", "handbags", "shirts"]
    photos = [path for path, _ in dev_photos("val", per_class=4, classes=classes)]
    page.set_input_files("#id_photos", [*photos, BAD_INPUTS / "truncated.jpg"])
    page.wait_for_function("[...document.querySelectorAll('#file-list img[src]')].every(img => img.naturalWidth > 0)")
    page.screenshot(path=TARGET / "upload.png")
    page.click("#upload-button")
    page.wait_for_url("**/runs/*/")
    page.locator("#run-status", has_text="Completed").wait_for()
    page.screenshot(path=TARGET / "run.png")
    # More history: two small uploads and a delivery of shoes only (its class mix drifted).
    for classes, per_class in (
        (["belts", "wallets", "heels"], 3),
        (["sunglasses", "backpacks"], 3),
        (["casual_shoes"], 100),
    ):
        page.goto("/upload/")
        page.set_input_files(
            "#id_photos", [path for path, _ in dev_photos("val", per_class=per_class, classes=classes)]
        )
        page.click("#upload-button")
        page.wait_for_url("**/runs/*/")
        page.locator("#run-status", has_text="Completed").wait_for()
    page.goto("/runs/")
    page.screenshot(path=TARGET / "history.png")
    page.click("table.grid tbody tr:first-child a")  # the shoes-only delivery
    page.locator("#drift .tag.drifted").first.wait_for()
    page.screenshot(path=TARGET / "run-drift.png", clip={"x": 0, "y": 0, "width": 1366, "height": 380})
    context.close()
