"""The weekly retrain end to end, with real training, the real network and the real registry:
reviewers' corrections reach production through the schedule's task when the candidate passes
the promotion gate; a worse candidate is refused and production stays; a retrain never runs
beside a batch run; a broken training folder fails without touching production."""

import io
import os
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase, override_settings
from django_q.models import Schedule

from batches import services as batch_services
from batches.models import BatchRun, Image
from classifier import inference, registry
from classifier.models import Retrain
from reviews import services, tasks
from reviews.models import ReviewItem
from tests.helpers import DATASET, IsolatedRegistry, make_user, register_file, require_dataset, small_folder
from tests.reviews.test_training_loop import train

CLASSES = ("jeans", "tops", "casual_shoes")
REAL = DATASET.parent / "refund-items-real"  # camera photos of some of our classes


def val_photos(name: str, start: int, stop: int) -> list[Path]:
    return sorted((DATASET / "val" / name).glob("*.jpg"))[start:stop]


def real_photos(name: str, count: int) -> list[Path]:
    require_dataset()
    assert (REAL / "train" / name).is_dir(), f"the real photos are missing at {REAL}"
    return sorted((REAL / "train" / name).glob("*.jpg"))[:count]


def folder_of(root: Path, start: int, stop: int) -> Path:
    """An ImageFolder of links to val photos [start:stop] of each class."""
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for path in val_photos(name, start, stop):
            os.symlink(path, root / name / path.name)
    return root


