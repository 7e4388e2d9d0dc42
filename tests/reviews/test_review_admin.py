"""Reviewing doubtful predictions in the admin: who may, what is kept, what never changes."""

import io

from django.test import Client, TestCase

from batches import engine, ingest
from batches.models import BatchRun, Image, Prediction
from reviews import services
from reviews.models import ReviewItem
from tests.helpers import jpeg_bytes, make_user


def doubtful_prediction(name="item.jpg", predicted="tops", confidence=0.41) -> Prediction:
    image, _ = ingest.register_image(io.BytesIO(jpeg_bytes() + name.encode()), name, Image.Source.UPLOAD)
    run = BatchRun.objects.create(trigger="button", model_version="3")
    probabilities = {"tops": confidence, "tshirts": 0.35, "shirts": 1 - confidence - 0.35}
    prediction = Prediction.objects.create(
        image=image,
        batch_run=run,
        model_version="3",
        predicted_class=predicted,
        confidence=confidence,
        probabilities=probabilities,
        review_reason="low_confidence",
    )
    engine.queue_for_review(Prediction.objects.filter(pk=prediction.pk))
    return prediction


class ReviewAdminTests(TestCase):
    def setUp(self):
        self.reviewer = make_user("rita", "reviewers", staff=True)
        self.client = Client()
        self.client.force_login(self.reviewer)

    def test_the_queue_shows_photo_class_confidence_and_top3(self):
        prediction = doubtful_prediction()
        page = self.client.get("/admin/reviews/reviewitem/?status__exact=pending").content.decode()
        assert f"/images/{prediction.image.pk}/thumbnail.jpg" in page
        assert "41.0%" in page and "tshirts 35.0%" in page

    def test_a_correction_keeps_who_when_and_leaves_the_prediction_alone(self):
        prediction = doubtful_prediction()
        item = prediction.review
        response = self.client.post(f"/admin/reviews/reviewitem/{item.pk}/change/", {"final_class": "tshirts"})
        assert response.status_code == 302
        item.refresh_from_db()
        assert (item.status, item.final_class, item.reviewer) == ("corrected", "tshirts", self.reviewer)
        assert item.reviewed_at is not None
        prediction.refresh_from_db()
        assert prediction.predicted_class == "tops" and prediction.confidence == 0.41

    def test_keeping_the_predicted_class_confirms_it(self):
        item = doubtful_prediction().review
        form = self.client.get(f"/admin/reviews/reviewitem/{item.pk}/change/").content.decode()
        assert '<option value="tops" selected>' in form
        self.client.post(f"/admin/reviews/reviewitem/{item.pk}/change/", {"final_class": "tops"})
        item.refresh_from_db()
        assert item.status == "confirmed" and item.final_class == "tops"

    def test_a_class_the_model_does_not_know_is_refused(self):
        item = doubtful_prediction().review
        response = self.client.post(f"/admin/reviews/reviewitem/{item.pk}/change/", {"final_class": "hats"})
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
        item.refresh_from_db()
        assert item.status == "pending"

    def test_the_bulk_action_confirms_pending_items(self):
        items = [doubtful_prediction(f"p{i}.jpg").review for i in range(3)]
        self.client.post(
            "/admin/reviews/reviewitem/", {"action": "confirm_selected", "_selected_action": [i.pk for i in items]}
        )
        assert set(ReviewItem.objects.values_list("status", flat=True)) == {"confirmed"}
        reviewed = services.reviewed_photos()
        assert sorted(photo.image_id for photo in reviewed) == sorted(item.prediction.image_id for item in items)
        assert {photo.final_class for photo in reviewed} == {"tops"}

    def test_staff_without_the_reviewer_role_cannot_review(self):
        item = doubtful_prediction().review
        outsider = Client()
        outsider.force_login(make_user("otto", staff=True))
        assert outsider.get("/admin/reviews/reviewitem/").status_code == 403
        assert outsider.post(f"/admin/reviews/reviewitem/{item.pk}/change/", {"final_class": "tops"}).status_code == 403

    def test_reviewers_cannot_add_or_delete_review_items(self):
        item = doubtful_prediction().review
        assert self.client.get("/admin/reviews/reviewitem/add/").status_code == 403
        assert self.client.post(f"/admin/reviews/reviewitem/{item.pk}/delete/", {"post": "yes"}).status_code == 403
        assert ReviewItem.objects.filter(pk=item.pk).exists()
