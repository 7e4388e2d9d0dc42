"""The review desk's endpoints through HTTP: who may call them, claims, decisions with the next
photo in the same answer, skip, undo, the grid; and claims taken by reviewers at once."""

import base64
import io
import json
import threading

from django.db import connection
from django.test import Client, TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext
from PIL import Image as PILImage

from reviews import claims, services
from reviews.models import ReviewDecision, ReviewItem
from tests.helpers import make_user, review_item

DESK = "/admin/reviews/desk/api"


def call(client, path, body=None):
    return client.post(f"{DESK}/{path}", json.dumps(body or {}), content_type="application/json")


@override_settings(REVIEW_SECOND_OPINION_RATE=0.0)
class DeskAPITests(TestCase):
    def setUp(self):
        self.rita = make_user("rita", "reviewers", staff=True)
        self.client = Client()
        self.client.force_login(self.rita)

    def test_the_next_items_come_claimed_with_their_photo_ready_to_show(self):
        first, second = review_item(name="a.jpg"), review_item(name="b.jpg")
        answer = call(self.client, "next/", {"count": 2}).json()
        assert [item["id"] for item in answer["items"]] == [first.pk, second.pk]
        item = answer["items"][0]
        assert (item["predicted_class"], item["confidence"], item["threshold"]) == ("tops", 0.41, 0.9)
        assert item["top"][0] == ["tops", 0.41] and item["reason"] == "low_confidence"
        photo = PILImage.open(io.BytesIO(base64.b64decode(item["photo"].split(",", 1)[1])))
        assert photo.format == "JPEG" and photo.height == 640  # a 120x160 photo scaled up for the desk
        assert set(ReviewItem.objects.values_list("claimed_by__username", flat=True)) == {"rita"}
        full = self.client.get(item["full_size"])
        assert full.status_code == 200 and PILImage.open(io.BytesIO(full.content)).size == (120, 160)

    def test_a_decision_is_recorded_and_the_next_item_comes_with_it(self):
        first, second = review_item(name="a.jpg"), review_item(name="b.jpg")
        call(self.client, "next/", {"count": 1})
        answer = call(
            self.client,
            f"items/{first.pk}/decide/",
            {"answer": "shirts", "seconds": 2.5, "next": {"count": 1, "exclude": [first.pk]}},
        ).json()
        assert answer["decision"]["outcome"] == "corrected" and answer["decision"]["status"] == "decided"
        assert [item["id"] for item in answer["items"]] == [second.pk]
        decision = ReviewDecision.objects.get()
        assert (decision.reviewer, decision.seconds, decision.source) == (self.rita, 2.5, "desk")
        first.refresh_from_db()
        assert first.claimed_by is None

    def test_a_decision_on_an_item_someone_else_holds_is_refused(self):
        item = review_item()
        claims.claim_item(item.pk, make_user("sam", "reviewers", staff=True))
        response = call(self.client, f"items/{item.pk}/decide/", {"answer": "tops"})
        assert response.status_code == 409
        assert response.json() == {"error": "claimed_by_other", "detail": response.json()["detail"]}
        assert "sam is reviewing this photo now" in response.json()["detail"]
        assert call(self.client, f"items/{item.pk}/open/").status_code == 409
        assert call(self.client, f"items/{item.pk}/skip/").status_code == 409
        refused = call(self.client, "grid/confirm/", {"confirm": [item.pk]}).json()["refused"]
        assert [entry["error"] for entry in refused] == ["claimed_by_other"]
        assert not ReviewDecision.objects.exists()
        item.refresh_from_db()
        assert item.claimed_by.username == "sam"  # still his

    def test_bad_requests_get_a_reason(self):
        item = review_item()
        assert call(self.client, f"items/{item.pk}/decide/", {"answer": "hats"}).json()["error"] == "invalid_answer"
        assert call(self.client, "items/999999/decide/", {"answer": "tops"}).status_code == 404
        response = call(self.client, "next/", {"count": 1000})
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
        broken = self.client.post(f"{DESK}/next/", "{", content_type="application/json")
        assert broken.status_code == 400 and broken.json()["error"] == "parse_error"

    def test_skip_gives_the_item_back_and_brings_the_next(self):
        first, second = review_item(name="a.jpg"), review_item(name="b.jpg")
        call(self.client, "next/", {"count": 1})
        answer = call(self.client, f"items/{first.pk}/skip/", {"count": 1, "exclude": [first.pk]}).json()
        assert [item["id"] for item in answer["items"]] == [second.pk]
        first.refresh_from_db()
        assert first.claimed_by is None and first.status == "pending"

    def test_undo_opens_a_decided_item_again_with_your_decision(self):
        item = review_item()
        call(self.client, f"items/{item.pk}/decide/", {"answer": "shirts"})
        reopened = call(self.client, f"items/{item.pk}/open/").json()["items"][0]
        assert reopened["yours"] == {"outcome": "corrected", "final_class": "shirts"}
        call(self.client, f"items/{item.pk}/decide/", {"answer": "tops"})
        assert list(ReviewDecision.objects.values_list("final_class", flat=True)) == ["shirts", "tops"]

    def test_only_your_decisions_and_your_queue_can_be_opened(self):
        item = review_item(confidence=0.95)
        sam, max_ = make_user("sam", "reviewers", staff=True), make_user("max", "reviewers", staff=True)
        services.record_decision(item.pk, sam, "tshirts", source="desk")  # a sure prediction corrected
        services.record_decision(item.pk, max_, "shirts", source="desk")  # a second opinion that disagrees
        response = call(self.client, f"items/{item.pk}/open/")
        assert response.status_code == 403 and response.json()["error"] == "needs_lead"  # it waits for a lead
        sam_client = Client()
        sam_client.force_login(sam)
        assert call(sam_client, f"items/{item.pk}/open/").status_code == 200  # sam may change his mind
        item.refresh_from_db()
        assert item.claimed_by == sam

    def test_claims_are_renewed_and_released(self):
        item = review_item()
        call(self.client, "next/", {"count": 1})
        before = ReviewItem.objects.get(pk=item.pk).claimed_until
        assert call(self.client, "renew/", {"ids": [item.pk]}).json() == {"renewed": 1, "waiting": 1}
        assert ReviewItem.objects.get(pk=item.pk).claimed_until > before
        assert call(self.client, "release/", {"ids": [item.pk]}).json() == {"released": 1}
        item.refresh_from_db()
        assert item.claimed_by is None

    def test_the_grid_confirms_the_unmarked_and_keeps_the_marked_for_the_desk(self):
        items = [review_item(name=f"p{i}.jpg") for i in range(5)]
        page = self.client.get("/admin/reviews/desk/grid/?class=tops")
        assert page.status_code == 200 and page.content.decode().count('class="grid-photo"') == 5
        marked = [items[1].pk, items[3].pk]
        answer = call(
            self.client, "grid/confirm/", {"confirm": [i.pk for i in items if i.pk not in marked], "wrong": marked}
        )
        assert answer.json() == {"confirmed": 3, "refused": [], "marked": marked}
        assert list(ReviewDecision.objects.values_list("source", flat=True)) == ["grid"] * 3
        resumed = call(self.client, "next/", {"count": 2, "resume": True}).json()["items"]
        assert [item["id"] for item in resumed] == marked

    def test_a_decision_costs_the_same_queries_whatever_the_queue_length(self):
        counts = []
        for length in (3, 30):
            ReviewItem.objects.all().delete()
            items = [review_item(name=f"q{length}-{i}.jpg") for i in range(length)]
            call(self.client, "next/", {"count": 2})
            with CaptureQueriesContext(connection) as queries:
                call(
                    self.client,
                    f"items/{items[0].pk}/decide/",
                    {"answer": "tops", "next": {"count": 1, "exclude": [items[1].pk]}},
                )
            # The test's own transaction turns each atomic block into savepoints; in production
            # they are a BEGIN and a COMMIT, which Django does not count.
            counts.append(sum(not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT")) for q in queries))
        assert counts[0] == counts[1] <= 10, counts


class DeskAccessTests(TestCase):
    def test_every_endpoint_needs_the_csrf_token(self):
        item = review_item()
        client = Client(enforce_csrf_checks=True)
        client.force_login(make_user("rita", "reviewers", staff=True))
        for path, body in self.endpoints(item):
            response = call(client, path, body)
            assert response.status_code == 403 and "CSRF" in response.json()["detail"], path
        assert not ReviewDecision.objects.exists()
        client.get("/admin/reviews/desk/")  # the page gives the token
        token = client.cookies["csrftoken"].value
        ok = client.post(f"{DESK}/next/", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)
        assert ok.status_code == 200

    def test_only_reviewers_with_staff_status_may_use_the_desk(self):
        item = review_item()
        outsiders = {
            "anonymous": None,
            "staff, no group": make_user("otto", staff=True),
            "reviewer without staff status": make_user("rob", "reviewers"),
            "operator": make_user("olga", "operators", staff=True),
        }
        for who, user in outsiders.items():
            client = Client()
            if user:
                client.force_login(user)
            for path, body in self.endpoints(item):
                assert call(client, path, body).status_code in (401, 403), (who, path)
            page = client.get("/admin/reviews/desk/")
            assert page.status_code in (302, 403), who  # anonymous and non-staff go to the admin login
        photo = Client()
        photo.force_login(outsiders["operator"])
        assert photo.get(f"/admin/reviews/desk/items/{item.pk}/photo.jpg").status_code == 403
        assert not ReviewDecision.objects.exists()
        item.refresh_from_db()
        assert item.claimed_by is None

    def endpoints(self, item):
        return [
            ("next/", {"count": 1}),
            (f"items/{item.pk}/decide/", {"answer": "tops"}),
            (f"items/{item.pk}/skip/", {}),
            (f"items/{item.pk}/open/", {}),
            ("renew/", {"ids": [item.pk]}),
            ("release/", {"ids": [item.pk]}),
            ("grid/confirm/", {"confirm": [item.pk]}),
        ]


class ConcurrentClaimTests(TransactionTestCase):
    def test_reviewers_claiming_at_once_never_get_the_same_item(self):
        items = [review_item(name=f"c{i}.jpg") for i in range(40)]
        reviewers = [make_user(f"r{i}", "reviewers", staff=True) for i in range(4)]
        got = {reviewer.username: [] for reviewer in reviewers}
        start = threading.Barrier(len(reviewers))

        def work(reviewer):
            start.wait()
            try:
                while batch := claims.claim_items(reviewer, claims.Queue(), 2):
                    got[reviewer.username].extend(item.pk for item in batch)
            finally:
                connection.close()

        threads = [threading.Thread(target=work, args=(reviewer,)) for reviewer in reviewers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        everything = [pk for ids in got.values() for pk in ids]
        assert sorted(everything) == sorted(item.pk for item in items)  # each once, none left
        assert sum(1 for ids in got.values() if ids) >= 2  # they really worked at once

    def test_an_expired_claim_returns_the_item_to_the_pool(self):
        item = review_item()
        rita, sam = make_user("rita", "reviewers", staff=True), make_user("sam", "reviewers", staff=True)
        with override_settings(REVIEW_CLAIM_SECONDS=10):
            assert [i.pk for i in claims.claim_items(rita, claims.Queue(), 1)] == [item.pk]
            assert claims.claim_items(sam, claims.Queue(), 1) == []
            with connection.cursor() as cursor:  # ten seconds later, on the database clock
                cursor.execute(
                    "UPDATE reviews_reviewitem SET claimed_until = now() - interval '1 second' WHERE id = %s", [item.pk]
                )
            assert [i.pk for i in claims.claim_items(sam, claims.Queue(), 1)] == [item.pk]
