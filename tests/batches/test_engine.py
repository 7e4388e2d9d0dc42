"""The chunk engine with a small fake classifier: claims, leases, attempts, atomic writes.

Everything goes through the functions the workers run (`engine.process_run`, `engine.claim_next`),
with the classifier swapped for a fake that reads its answer from the photo's name.
"""

import io
import threading
from datetime import timedelta
from unittest import mock

from django.db import connection
from django.test import TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from batches import engine, ingest, services
from batches.models import BatchRun, BatchRunImage, FailedImage, Image, Prediction
from classifier.imaging import FailureReason, Rejection
from classifier.inference import ModelUnavailable
from classifier.outcomes import Classification, ReviewReason
from reviews.models import ReviewItem
from tests.helpers import jpeg_bytes


class FakeDecoding:
    def __init__(self, sources):
        self.sources = list(sources)
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class FakeClassifier:
    """Says 'shirts' with the confidence written in the photo's name; a photo named bad-* is corrupt."""

    version = "7"
    names: dict[str, str] = {}  # stored file name -> the photo's original name

    def __init__(self, fail_with: Exception | None = None):
        self.calls: list[int] = []
        self.fail_with = fail_with

    def start_decoding(self, sources):
        return FakeDecoding(sources)

    def classify_decoding(self, decoding):
        if self.fail_with:
            raise self.fail_with
        self.calls.append(len(decoding.sources))
        return [self.outcome(self.names[source.rsplit("/", 1)[-1]]) for source in decoding.sources]

    def outcome(self, original_name: str):
        if original_name.startswith("bad-"):
            return Rejection(FailureReason.CORRUPT, "broken")
        confidence = float(original_name.split("-")[1])
        reason = ReviewReason.LOW_CONFIDENCE if confidence < 0.8 else None
        return Classification("shirts", confidence, {"shirts": confidence, "tops": 1 - confidence}, reason)


class EngineTestMixin:
    def make_images(self, count: int, confidence: float = 0.95, prefix: str = "ok") -> list[Image]:
        images = []
        for i in range(count):
            name = f"{prefix}-{confidence}-{i}"
            content = jpeg_bytes() + name.encode()  # unique bytes, same picture
            image, _ = ingest.register_image(io.BytesIO(content), name, Image.Source.INBOX)
            FakeClassifier.names[image.file.name.rsplit("/", 1)[-1]] = name
            images.append(image)
        return images

    def make_run(self, images, version="7") -> BatchRun:
        run = BatchRun.objects.create(trigger="command", model_version=version, total=len(images))
        BatchRunImage.objects.bulk_create([BatchRunImage(run=run, image=image) for image in images])
        return run

    def process(self, run, classifier=None) -> FakeClassifier:
        """One worker's pass over the run, as a queued task makes it."""
        classifier = classifier or FakeClassifier()
        with mock.patch("classifier.inference.get_classifier", return_value=classifier):
            engine.process_run(run.pk)
        run.refresh_from_db()
        return classifier


# A chunk claimed ahead (fresh photos: select and lease them, in a savepoint: 4), its images read (1),
# then one transaction writing its predictions, reading which need review, releasing the lease and
# touching the run (6).
QUERIES_PER_CHUNK = 11