def reviewer(name: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(username=name).first() or make_user(name, "reviewers", staff=True)


def decide_all(images: list[Image], answer: str) -> int:
    """Reviewers file the photos queued for review under `answer` (a second reviewer agreeing where
    asked); returns how many they decided."""
    first, second = reviewer("rita"), reviewer("sam")
    queued = list(ReviewItem.objects.filter(prediction__image__in=images))
    for item in queued:
        services.record_decision(item.pk, first, answer, source="desk")
    for item in ReviewItem.objects.filter(prediction__image__in=images, status=ReviewItem.Status.SECOND_OPINION):
        services.record_decision(item.pk, second, answer, source="desk")
    return len(queued)


@override_settings(REVIEW_CONFIDENCE_THRESHOLD=1.01, AUDIT_SAMPLE_RATE=0.0, REVIEW_SECOND_OPINION_RATE=0.0)
class WeeklyRetrainTests(IsolatedRegistry):
    def setUp(self):
        self.data = small_folder(self.tmp_path / "train", split="train", classes=CLASSES, per_class=8)
        self.evaluation = folder_of(self.tmp_path / "eval", 10, 50)  # 40 a class: one photo is 2.5% recall
        self.first = train("--data", str(self.data))
        registry.set_alias("production", self.first)
        inference.forget_loaded()

    def classify(self, photos: list[Path]) -> list[Image]:
        images = [register_file(path) for path in photos]
        batch_services.start_and_enqueue_run(BatchRun.Trigger.BUTTON, images)  # inline under test
        return images

    def retrain(self) -> Retrain:
        with override_settings(TRAIN_DATA_DIR=[str(self.data)], EVAL_DATA_DIR=[str(self.evaluation)]):
            return Retrain.objects.get(pk=tasks.weekly_retrain())

    def test_corrections_reach_production_and_a_worse_candidate_is_refused(self):
        # A night of camera photos (the first version saw catalogue shots only); the reviewers correct
        # those it got wrong to what they show.
        night = {path: name for name in CLASSES for path in real_photos(name, 40)}
        images = dict(zip(night, self.classify(list(night))))
        wrong = {
            path: night[path]
            for path, image in images.items()
            if image.predictions.get().predicted_class != night[path]
        }
        assert len(wrong) >= 2, f"the first version got only {len(wrong)} of 120 photos wrong: nothing to correct"
        for path, truth in wrong.items():
            assert decide_all([images[path]], truth) == 1  # every photo of the first version is reviewed

        promoted = self.retrain()
        assert promoted.outcome == Retrain.Outcome.PROMOTED, promoted.reason
        assert (promoted.production_version, promoted.reviewed_photos) == (self.first, len(wrong))
        assert registry.alias_version("production") == promoted.candidate_version != self.first
        assert set(promoted.figures["candidate"]) == set(promoted.figures["production"]) == {"eval"}
        inference.forget_loaded()
        after = [o.predicted_class for o in inference.get_classifier().classify_files([str(p) for p in wrong])]
        assert after == list(wrong.values())
        print(f"\nretrain: {len(wrong)} corrections, now predicted as corrected; {promoted.accuracy_rows()}")

        # Catalogue tops filed under jeans: that candidate loses tops on the evaluation folder.
        misfiled = decide_all(self.classify(val_photos("tops", 60, 80)), "jeans")
        assert misfiled >= 5  # the new version accepts some tops on its own: those are not reviewed
        refused = self.retrain()
        assert refused.outcome == Retrain.Outcome.REFUSED and "recall of tops drops" in refused.reason
        assert refused.candidate_version and refused.reviewed_photos == len(wrong) + misfiled
        assert registry.alias_version("production") == promoted.candidate_version  # unchanged

        # Both on the history page, with their figures.
        self.client.force_login(make_user("olga", "operators"))
        page = self.client.get("/runs/").content.decode()
        assert "Promoted" in page and "Refused by the promotion gate" in page
        assert f"v{refused.candidate_version}" in page and "recall of tops drops" in page

    def test_no_retrain_beside_a_batch_run_and_a_broken_folder_changes_nothing(self):
        running = BatchRun.objects.create(trigger="schedule", model_version=self.first, total=10)
        skipped = self.retrain()
        assert skipped.outcome == Retrain.Outcome.SKIPPED and f"batch run {running.pk} is running" in skipped.reason
        running.delete()
        with override_settings(TRAIN_DATA_DIR=[str(self.tmp_path / "missing")]):
            failed = Retrain.objects.get(pk=tasks.weekly_retrain())
        assert failed.outcome == Retrain.Outcome.FAILED and "missing" in failed.reason
        assert registry.alias_version("production") == self.first
        assert not Retrain.objects.exclude(candidate_version="").exists()  # nothing was trained


class RetrainScheduleTests(TestCase):
    def test_setup_schedules_installs_the_weekly_retrain_beside_the_nightly_run(self):
        with override_settings(RETRAIN_CRON="0 4 * * 6"):
            call_command("setup_schedules", stdout=io.StringIO())
        weekly = Schedule.objects.get(name="weekly-retrain")
        assert (weekly.func, weekly.cron) == ("reviews.tasks.weekly_retrain", "0 4 * * 6")
        assert "'timeout': 10800" in weekly.kwargs  # longer than a batch task's
        assert Schedule.objects.filter(name="nightly-batch").exists()
        with override_settings(RETRAIN_CRON=""):
            call_command("setup_schedules", stdout=io.StringIO())
        assert not Schedule.objects.filter(name="weekly-retrain").exists()
        with (
            override_settings(RETRAIN_CRON="sundays"),
            self.assertRaisesMessage(CommandError, "RETRAIN_CRON 'sundays'"),
        ):
            call_command("setup_schedules", stdout=io.StringIO())

    def test_the_command_says_why_it_did_not_retrain(self):
        running = BatchRun.objects.create(trigger="schedule", model_version="1", total=3)
        with self.assertRaisesMessage(CommandError, f"skipped: batch run {running.pk} is running"):
            call_command("retrain", stdout=io.StringIO())

    def test_two_retrains_starting_at_once_run_one_and_skip_the_other(self):
        # The second task passed why_not_now() at the same moment as the first: the database
        # lets one retrain be running, and the second is recorded as skipped, nothing trained.
        from classifier import services as model_services
        from classifier.training import TrainConfig

        first = Retrain.objects.create(trigger="schedule")
        second = model_services.retrain(
            [Path("/nowhere")], [], TrainConfig(epochs=0, unfreeze=0), trigger="schedule", actor="test"
        )
        assert second.outcome == Retrain.Outcome.SKIPPED and "still running" in second.reason
        assert second.candidate_version == "" and Retrain.objects.get(pk=first.pk).outcome == Retrain.Outcome.RUNNING

    def test_metrics_say_when_a_retrain_last_judged_a_candidate(self):
        from django.utils import timezone

        from tests.batches.test_api import scrape

        before = scrape()[("model_retrain_last_success_timestamp_seconds", ())]  # the installation
        Retrain.objects.create(trigger="schedule", outcome="failed", finished_at=timezone.now())
        assert scrape()[("model_retrain_last_success_timestamp_seconds", ())] == before
        refused = Retrain.objects.create(trigger="schedule", outcome="refused", finished_at=timezone.now())
        assert scrape()[("model_retrain_last_success_timestamp_seconds", ())] == refused.finished_at.timestamp()
