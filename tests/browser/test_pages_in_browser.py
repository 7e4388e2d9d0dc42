"""The pages in a real browser (Debian's Chromium, driven by Playwright) against a live server."""

import csv

import pytest

from batches import engine, services
from batches.models import BatchRun
from reviews.models import ReviewItem
from tests.browser.conftest import PASSWORD, log_in
from tests.helpers import BAD_INPUTS, dev_photos, make_user, register_file

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_uploads_photos_sees_results_and_downloads_csv(page, tmp_path):
    make_user("olga", "operators", password=PASSWORD)
    log_in(page, "olga")
    photos = [path for path, _ in dev_photos("val", per_class=1, classes=["jeans", "watches", "sunglasses"])]
    page.set_input_files("#id_photos", [*photos, BAD_INPUTS / "truncated.jpg"])
    page.click("text=Upload and classify")
    page.wait_for_url("**/runs/*/")
    assert "truncated.jpg: truncated" in page.inner_text("#problems .refusals")
    assert page.inner_text("#run-status") == "Completed"
    rows = page.locator("#results tbody tr.predicted")
    assert rows.count() == 3
    assert page.locator("#results img.thumb").first.evaluate("img => img.naturalWidth") > 0
    assert page.get_attribute("#progress-bar", "value") == page.get_attribute("#progress-bar", "max") == "3"
    with page.expect_download() as download:
        page.click("#download-csv")
    target = tmp_path / "results.csv"
    download.value.save_as(target)
    with open(target, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["outcome"] for row in table] == ["predicted"] * 3 + ["refused"]  # the refusal is kept too
    assert table[-1]["original_name"] == "truncated.jpg" and table[-1]["failure_reason"] == "truncated"
    shown = rows.locator("td.class").all_inner_texts()
    assert shown == [row["predicted_class"] for row in table[:3]]


def test_the_progress_bar_follows_a_running_batch(page):
    make_user("oscar", "operators", password=PASSWORD)
    for path, _ in dev_photos("val", per_class=2, classes=["belts", "wallets", "heels"]):
        register_file(path)
    run = services.start_batch_run(BatchRun.Trigger.API)  # started, not yet processed
    log_in(page, "oscar", next_url=f"/runs/{run.pk}/")
    page.wait_for_url(f"**/runs/{run.pk}/")
    assert page.inner_text("#progress-text").startswith("0 of 6 photos done")
    assert page.inner_text("#run-status") == "Running"
    engine.process_run(run.pk)  # a worker does the job while the page watches
    page.wait_for_function("document.getElementById('run-status').textContent.trim() === 'Completed'")
    page.wait_for_selector("#results tr.predicted")
    assert page.locator("#results tbody tr.predicted").count() == 6
    assert page.inner_text("#progress-text").startswith("6 of 6 photos done")


def test_a_reviewer_corrects_a_doubtful_prediction_in_the_admin(page, settings):
    settings.REVIEW_CONFIDENCE_THRESHOLD = 1.01  # every prediction is doubtful
    settings.REVIEW_SECOND_OPINION_RATE = 0.0
    for path, _ in dev_photos("val", per_class=1, classes=["tops"]):
        register_file(path)
    run = services.start_batch_run(BatchRun.Trigger.COMMAND)
    engine.process_run(run.pk)
    item = ReviewItem.objects.select_related("prediction").get()
    other = next(name for name in sorted(item.prediction.probabilities) if name != item.prediction.predicted_class)
    make_user("rita", "reviewers", staff=True, password=PASSWORD)
    log_in(page, "rita", next_url="/admin/reviews/reviewitem/?status__exact=pending")
    page.wait_for_selector("#result_list")
    page.click("#result_list tbody tr th a")
    page.select_option("select[name=decision]", other)
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    item.refresh_from_db()
    assert (item.outcome, item.final_class, item.reviewer.username) == ("corrected", other, "rita")
    # Correcting a prediction the model was sure of asks a second reviewer; otherwise it is settled.
    assert item.status == ("second_opinion" if item.prediction.confidence > 0.9 else "decided")
    assert item.decisions.get().source == "form"
