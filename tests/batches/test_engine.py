"""The chunk engine with a small fake classifier: claims, leases, attempts, atomic writes."""

import io
import threading
from concurrent.futures import Future
from datetime import timedelta
from unittest import mock

from django.db import connection
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

from batches import services
from batches.models import BatchRun, BatchRunImage, FailedImage, Image, Prediction
from batches.storage import store_stream
from classifier.imaging import FailureReason
from classifier.inference import ModelUnavailable, Rejection
from classifier.inference import Prediction as Outcome
from reviews.models import ReviewItem
from tests.helpers import jpeg_bytes


class FakeClassifier:
    """Says 'shirts' with the confidence written in the file name; a file named bad-* is corrupt."""

    version = "7"
    classes = ["shirts", "tops"]

    def __init__(self):
        self.calls = []

    def start_decoding(self, paths):
        decoding = []
        for path in paths:
            decoding.append(Future())
            decoding[-1].set_result(path)
        return decoding

    def classify_decoding(self, decoding):
        return self.classify_files([future.result() for future in decoding])

    def classify_files(self, paths):
        self.calls.append(len(paths))
        outcomes = []
        for path in paths:
            name = str(path).rsplit("/", 1)[-1]
            image = Image.objects.get(file__endswith=name)
            if image.original_name.startswith("bad-"):
                outcomes.append(Rejection(FailureReason.CORRUPT.value, "broken"))
            else:
                confidence = float(image.original_name.split("-")[1])
                reason = "low_confidence" if confidence < 0.8 else None
                outcomes.append(Outcome("shirts", confidence, {"shirts": confidence, "tops": 1 - confidence}, reason))
        return outcomes


class EngineTestMixin:
    def make_images(self, count: int, confidence: float = 0.95, prefix: str = "ok") -> list[Image]:
        images = []
        for i in range(count):
            content = jpeg_bytes() + f"{prefix}-{confidence}-{i}".encode()  # unique bytes, same picture
            stored = store_stream(io.BytesIO(content), 10**7)
            images.append(
                Image.objects.create(
                    sha256=stored.sha256,
                    file=stored.name,
                    source="inbox",
                    size_bytes=stored.size,
                    original_name=f"{prefix}-{confidence}-{i}",
                )
            )
        return images

    def make_run(self, images, version="7") -> BatchRun:
        run = BatchRun.objects.create(trigger="command", model_version=version, total=len(images))
        BatchRunImage.objects.bulk_create([BatchRunImage(run=run, image=image) for image in images])
        return run


class ChunkTests(EngineTestMixin, TestCase):
    def setUp(self):
        self.classifier = FakeClassifier()

    def test_it_writes_predictions_and_failures_of_a_chunk_and_queues_doubtful_ones(self):
        images = self.make_images(3, 0.95) + self.make_images(2, 0.5, "low") + self.make_images(1, 0.9, "bad")
        run = self.make_run(images)
        with override_settings(BATCH_CHUNK_SIZE=10):
            result = services.process_chunk(run, self.classifier)
        assert (result.claimed, result.predicted, result.failed) == (6, 5, 1)
        assert FailedImage.objects.get().reason == "corrupt"  # one bad photo fails alone
        assert Prediction.objects.filter(model_version="7").count() == 5
        assert ReviewItem.objects.filter(prediction__image__original_name__startswith="low").count() == 2
        assert ReviewItem.objects.count() == 2
        assert not Image.objects.filter(lease_until__isnull=False).exists()  # leases released

    def test_it_uses_a_constant_number_of_queries_per_chunk(self):
        for size in (4, 40):
            run = self.make_run(self.make_images(size, 0.95, prefix=f"n{size}"))
            with override_settings(BATCH_CHUNK_SIZE=size), self.assertNumQueries(13):
                with mock.patch.object(
                    FakeClassifier,
                    "classify_files",
                    lambda self, paths: [Outcome("shirts", 0.9, {"shirts": 0.9, "tops": 0.1}) for _ in paths],
                ):
                    services.process_chunk(run, self.classifier)

    def test_a_claim_commits_a_lease_and_an_attempt_and_skips_leased_images(self):
        run = self.make_run(self.make_images(5))
        first = services.claim_images(run, 3)
        second = services.claim_images(run, 3)
        assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
        assert services.claim_images(run, 3) == []
        leased = Image.objects.get(pk=first[0])
        assert leased.attempts == 1 and leased.lease_version == "7" and leased.lease_until > timezone.now()

    def test_an_expired_lease_is_retried_one_image_at_a_time(self):
        run = self.make_run(self.make_images(4))
        services.claim_images(run, 4)  # the worker dies: nothing is written
        Image.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
        assert len(services.claim_images(run, 4)) == 1
        assert len(services.claim_images(run, 4)) == 1

    @override_settings(BATCH_MAX_ATTEMPTS=2)
    def test_a_photo_that_keeps_killing_its_worker_fails_alone(self):
        run = self.make_run(self.make_images(3))
        poison = Image.objects.first()
        Image.objects.filter(pk=poison.pk).update(
            lease_version="7", attempts=2, lease_until=timezone.now() - timedelta(seconds=1)
        )
        while services.process_chunk(run, self.classifier):
            pass
        failure = FailedImage.objects.get()
        assert failure.image == poison and failure.reason == FailureReason.WORKER_CRASHED
        assert Prediction.objects.count() == 2

    def test_a_classifier_error_fails_the_chunk_not_the_images(self):
        run = self.make_run(self.make_images(3))
        broken = mock.Mock(classify_decoding=mock.Mock(side_effect=RuntimeError("forward pass failed")))
        with self.assertRaises(RuntimeError):
            services.process_chunk(run, broken)
        assert not FailedImage.objects.exists() and not Prediction.objects.exists()
        assert set(Image.objects.values_list("attempts", "lease_until")) == {(0, None)}  # pending, attempt not counted

    def test_a_new_model_version_classifies_the_same_images_again(self):
        images = self.make_images(2)
        services.process_chunk(self.make_run(images, "7"), self.classifier)
        services.process_chunk(self.make_run(images, "8"), self.classifier)
        assert sorted(Prediction.objects.values_list("model_version", flat=True)) == ["7", "7", "8", "8"]


