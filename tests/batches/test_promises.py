"""Promises of the batch engine across model releases, with the real network and registry."""

import pytest
from django.test import override_settings

from batches import engine, services
from batches.models import BatchRun, Prediction
from classifier import inference, registry
from classifier import services as model_services
from reviews import services as review_services
from reviews.models import ReviewItem
from tests.helpers import dev_photos, make_user, register_file

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_versions(trained_model):
    """Two registered versions of the session's network under a model name of this test's own."""
    version, _ = trained_model
    trained = inference.get_classifier(version)
    config = {key: value for key, value in trained.config.items() if key not in ("format", "weights_sha256")}
    with override_settings(MODEL_NAME="test-promises", REVIEW_CONFIDENCE_THRESHOLD=1.01):
        first = model_services.register_model(trained.model, config, run_name="a", params={}, history=[]).version
        second = model_services.register_model(trained.model, config, run_name="b", params={}, history=[]).version
        registry.set_alias("production", first)
        yield first, second


def test_a_run_keeps_the_version_it_pinned_when_production_moves(two_versions):
    first, second = two_versions
    for path, _ in dev_photos("val", per_class=2, classes=["belts", "jeans", "watches"]):
        register_file(path)
    run = services.start_batch_run(BatchRun.Trigger.BUTTON)
    registry.set_alias("production", second)  # promoted while the run waits in the queue
    inference.forget_loaded()
    engine.process_run(run.pk)
    run.refresh_from_db()
    assert run.status == "completed" and run.model_version == first
    assert set(Prediction.objects.values_list("model_version", flat=True)) == {first}
    # The next run is the new version's, over every photo again.
    later = services.start_batch_run(BatchRun.Trigger.BUTTON)
    engine.process_run(later.pk)
    assert later.model_version == second and Prediction.objects.filter(model_version=second).count() == 6


def test_reviews_survive_reruns_and_new_versions_untouched(two_versions):
    first, second = two_versions
    for path, _ in dev_photos("val", per_class=2, classes=["tops", "tshirts"]):
        register_file(path)
    engine.process_run(services.start_batch_run(BatchRun.Trigger.BUTTON).pk)
    reviewer = make_user("rita", "reviewers", staff=True)
    items = list(ReviewItem.objects.order_by("id"))
    assert len(items) == 4  # every prediction under the (unreachable) fallback threshold
    review_services.record_decision(items[0].pk, reviewer, "tshirts", source="desk")
    review_services.record_decision(items[1].pk, reviewer, "tops", source="desk")
    before = list(ReviewItem.objects.order_by("id").values())

    engine.process_run(services.start_batch_run(BatchRun.Trigger.BUTTON).pk)  # a rerun: nothing to do
    registry.set_alias("production", second)
    inference.forget_loaded()
    engine.process_run(services.start_batch_run(BatchRun.Trigger.BUTTON).pk)  # a new version

    after = list(ReviewItem.objects.filter(prediction__model_version=first).order_by("id").values())
    assert after == before  # decisions, reviewers, times and pending items all as they were
    assert ReviewItem.objects.filter(prediction__model_version=second).count() == 4  # the new version's own
