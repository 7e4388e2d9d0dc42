"""Decisions are a log: every decision is a row, the item's state follows from them, second
opinions go to someone else, a disagreement waits for a lead, and only settled classes are trained on."""

import io
import tempfile
from pathlib import Path

from django.core.management import call_command
from django.test import TestCase, override_settings

from classifier.datasets import list_image_folder
from reviews import claims, services
from reviews.models import ReviewDecision, ReviewItem
from tests.helpers import make_user, review_item


@override_settings(REVIEW_SECOND_OPINION_RATE=0.0)
class DecisionLogTests(TestCase):
    def setUp(self):
        self.rita = make_user("rita", "reviewers", staff=True)
        self.sam = make_user("sam", "reviewers", staff=True)
        self.lea = make_user("lea", "review leads", staff=True)

    def decide(self, item, user, answer, **kwargs):
        services.record_decision(item.pk, user, answer, source=kwargs.pop("source", "desk"), **kwargs)
        item.refresh_from_db()
        return item

    def test_deciding_again_adds_a_row_and_the_latest_wins(self):
        item = review_item()
        self.decide(item, self.rita, "tshirts", seconds=3.5)
        self.decide(item, self.rita, "tops", seconds=1.2)
        assert (item.status, item.outcome, item.final_class) == ("decided", "confirmed", "tops")
        rows = list(item.decisions.values_list("outcome", "final_class", "class_before", "seconds", "stage"))
        assert rows == [("corrected", "tshirts", "tops", 3.5, "first"), ("confirmed", "tops", "tshirts", 1.2, "first")]

    def test_none_of_our_categories_and_unusable_are_kept_but_never_trained_on(self):
        scarf, blurred, shirt = review_item(name="a.jpg"), review_item(name="b.jpg"), review_item(name="c.jpg")
        self.decide(scarf, self.rita, "none_of_our_categories", note="a scarf")
        self.decide(blurred, self.rita, "unusable")
        self.decide(shirt, self.rita, "shirts")
        assert scarf.decisions.get().note == "a scarf"
        assert [photo.image_id for photo in services.reviewed_photos()] == [shirt.prediction.image_id]
        target = Path(self.enterContext(tempfile.TemporaryDirectory()))
        out = io.StringIO()
        call_command("export_reviews", str(target), stdout=out)
        assert sorted(p.name for p in target.iterdir()) == ["_none_of_our_categories", "_unusable", "shirts"]
        assert "Exported 1 reviewed photos" in out.getvalue() and "2 that are not one of our classes" in out.getvalue()
        assert list_image_folder(target)[0] == ["shirts"]  # the other two folders are not classes

    def test_an_answer_that_is_not_a_class_is_refused(self):
        item = review_item()
        with self.assertRaises(services.InvalidAnswer):
            self.decide(item, self.rita, "hats")
        assert not item.decisions.exists()

    def test_a_correction_of_a_sure_prediction_waits_for_a_second_reviewer(self):
        item = review_item(confidence=0.95)
        self.decide(item, self.rita, "tshirts")
        assert item.status == "second_opinion"
        assert services.reviewed_photos() == []  # not trained on until someone else agrees
        # The desk never hands it back to the reviewer who decided it, but to anyone else.
        assert claims.claim_items(self.rita, claims.Queue(), 5) == []
        assert [i.pk for i in claims.claim_items(self.sam, claims.Queue(), 5)] == [item.pk]
        self.decide(item, self.sam, "tshirts")
        assert (item.status, item.final_class) == ("decided", "tshirts")
        second = item.decisions.last()
        assert (second.stage, second.agrees, second.compared_with.reviewer) == ("second_opinion", True, self.rita)
        assert [photo.final_class for photo in services.reviewed_photos()] == ["tshirts"]

    def test_a_disagreement_waits_for_a_lead(self):
        item = review_item(confidence=0.95)
        self.decide(item, self.rita, "tshirts")
        self.decide(item, self.sam, "tops")
        assert item.status == "disputed" and item.answer is None
        assert services.reviewed_photos() == []
        with self.assertRaises(services.NeedsLead):
            self.decide(item, make_user("max", "reviewers", staff=True), "tops")
        assert claims.claim_items(self.sam, claims.Queue(), 5) == []  # not for the reviewers in it
        assert [i.pk for i in claims.claim_items(self.lea, claims.Queue(reason="disputed"), 5)] == [item.pk]
        self.decide(item, self.lea, "tshirts")
        assert (item.status, item.final_class) == ("decided", "tshirts")
        settling = item.decisions.last()
        assert (settling.stage, settling.agrees) == ("settling", False)  # compared with sam's, the latest
        assert item.decisions.count() == 3
        with self.assertRaises(services.NeedsLead):  # settled by a lead: only a lead changes it
            self.decide(item, self.sam, "tops")

    def test_one_reviewer_never_erases_another_reviewers_decision(self):
        item = review_item()
        self.decide(item, self.rita, "tshirts")
        self.decide(item, self.sam, "shirts", source="form")
        assert item.status == "disputed"
        assert list(item.decisions.values_list("reviewer__username", "final_class")) == [
            ("rita", "tshirts"),
            ("sam", "shirts"),
        ]
        # Either of them may change their mind: agreeing settles it.
        self.decide(item, self.rita, "shirts")
        assert (item.status, item.final_class) == ("decided", "shirts")

    @override_settings(REVIEW_SECOND_OPINION_RATE=1.0)
    def test_sampled_decisions_get_a_second_opinion_too(self):
        item = review_item()
        self.decide(item, self.rita, "tops")
        assert item.status == "second_opinion"
        self.decide(item, self.sam, "tops")
        assert item.status == "decided"

    def test_an_item_someone_else_holds_cannot_be_decided(self):
        item = review_item()
        claims.claim_items(self.sam, claims.Queue(), 1)
        with self.assertRaisesMessage(services.ClaimedByOther, "sam is reviewing this photo now"):
            self.decide(item, self.rita, "tops")
        # An expired claim is no claim (on the database clock).
        ReviewItem.objects.filter(pk=item.pk).update(claimed_until=item.created_at)
        self.decide(item, self.rita, "tops")
        assert item.status == "decided" and item.claimed_by is None

    def test_the_bulk_confirmation_reports_what_it_could_not_confirm(self):
        mine, held = review_item(name="a.jpg"), review_item(name="b.jpg")
        claims.claim_item(held.pk, self.sam)
        confirmed, refused = services.confirm_predictions(ReviewItem.objects.all(), self.rita)
        assert confirmed == 1 and len(refused) == 1 and "sam is reviewing" in str(refused[0][1])
        assert ReviewDecision.objects.get().item_id == mine.pk


