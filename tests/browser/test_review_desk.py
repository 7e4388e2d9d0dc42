"""The review desk in a real browser: a reviewer works with the keyboard only, two reviewers work
one queue at once, the grid confirms a class in one key."""

import pytest
from django.db import connection

from reviews.models import ReviewDecision, ReviewItem
from tests.browser.conftest import PASSWORD, log_in
from tests.helpers import make_user, review_item

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DESK = "/admin/reviews/desk/"


@pytest.fixture
def desk_settings(settings):
    settings.REVIEW_SECOND_OPINION_RATE = 0.0  # each decision settles its item: the counts below are exact
    return settings


@pytest.fixture
def new_page(browser, live_server):
    contexts = []

    def make():
        context = browser.new_context(
            base_url=live_server.url,
            viewport={"width": 1366, "height": 768},
            bypass_csp=True,  # see conftest.page
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        return page

    yield make
    for context in contexts:
        context.close()


def on_screen(page) -> int | None:
    value = page.get_attribute("#desk-main", "data-item")
    return int(value) if value else None


def open_desk(page, username, query=""):
    log_in(page, username, next_url=DESK + query)
    page.wait_for_url(f"**{DESK}*")
    page.wait_for_function(
        "document.getElementById('desk-main').dataset.item || !document.getElementById('empty').hidden"
    )


class Reviewer:
    """Presses keys on the desk and counts them; waits for the screen to move on, as a person would."""

    def __init__(self, page):
        self.page = page
        self.presses = 0

    def press(self, *keys):
        for key in keys:
            self.page.keyboard.press(key)
            self.presses += 1

    def type(self, text):
        self.page.keyboard.type(text)
        self.presses += len(text)

    def next_photo(self, before):
        self.page.wait_for_function(
            f"(document.getElementById('desk-main').dataset.item || '') !== '{before}'"
            " && !document.querySelector('#recent .recent-entry span')?.textContent.startsWith('saving')"
        )


def decisions():
    return ReviewDecision.objects.count()


def test_a_reviewer_works_through_20_photos_with_the_keyboard_only(new_page, desk_settings):
    items = [review_item(name=f"return-{i:02d}.jpg") for i in range(20)]  # predicted tops; top 3: tops, then the others
    make_user("rita", "reviewers", staff=True, password=PASSWORD)
    page = new_page()
    open_desk(page, "rita")
    rita = Reviewer(page)
    photo = page.locator("#photo").bounding_box()
    assert photo["height"] >= 480  # a 120x160 photo, shown large
    assert "Enter or A" in page.inner_text(".desk-keys") and page.is_visible("#none")
    top = [name for name, _ in items[0].prediction.top(3)]

    def decide(*keys, text=None):
        before, count = on_screen(page), decisions()
        presses = rita.presses
        rita.press(*keys[:1])
        if text is not None:
            rita.type(text)
        rita.press(*keys[1:])
        rita.next_photo(before)
        return before, decisions() - count, rita.presses - presses

    # One key for accepting the predicted class, and for each of the top 3.
    for _ in range(5):
        assert decide("Enter")[1:] == (1, 1)
    assert decide("a")[1:] == (1, 1)
    for key in ("2", "3", "2"):
        assert decide(key)[1:] == (1, 1)
    assert decide("t", "s", "h", "Enter")[1] == 1  # typing picks tshirts
    assert decide("/", "s", "h", "i", "Enter")[1] == 1  # a class starting with a key of its own
    decide("n", "Enter", text="a scarf")  # none of our categories, with what it is
    decide("u")  # unusable
    skipped, saved, _ = decide("s")
    assert saved == 0
    changed, _, _ = decide("Enter")
    # Undo: the last decision comes back on screen, and a key changes it.
    before = on_screen(page)
    rita.press("z")
    page.wait_for_function(f"document.getElementById('desk-main').dataset.item === '{changed}'")
    assert "You decided: confirmed tops" in page.inner_text("#yours")
    rita.press("3")
    rita.next_photo(str(changed))
    assert on_screen(page) == before
    for _ in range(5):
        decide("Enter")
    page.wait_for_selector("#empty:not([hidden])")
    assert page.is_visible("text=Show the 1 skipped photos again")

    by_item = {}
    for decision in ReviewDecision.objects.order_by("id"):
        by_item.setdefault(decision.item_id, []).append((decision.outcome, decision.final_class, decision.note))
    ids = [item.pk for item in items]
    expected = {
        **{pk: [("confirmed", "tops", "")] for pk in ids[:6] + ids[15:]},
        ids[6]: [("corrected", top[1], "")],
        ids[7]: [("corrected", top[2], "")],
        ids[8]: [("corrected", top[1], "")],
        ids[9]: [("corrected", "tshirts", "")],
        ids[10]: [("corrected", "shirts", "")],
        ids[11]: [("none_of_our_categories", "", "a scarf")],
        ids[12]: [("unusable", "", "")],
        changed: [("confirmed", "tops", ""), ("corrected", top[2], "")],
    }
    assert skipped == ids[13] and changed == ids[14]
    assert by_item == expected
    assert set(ReviewDecision.objects.values_list("source", "reviewer__username")) == {("desk", "rita")}
    assert all(seconds is not None for seconds in ReviewDecision.objects.values_list("seconds", flat=True))
    assert list(ReviewItem.objects.pending().values_list("id", flat=True)) == [ids[13]]


def test_two_reviewers_at_once_never_get_the_same_photo(new_page, desk_settings):
    items = [review_item(name=f"shared-{i:02d}.jpg") for i in range(12)]
    pages = {}
    for name in ("rita", "sam"):
        make_user(name, "reviewers", staff=True, password=PASSWORD)
        pages[name] = new_page()
        open_desk(pages[name], name)
    seen = {"rita": [], "sam": []}
    done = set()
    while len(done) < 2:
        for name, page in pages.items():
            if name in done:
                continue
            current = on_screen(page)
            if current is None:
                done.add(name)
                continue
            seen[name].append(current)
            page.keyboard.press("Enter")
            page.wait_for_function(
                f"(document.getElementById('desk-main').dataset.item || '') !== '{current}'"
                " && !document.querySelector('#recent .recent-entry span')?.textContent.startsWith('saving')"
            )
    assert not set(seen["rita"]) & set(seen["sam"])
    assert sorted(seen["rita"] + seen["sam"]) == sorted(item.pk for item in items)
    assert min(len(seen["rita"]), len(seen["sam"])) >= 3  # both really worked
    assert sorted(ReviewDecision.objects.values_list("item_id", flat=True)) == sorted(item.pk for item in items)


def test_a_claim_that_expires_goes_back_to_the_pool(new_page, desk_settings):
    first, second, third = (review_item(name=f"lease-{i}.jpg") for i in range(3))
    make_user("rita", "reviewers", staff=True, password=PASSWORD)
    make_user("sam", "reviewers", staff=True, password=PASSWORD)
    rita = new_page()
    open_desk(rita, "rita")
    assert on_screen(rita) == first.pk  # rita holds the first two
    sam = new_page()
    open_desk(sam, "sam")
    assert on_screen(sam) == third.pk
    with connection.cursor() as cursor:  # rita went for lunch: her claims end (database clock)
        cursor.execute(
            "UPDATE reviews_reviewitem SET claimed_until = now() - interval '1 second' WHERE claimed_by_id = "
            "(SELECT id FROM auth_user WHERE username = 'rita')"
        )
    sam.keyboard.press("Enter")
    sam.wait_for_function(f"document.getElementById('desk-main').dataset.item === '{first.pk}'")
    # Rita comes back and decides the photo she still sees: refused, with the reason, and nothing lost.
    rita.keyboard.press("Enter")
    rita.wait_for_function("document.getElementById('message').textContent.includes('sam is reviewing')")
    assert list(ReviewDecision.objects.values_list("item_id", "reviewer__username")) == [(third.pk, "sam")]


def test_leaving_the_desk_gives_its_photos_back(new_page, desk_settings):
    for i in range(3):
        review_item(name=f"leave-{i}.jpg")
    make_user("rita", "reviewers", staff=True, password=PASSWORD)
    page = new_page()
    open_desk(page, "rita")
    assert ReviewItem.objects.filter(claimed_by__username="rita").count() == 2  # on screen, and the next
    page.goto("/admin/")
    for _ in range(50):
        if not ReviewItem.objects.filter(claimed_by__isnull=False).exists():
            break
        page.wait_for_timeout(100)
    assert not ReviewItem.objects.filter(claimed_by__isnull=False).exists()


def test_the_grid_confirms_a_class_and_sends_the_marked_photos_to_the_desk(new_page, desk_settings):
    items = [review_item(name=f"grid-{i:02d}.jpg") for i in range(20)]
    make_user("rita", "reviewers", staff=True, password=PASSWORD)
    page = new_page()
    open_desk(page, "rita")
    page.keyboard.press("g")
    page.wait_for_url("**/desk/grid/?class=tops")
    tiles = page.locator(".grid-photo")
    assert tiles.count() == 20
    assert page.locator(".grid-photo img").first.evaluate("img => img.complete && img.naturalHeight") == 240
    tiles.nth(2).click()  # the mouse
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")  # the keyboard: the fifth
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")  # the eighth
    assert page.inner_text("#marked-count") == "3"
    marked = [int(tiles.nth(i).get_attribute("data-id")) for i in (2, 4, 7)]
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{DESK}?class=tops")
    page.wait_for_function("document.getElementById('desk-main').dataset.item")
    assert ReviewDecision.objects.filter(source="grid", outcome="confirmed").count() == 17
    shown = []
    rita = Reviewer(page)
    for _ in marked:
        current = on_screen(page)
        shown.append(current)
        rita.press("2")  # not tops: the second guess
        rita.next_photo(current)
    assert shown == marked
    page.wait_for_selector("#empty:not([hidden])")
    assert set(ReviewItem.objects.values_list("status", flat=True)) == {"decided"}
    assert ReviewItem.objects.filter(pk__in=marked, outcome="corrected").count() == 3
    assert {item.pk for item in items} == set(ReviewDecision.objects.values_list("item_id", flat=True))