class RunTests(EngineTestMixin, TestCase):
    def run_with_fake(self, run):
        classifier = FakeClassifier()
        with mock.patch("classifier.inference.get_classifier", return_value=classifier):
            services.process_run(run.pk)
        run.refresh_from_db()
        return classifier

    @override_settings(BATCH_CHUNK_SIZE=4)
    def test_a_run_ends_with_its_counts_and_class_distribution(self):
        run = self.make_run(self.make_images(9) + self.make_images(1, 0.9, "bad"))
        classifier = self.run_with_fake(run)
        assert classifier.calls == [4, 4, 2]
        assert run.status == BatchRun.Status.COMPLETED_WITH_FAILURES
        assert (run.n_predicted, run.n_failed, run.class_counts) == (9, 1, {"shirts": 9})
        assert services.run_counts(run) == {"total": 10, "predicted": 9, "failed": 1, "done": 10, "pending": 0}

    @override_settings(BATCH_CHUNK_SIZE=10, BATCH_MAX_FAILURE_RATE=0.5)
    def test_a_run_where_most_photos_fail_stops_as_failed_and_leaves_the_rest_pending(self):
        run = self.make_run(self.make_images(24, 0.9, "bad") + self.make_images(36, 0.95, "zok"))
        classifier = self.run_with_fake(run)
        # Judged once 20 photos have an outcome: after the second chunk of ten, all failed.
        assert classifier.calls == [10, 10]
        assert run.status == BatchRun.Status.FAILED
        assert "20 of the first 20 photos failed" in run.error and "corrupt 20" in run.error
        assert services.run_counts(run)["pending"] == 40  # not marked failed: a later run takes them

    @override_settings(BATCH_CHUNK_SIZE=10, BATCH_MAX_FAILURE_RATE=0.5)
    def test_a_few_bad_photos_never_stop_a_run(self):
        run = self.make_run(self.make_images(9, 0.9, "bad") + self.make_images(21, 0.95, "zok"))
        self.run_with_fake(run)
        assert run.status == BatchRun.Status.COMPLETED_WITH_FAILURES and run.n_failed == 9

    def test_a_second_run_over_done_images_does_no_inference(self):
        images = self.make_images(5)
        self.run_with_fake(self.make_run(images))
        again = self.make_run(images)
        classifier = self.run_with_fake(again)
        assert classifier.calls == []
        assert again.status == BatchRun.Status.COMPLETED and Prediction.objects.count() == 5

    def test_a_model_that_cannot_load_fails_the_run_before_claiming(self):
        run = self.make_run(self.make_images(3))
        with mock.patch("classifier.inference.get_classifier", side_effect=ModelUnavailable("gone")):
            services.process_run(run.pk)
        run.refresh_from_db()
        assert run.status == BatchRun.Status.FAILED and "gone" in run.error
        assert set(Image.objects.values_list("attempts", flat=True)) == {0}
        assert not FailedImage.objects.exists()

    def test_a_quiet_run_is_queued_again(self):
        run = self.make_run(self.make_images(2))
        BatchRun.objects.filter(pk=run.pk).update(last_activity_at=timezone.now() - timedelta(hours=1))
        with mock.patch("batches.services.enqueue_batch_run") as enqueue:
            assert services.resume_stalled_runs() == [run.pk]
        enqueue.assert_called_once()


class ConcurrentClaimTests(EngineTestMixin, TransactionTestCase):
    def test_workers_claiming_at_once_never_take_the_same_image(self):
        run = self.make_run(self.make_images(40))
        claimed, barrier = [], threading.Barrier(4)

        def worker():
            barrier.wait()
            try:
                while ids := services.claim_images(run, 3):
                    claimed.extend(ids)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == sorted(Image.objects.values_list("id", flat=True))