# The counts below are the model's own routing; audits of accepted photos are tested with them
# (RunTests) and in tests/reviews/test_quality.py.
@override_settings(AUDIT_SAMPLE_RATE=0.0, BATCH_PROGRESS_STEPS=1)  # chunks of BATCH_CHUNK_SIZE
class ChunkTests(EngineTestMixin, TestCase):
    @override_settings(BATCH_CHUNK_SIZE=10)
    def test_it_writes_predictions_and_failures_of_a_chunk_and_queues_doubtful_ones(self):
        images = self.make_images(3, 0.95) + self.make_images(2, 0.5, "low") + self.make_images(1, 0.9, "bad")
        run = self.make_run(images)
        classifier = self.process(run)
        assert classifier.calls == [6]
        assert FailedImage.objects.get().reason == "corrupt"  # one bad photo fails alone
        assert Prediction.objects.filter(model_version="7").count() == 5
        assert ReviewItem.objects.filter(prediction__image__original_name__startswith="low").count() == 2
        assert ReviewItem.objects.count() == 2
        assert not Image.objects.filter(lease_until__isnull=False).exists()  # leases released
        assert (run.status, run.n_predicted, run.n_failed, run.n_review) == ("completed_with_failures", 5, 1, 2)

    def test_a_chunk_costs_the_same_queries_whatever_its_size(self):
        counted = {}
        for chunks, size in ((2, 2), (2, 20), (3, 20)):
            run = self.make_run(self.make_images(chunks * size, prefix=f"c{chunks}x{size}"))
            with override_settings(BATCH_CHUNK_SIZE=size), CaptureQueriesContext(connection) as queries:
                with mock.patch("classifier.inference.get_classifier", return_value=FakeClassifier()):
                    engine.process_run(run.pk)
            counted[chunks, size] = len(queries)
        assert counted[2, 2] == counted[2, 20]  # more photos in a chunk: no more queries
        assert counted[3, 20] - counted[2, 20] == QUERIES_PER_CHUNK

    def test_a_claim_commits_a_lease_and_an_attempt_and_skips_leased_images(self):
        run = self.make_run(self.make_images(5))
        first, _ = engine.claim_next(run, 3)
        second, _ = engine.claim_next(run, 3)
        assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
        assert engine.claim_next(run, 3) == ([], False)
        leased = Image.objects.get(pk=first[0])
        assert leased.attempts == 1 and leased.lease_version == "7" and leased.lease_until > timezone.now()

    def test_an_expired_lease_is_retried_one_image_at_a_time(self):
        run = self.make_run(self.make_images(4))
        engine.claim_next(run, 4)  # the worker dies: nothing is written
        Image.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
        assert engine.claim_next(run, 4) == ([Image.objects.first().pk], True)
        ids, retry = engine.claim_next(run, 4)
        assert len(ids) == 1 and retry
        assert engine.claim_next(run, 4, retries=False) == ([], False)  # a chunk claimed ahead takes no suspect

    @override_settings(BATCH_MAX_ATTEMPTS=2)
    def test_a_photo_that_keeps_killing_its_worker_fails_alone(self):
        run = self.make_run(self.make_images(3))
        poison = Image.objects.first()
        Image.objects.filter(pk=poison.pk).update(
            lease_version="7", attempts=2, lease_until=timezone.now() - timedelta(seconds=1)
        )
        self.process(run)
        failure = FailedImage.objects.get()
        assert failure.image == poison and failure.reason == FailureReason.WORKER_CRASHED
        assert Prediction.objects.count() == 2 and run.status == "completed_with_failures"

    def test_a_classifier_error_fails_the_chunk_not_the_images(self):
        run = self.make_run(self.make_images(3))
        with self.assertRaises(RuntimeError):
            self.process(run, FakeClassifier(fail_with=RuntimeError("forward pass failed")))
        assert not FailedImage.objects.exists() and not Prediction.objects.exists()
        assert set(Image.objects.values_list("attempts", "lease_until")) == {(0, None)}  # pending, attempt not counted
        assert run.status == "running"

    def test_a_new_model_version_classifies_the_same_images_again(self):
        images = self.make_images(2)
        self.process(self.make_run(images, "7"))
        self.process(self.make_run(images, "8"))
        assert sorted(Prediction.objects.values_list("model_version", flat=True)) == ["7", "7", "8", "8"]


