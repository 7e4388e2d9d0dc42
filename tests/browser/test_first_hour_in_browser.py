"""The first hour in a real browser: landing after logging in, choosing and dropping photos,
the limits checked before sending, the upload's progress, a run's bar moving, triage."""

import pytest

from batches import engine, services
from batches.models import BatchRun
from reviews.models import ReviewItem
from tests.browser.conftest import PASSWORD, log_in
from tests.helpers import BAD_INPUTS, dev_photos, make_user, register_file

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_lands_on_the_desk_and_sees_no_upload_link(page):
    make_user("rita", "reviewers", staff=True, password=PASSWORD)
    log_in(page, "rita", next_url="")
    page.wait_for_url("**/admin/reviews/desk/")
    page.goto("/runs/")
    assert page.locator("#nav-upload").count() == 0 and page.locator("#nav-desk").count() == 1


def test_a_user_without_a_role_reads_what_to_ask_for(page):
    make_user("nina", password=PASSWORD)
    log_in(page, "nina", next_url="")
    page.wait_for_selector("#access")
    assert "Ask an administrator" in page.inner_text("#access")
    page.goto("/upload/")
    assert "No access" in page.inner_text("h1") and page.locator("a.button", has_text="Back").count() == 1


def test_chosen_photos_are_listed_with_thumbnails_and_the_limits_checked_first(page, settings):
    settings.MAX_UPLOAD_FILES = 3
    settings.MAX_UPLOAD_BYTES = 3000  # the development photos are 1-2 KB; valid_control.jpg is 4.7 KB
    make_user("olga", "operators", password=PASSWORD)
    log_in(page, "olga", next_url="/upload/")
    photos = [path for path, _ in dev_photos("val", per_class=1, classes=["jeans", "watches", "belts", "heels"])]
    page.set_input_files("#id_photos", photos)
    assert page.locator("#file-list li").count() == 4
    assert "4 photos chosen" in page.inner_text("#choice-summary")
    page.wait_for_function("[...document.querySelectorAll('#file-list img')].every(img => img.naturalWidth > 0)")
    assert "at most 3 at a time" in page.inner_text("#choice-error")
    assert page.is_disabled("#upload-button")  # nothing is sent over the limit
    page.click("#file-list li:last-child .remove")
    assert page.locator("#file-list li").count() == 3 and page.is_enabled("#upload-button")
    # A photo over MAX_UPLOAD_BYTES is flagged, and nothing is sent until it is removed.
    page.set_input_files("#id_photos", photos[:3] + [BAD_INPUTS / "valid_control.jpg"])
    assert page.locator("#file-list li.too-big").count() >= 1 and page.is_disabled("#upload-button")
    assert "over" in page.inner_text("#choice-error")
    page.set_input_files("#id_photos", photos[:3])
    page.click("#upload-button")
    page.wait_for_url("**/runs/*/")
    page.wait_for_function("document.getElementById('run-status').textContent.trim() === 'Completed'")
    assert page.locator("#results tbody tr.predicted").count() == 3


def test_photos_dropped_on_the_page_are_uploaded_with_progress_and_refusals_kept(page):
    make_user("olga", "operators", password=PASSWORD)
    log_in(page, "olga", next_url="/upload/")
    photos = [path for path, _ in dev_photos("val", per_class=2, classes=["tops", "shirts"])]
    files = [(p.name, "image/jpeg", p.read_bytes()) for p in photos] + [
        ("truncated.jpg", "image/jpeg", (BAD_INPUTS / "truncated.jpg").read_bytes())
    ]
    # A drop as the browser makes it: a DataTransfer holding the files.
    handle = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const [name, type, bytes] of files) {
                transfer.items.add(new File([new Uint8Array(bytes)], name, {type}));
            }
            return transfer;
        }""",
        [[name, kind, list(data)] for name, kind, data in files],
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": handle})
    assert page.locator("#file-list li").count() == 5
    # What the upload's progress line says, kept across the navigation to the run's page.
    page.evaluate(
        """() => {
            const text = document.getElementById('upload-text'), seen = [];
            new MutationObserver(() => {
                seen.push(text.textContent);
                sessionStorage.setItem('upload-seen', JSON.stringify(seen));
            }).observe(text, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.click("#upload-button")
    page.wait_for_url("**/runs/*/")
    page.wait_for_function("document.getElementById('run-status').textContent.trim() !== 'Running'")
    assert "truncated.jpg" in page.inner_text("#problems .refusals")
    shown = page.evaluate("JSON.parse(sessionStorage.getItem('upload-seen') || '[]')")
    assert any(line.startswith(("Uploading:", "Uploaded;")) for line in shown), shown
    page.reload()  # the refusal stays with the run
    assert "Refused at upload (1)" in page.inner_text("#problems")
    run = BatchRun.objects.get()
    assert run.total == 4 and run.refused[0]["name"] == "truncated.jpg"


def test_the_progress_bar_moves_while_a_run_runs(page):
    make_user("oscar", "operators", password=PASSWORD)
    for path, _ in dev_photos("val", per_class=4, classes=["belts", "wallets", "heels", "tops", "jeans", "watches"]):
        register_file(path)
    run = services.start_batch_run(BatchRun.Trigger.API)  # 24 photos: written in chunks of 8
    log_in(page, "oscar", next_url=f"/runs/{run.pk}/")
    page.wait_for_url(f"**/runs/{run.pk}/")
    shown = []  # what the page's bar said after each chunk

    def after_each_chunk(result):
        done = run.counts()["done"]
        # The worker goes on once the page has shown this chunk (as a slower worker would let it).
        page.wait_for_function(f"Number(document.getElementById('progress-bar').value) >= {done}")
        shown.append(page.evaluate("Number(document.getElementById('progress-bar').value)"))

    engine.process_run(run.pk, on_chunk=after_each_chunk)
    page.wait_for_function("document.getElementById('run-status').textContent.trim() === 'Completed'")
    assert len([value for value in shown if 0 < value < 24]) >= 2, shown
    assert page.inner_text("#progress-text").startswith("24 of 24 photos done")


def test_the_run_page_triages_and_links_a_waiting_photo_to_the_desk(page, settings):
    settings.REVIEW_CONFIDENCE_THRESHOLD = 1.01  # every prediction waits for review
    settings.REVIEW_SECOND_OPINION_RATE = 0.0
    for path, _ in dev_photos("val", per_class=1, classes=["tops", "jeans"]):
        register_file(path)
    register_file(BAD_INPUTS / "valid_control.jpg")
    run = services.start_batch_run(BatchRun.Trigger.COMMAND)
    engine.process_run(run.pk)
    make_user("rita", "reviewers", staff=True, password=PASSWORD)
    log_in(page, "rita", next_url=f"/runs/{run.pk}/")
    page.wait_for_selector("#distribution")
    assert page.locator("#distribution tr").count() >= 1
    assert page.inner_text("#triage [data-show=review] .count") == "3"
    page.click("#triage [data-show=accepted]")
    assert "Nothing" in page.inner_text("#results") or page.locator("#results tbody tr.predicted").count() == 0
    page.click("#triage [data-show=review]")
    assert page.locator("#results tbody tr.predicted").count() == 3
    wanted = ReviewItem.objects.order_by("-id").first()
    page.click(f"#results a.review-link[href$='?item={wanted.pk}']")
    page.wait_for_url("**/admin/reviews/desk/?item=*")
    page.wait_for_function(f"document.getElementById('desk-main').dataset.item === '{wanted.pk}'")
