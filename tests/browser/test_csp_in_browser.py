"""The pages work under the site's Content-Security-Policy, enforced (no bypass): the browser
reports no violation while an operator uploads and a reviewer decides on the desk."""

import pytest

from batches import engine, services
from batches.models import BatchRun
from tests.browser.conftest import PASSWORD, log_in
from tests.helpers import dev_photos, make_user, register_file

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def strict_page(browser, live_server, trained_model):
    context = browser.new_context(base_url=live_server.url)  # the policy enforced
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.violations = []
    page.on(
        "console", lambda message: "Content Security Policy" in message.text and page.violations.append(message.text)
    )
    yield page
    context.close()


def test_upload_run_and_desk_pages_break_no_rule_of_the_policy(strict_page, settings):
    page = strict_page
    settings.REVIEW_CONFIDENCE_THRESHOLD = 1.01
    settings.REVIEW_SECOND_OPINION_RATE = 0.0
    make_user("olga", "operators", staff=True, password=PASSWORD)
    log_in(page, "olga", next_url="/upload/")
    photos = [path for path, _ in dev_photos("val", per_class=1, classes=["tops", "jeans"])]
    page.set_input_files("#id_photos", photos)
    page.locator("#file-list img").first.wait_for()
    page.click("#upload-button")  # the script's upload, with its progress
    page.wait_for_url("**/runs/*/")
    page.locator("#run-status", has_text="Completed").wait_for()
    for path, _ in dev_photos("val", per_class=1, classes=["belts"]):
        register_file(path)
    engine.process_run(services.start_batch_run(BatchRun.Trigger.COMMAND).pk)
    make_user("rita", "reviewers", staff=True, password=PASSWORD)
    page.context.clear_cookies()
    log_in(page, "rita", next_url="")
    page.wait_for_url("**/admin/reviews/desk/")
    page.locator("#desk-main[data-item]").wait_for()
    page.keyboard.press("Enter")  # accept, through the desk's script
    page.locator("#recent li").first.wait_for()
    assert page.violations == []
