"""Routing end to end: a version's own thresholds and open-set score decide, through a real
batch run with the real network, which photos reach the review queue and why."""

import pytest
from django.test import override_settings

from batches import engine, services
from batches.models import Prediction
from classifier import inference, registry
from classifier import services as model_services
from reviews import services as review_services
from reviews.models import ReviewItem
from tests.helpers import dev_photos, register_file

pytestmark = pytest.mark.django_db(transaction=True)


def register_with_routing(trained, routing: dict) -> str:
    """The session's trained network registered again with a routing policy of our choosing."""
    config = {key: value for key, value in trained.config.items() if key not in ("format", "weights_sha256")}
    config["routing"] = routing
    return model_services.register_model(trained.model, config, run_name="routing", params={}, history=[]).version


def test_each_photo_goes_where_its_version_policy_says_with_the_reason(trained_model):
    version, _ = trained_model
    trained = inference.get_classifier(version)
    with override_settings(MODEL_NAME="test-routing"):
        check_routing(trained)


def check_routing(trained):
    photos = dev_photos("val", per_class=3, classes=["belts", "jeans", "tops", "watches"])
    paths = [path for path, _ in photos]
    # Energies of these very photos under the network: put the open-set threshold just under the
    # highest, so exactly one photo looks unlike every class.
    energies = sorted(
        (float(e), str(p))
        for logits in trained.logits(trained.decode_many(paths))
        for e, p in zip(-logits.logsumexp(dim=1), paths)
    )
    unknown_photo = energies[-1][1]
    routing = {
        "temperature": 1.5,
        "thresholds": {"belts": 0.0, "jeans": 0.0, "tops": 1.01, "watches": 1.01},
        "unknown": {"method": "energy", "threshold": (energies[-1][0] + energies[-2][0]) / 2},
    }
    new_version = register_with_routing(trained, routing)
    registry.set_alias("production", new_version)

    images = {register_file(path).pk: str(path) for path in paths}
    run = services.start_batch_run("button")
    assert engine.process_run(run.pk) is False
    run.refresh_from_db()
    assert run.status == "completed" and run.model_version == new_version

    predictions = Prediction.objects.filter(model_version=new_version).select_related("review", "image")
    assert predictions.count() == len(paths)
    for prediction in predictions:
        path = images[prediction.image_id]
        if path == unknown_photo:
            expected = "unknown_item"
        elif prediction.predicted_class in ("tops", "watches"):
            expected = "low_confidence"
        else:
            expected = None
        assert (prediction.review_reason or None) == expected, path
        review = getattr(prediction, "review", None)
        audit = "audit" if review_services.audit_sampled(prediction.image.sha256, new_version) else None
        assert (review.reason if review else None) == (expected or audit), path
    assert ReviewItem.objects.filter(reason="unknown_item").count() == 1
    assert run.n_review == ReviewItem.objects.exclude(reason="audit").count() > 1
    # Calibrated: confidences come from softmax(logits / 1.5), so none is as extreme as the raw one.
    raw = max(float(logits.softmax(dim=1).max()) for logits in trained.logits(trained.decode_many(paths[:1])))
    assert predictions.get(image__original_name=paths[0].name).confidence < raw