@override_settings(AUDIT_SAMPLE_RATE=0.0, BATCH_PROGRESS_STEPS=1)  # chunks of BATCH_CHUNK_SIZE
class RunTests(EngineTestMixin, TestCase):
    @override_settings(BATCH_CHUNK_SIZE=4)
    def test_a_run_ends_with_its_counts_and_class_distribution(self):
        run = self.make_run(self.make_images(9) + self.make_images(1, 0.9, "bad"))
        classifier = self.process(run)
        assert classifier.calls == [4, 4, 2]
        assert run.status == BatchRun.Status.COMPLETED_WITH_FAILURES
        assert (run.n_predicted, run.n_failed, run.class_counts) == (9, 1, {"shirts": 9})
        assert run.counts() == {"total": 10, "predicted": 9, "failed": 1, "done": 10, "pending": 0}
        assert run.failure_counts() == {"corrupt": 1}

    @override_settings(BATCH_CHUNK_SIZE=10, BATCH_MAX_FAILURE_RATE=0.5)
    def test_a_run_where_most_photos_fail_stops_as_failed_and_leaves_the_rest_pending(self):
        run = self.make_run(self.make_images(24, 0.9, "bad") + self.make_images(36, 0.95, "zok"))
        classifier = self.process(run)
        # Judged once 20 photos have an outcome: after the second chunk of ten, all failed.
        assert classifier.calls == [10, 10]
        assert run.status == BatchRun.Status.FAILED
        assert "20 of the first 20 photos failed" in run.error and "corrupt 20" in run.error
        assert run.counts()["pending"] == 40  # not marked failed: a later run takes them
        assert not Image.objects.filter(lease_until__isnull=False).exists()  # the chunk claimed ahead was given back

    @override_settings(BATCH_CHUNK_SIZE=10, BATCH_MAX_FAILURE_RATE=0.5)
    def test_a_few_bad_photos_never_stop_a_run(self):
        run = self.make_run(self.make_images(9, 0.9, "bad") + self.make_images(21, 0.95, "zok"))
        self.process(run)
        assert run.status == BatchRun.Status.COMPLETED_WITH_FAILURES and run.n_failed == 9

    @override_settings(AUDIT_SAMPLE_RATE=1.0)
    def test_accepted_photos_sampled_for_audit_are_queued_but_not_counted_as_sent_to_review(self):
        run = self.make_run(self.make_images(3) + self.make_images(2, 0.5, "low"))
        self.process(run)
        assert sorted(ReviewItem.objects.values_list("reason", flat=True)) == ["audit"] * 3 + ["low_confidence"] * 2
        assert run.n_review == 2  # the model sent two to review; the audits check the others

    def test_a_second_run_over_done_images_does_no_inference(self):
        images = self.make_images(5)
        self.process(self.make_run(images))
        again = self.make_run(images)
        classifier = self.process(again)
        assert classifier.calls == []
        assert again.status == BatchRun.Status.COMPLETED and Prediction.objects.count() == 5

    def test_a_model_that_cannot_load_fails_the_run_before_claiming(self):
        run = self.make_run(self.make_images(3))
        with mock.patch("classifier.inference.get_classifier", side_effect=ModelUnavailable("gone")):
            engine.process_run(run.pk)
        run.refresh_from_db()
        assert run.status == BatchRun.Status.FAILED and "gone" in run.error
        assert set(Image.objects.values_list("attempts", flat=True)) == {0}
        assert not FailedImage.objects.exists()

    def test_a_quiet_run_is_queued_again_and_finished(self):
        run = self.make_run(self.make_images(2))
        BatchRun.objects.filter(pk=run.pk).update(last_activity_at=timezone.now() - timedelta(hours=1))
        # django-q2 runs the queued task inline under test (sync): the stalled run gets its worker.
        with mock.patch("classifier.inference.get_classifier", return_value=FakeClassifier()):
            assert services.resume_stalled_runs() == [run.pk]
        run.refresh_from_db()
        assert run.status == BatchRun.Status.COMPLETED and run.n_predicted == 2
        assert services.resume_stalled_runs() == []  # nothing left to resume

    def test_a_run_is_queued_as_batch_run_tasks_tasks_at_most_one_per_chunk(self):
        from django_q.conf import Conf
        from django_q.models import OrmQ

        run = self.make_run(self.make_images(40))
        with mock.patch.object(Conf, "SYNC", False):
            with override_settings(BATCH_RUN_TASKS=8, BATCH_CHUNK_SIZE=10, BATCH_PROGRESS_STEPS=1):
                services.enqueue_batch_run(run)  # 4 chunks: 4 tasks
                assert OrmQ.objects.count() == 4
                OrmQ.objects.all().delete()
            with override_settings(BATCH_RUN_TASKS=8, BATCH_CHUNK_SIZE=1, BATCH_PROGRESS_STEPS=1):
                services.enqueue_batch_run(run)  # enough work for every machine's workers
                assert OrmQ.objects.count() == 8
                OrmQ.objects.all().delete()
            with override_settings(BATCH_RUN_TASKS=8, BATCH_CHUNK_SIZE=256, BATCH_PROGRESS_STEPS=10):
                services.enqueue_batch_run(run)  # a small run is cut smaller (chunks of 8): 5 chunks
                assert OrmQ.objects.count() == 5
        assert {task.name() for task in OrmQ.objects.all()} == {f"batch-run-{run.pk}"}

    def test_a_run_with_nothing_to_do_is_finished_when_queued(self):
        run = self.make_run([])
        services.enqueue_batch_run(run)
        run.refresh_from_db()
        assert run.status == BatchRun.Status.COMPLETED and run.finished_at is not None


@override_settings(AUDIT_SAMPLE_RATE=0.0)
class ConcurrentClaimTests(EngineTestMixin, TransactionTestCase):
    def test_workers_claiming_at_once_never_take_the_same_image(self):
        run = self.make_run(self.make_images(40))
        claimed, barrier = [], threading.Barrier(4)

        def worker():
            barrier.wait()
            try:
                while ids := engine.claim_next(run, 3)[0]:
                    claimed.extend(ids)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == sorted(Image.objects.values_list("id", flat=True))


@override_settings(BATCH_LEASE_SECONDS=3)
class HeartbeatTests(EngineTestMixin, TransactionTestCase):
    def test_a_live_worker_keeps_its_photos_past_the_lease_and_a_dead_one_loses_them_within_it(self):
        import time

        run = self.make_run(self.make_images(6))
        ids, _ = engine.claim_next(run, 4)
        heartbeat = engine.Heartbeat(run).start()
        heartbeat.hold(engine.Chunk(ids, [], FakeDecoding([])))
        try:
            time.sleep(4.5)  # one and a half leases: renewed every second
            assert set(Image.objects.filter(pk__in=ids).claimable_for("7").values_list("id", flat=True)) == set()
            run.refresh_from_db()
            assert timezone.now() - run.last_activity_at < timedelta(seconds=2)
        finally:
            heartbeat.stop()  # the worker is gone: nobody renews
        time.sleep(3.5)
        assert set(Image.objects.filter(pk__in=ids).claimable_for("7").values_list("id", flat=True)) == set(ids)
