"""The review queue in the admin: who may, what the change form and the bulk action record, and
that the prediction itself never changes."""

from django.test import Client, TestCase, override_settings

from reviews import services
from reviews.models import ReviewDecision, ReviewItem
from tests.helpers import make_user, queued_prediction


@override_settings(REVIEW_SECOND_OPINION_RATE=0.0)
class ReviewAdminTests(TestCase):
    def setUp(self):
        self.reviewer = make_user("rita", "reviewers", staff=True)
        self.client = Client()
        self.client.force_login(self.reviewer)

    def decide(self, item, decision, note=""):
        return self.client.post(f"/admin/reviews/reviewitem/{item.pk}/change/", {"decision": decision, "note": note})

    def test_the_queue_shows_photo_class_confidence_and_top3_and_links_the_desk(self):
        prediction = queued_prediction()
        page = self.client.get("/admin/reviews/reviewitem/?status__exact=pending").content.decode()
        assert f"/images/{prediction.image.pk}/thumbnail.jpg" in page
        assert "41.0%" in page and "tshirts 35.4%" in page
        assert 'href="/admin/reviews/desk/"' in page
        assert 'href="/admin/reviews/desk/"' in self.client.get("/admin/").content.decode()

    def test_a_correction_keeps_who_when_and_leaves_the_prediction_alone(self):
        prediction = queued_prediction()
        item = prediction.review
        assert self.decide(item, "tshirts").status_code == 302
        item.refresh_from_db()
        assert (item.status, item.outcome, item.final_class, item.reviewer) == (
            "decided",
            "corrected",
            "tshirts",
            self.reviewer,
        )
        assert item.reviewed_at is not None
        decision = ReviewDecision.objects.get(item=item)
        assert (decision.source, decision.class_before, decision.reviewer) == ("form", "tops", self.reviewer)
        prediction.refresh_from_db()
        assert prediction.predicted_class == "tops" and prediction.confidence == 0.41

    def test_keeping_the_predicted_class_confirms_it(self):
        item = queued_prediction().review
        form = self.client.get(f"/admin/reviews/reviewitem/{item.pk}/change/").content.decode()
        assert '<option value="tops" selected>' in form
        self.decide(item, "tops")
        item.refresh_from_db()
        assert (item.outcome, item.final_class) == ("confirmed", "tops")

    def test_deciding_twice_keeps_both_decisions_in_the_history(self):
        item = queued_prediction().review
        self.decide(item, "tshirts")
        self.decide(item, "none_of_our_categories", note="a scarf")
        item.refresh_from_db()
        assert (item.outcome, item.final_class) == ("none_of_our_categories", "")
        rows = list(item.decisions.values_list("outcome", "final_class", "note", "class_before"))
        assert rows == [("corrected", "tshirts", "", "tops"), ("none_of_our_categories", "", "a scarf", "tshirts")]
        page = self.client.get(f"/admin/reviews/reviewitem/{item.pk}/change/").content.decode()
        assert "History of decisions" in page and "a scarf" in page and "Corrected" in page

    def test_a_class_the_model_does_not_know_is_refused(self):
        item = queued_prediction().review
        response = self.decide(item, "hats")
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
        item.refresh_from_db()
        assert item.status == "pending" and not item.decisions.exists()

    def test_the_form_refuses_an_item_another_reviewer_holds_on_the_desk(self):
        item = queued_prediction().review
        from reviews import claims

        claims.claim_item(item.pk, make_user("sam", "reviewers", staff=True))
        response = self.decide(item, "tshirts")
        assert response.status_code == 302 and response.url == f"/admin/reviews/reviewitem/{item.pk}/change/"
        page = self.client.get(response.url).content.decode()
        assert "Not saved: sam is reviewing this photo now" in page
        assert not item.decisions.exists()

    def test_the_bulk_action_confirms_through_the_same_log(self):
        items = [queued_prediction(f"p{i}.jpg").review for i in range(3)]
        self.client.post(
            "/admin/reviews/reviewitem/", {"action": "confirm_selected", "_selected_action": [i.pk for i in items]}
        )
        assert set(ReviewItem.objects.values_list("outcome", flat=True)) == {"confirmed"}
        assert list(ReviewDecision.objects.values_list("source", flat=True)) == ["bulk"] * 3
        reviewed = services.reviewed_photos()
        assert sorted(photo.image_id for photo in reviewed) == sorted(item.prediction.image_id for item in items)
        assert {photo.final_class for photo in reviewed} == {"tops"}

    def test_staff_without_the_reviewer_role_cannot_review(self):
        item = queued_prediction().review
        outsider = Client()
        outsider.force_login(make_user("otto", staff=True))
        assert outsider.get("/admin/reviews/reviewitem/").status_code == 403
        assert outsider.post(f"/admin/reviews/reviewitem/{item.pk}/change/", {"decision": "tops"}).status_code == 403
        assert not item.decisions.exists()

    def test_reviewers_cannot_add_or_delete_review_items_or_decisions(self):
        item = queued_prediction().review
        self.decide(item, "tops")
        decision = item.decisions.get()
        assert self.client.get("/admin/reviews/reviewitem/add/").status_code == 403
        assert self.client.post(f"/admin/reviews/reviewitem/{item.pk}/delete/", {"post": "yes"}).status_code == 403
        assert (
            self.client.post(f"/admin/reviews/reviewdecision/{decision.pk}/delete/", {"post": "yes"}).status_code == 403
        )
        assert ReviewItem.objects.filter(pk=item.pk).exists() and ReviewDecision.objects.filter(pk=decision.pk).exists()