class StateMachineTests(TestCase):
    """next_status on its own: each transition of the module docstring."""

    def setUp(self):
        self.item = review_item(confidence=0.5)

    def vote(self, reviewer_id, answer, stage="first"):
        outcome = "confirmed" if answer == "tops" else "corrected"
        return ReviewDecision(item=self.item, reviewer_id=reviewer_id, outcome=outcome, final_class=answer, stage=stage)

    def status(self, state, new, earlier, lead=False):
        self.item.status = state
        return services.next_status(self.item, new, earlier, lead)

    @override_settings(REVIEW_SECOND_OPINION_RATE=0.0)
    def test_transitions(self):
        one, two = self.vote(1, "tops"), self.vote(2, "shirts", "second_opinion")
        assert self.status("pending", self.vote(1, "tops"), []) == "decided"
        assert self.status("second_opinion", self.vote(2, "tops"), [one]) == "decided"
        assert self.status("second_opinion", self.vote(2, "shirts"), [one]) == "disputed"
        assert self.status("second_opinion", self.vote(1, "shirts"), [one]) == "decided"  # changed before anyone saw it
        assert self.status("disputed", self.vote(3, "tops"), [one, two], lead=True) == "decided"
        assert self.status("disputed", self.vote(2, "tops"), [one, two]) == "decided"  # came round
        assert self.status("decided", self.vote(3, "shirts"), [one]) == "disputed"
        assert self.status("decided", self.vote(3, "tops"), [one]) == "decided"
        with self.assertRaises(services.NeedsLead):
            self.status("disputed", self.vote(3, "tops"), [one, two])
