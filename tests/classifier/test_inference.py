"""Serving a registered model: loading once, classifying files, last known good copy, digest check."""

import json
import shutil

import pytest
from django.test import Client, override_settings

from classifier import inference, registry
from classifier.imaging import FailureReason, Rejection
from tests.helpers import BAD_INPUTS, dev_photos

UNREACHABLE_REGISTRY = "http://127.0.0.1:9"  # nothing listens on the discard port


def test_it_classifies_photos_in_one_call_with_a_rejection_in_place(trained_model):
    version, classes = trained_model
    photos = dev_photos("val", per_class=2)
    sources = [path for path, _ in photos] + [BAD_INPUTS / "truncated.jpg"]
    outcomes = inference.get_classifier().classify_files(sources)
    assert len(outcomes) == len(sources)
    *predictions, rejection = outcomes
    assert isinstance(rejection, Rejection) and rejection.reason == FailureReason.TRUNCATED
    for prediction in predictions:
        assert prediction.predicted_class in classes
        assert set(prediction.probabilities) == set(classes)
        assert abs(sum(prediction.probabilities.values()) - 1) < 1e-3
        assert prediction.confidence == max(prediction.probabilities.values())
    # Trained on 8 photos per class, the real network is far better than chance (1 in 15).
    correct = sum(p.predicted_class == truth for p, (_, truth) in zip(predictions, photos))
    assert correct / len(predictions) > 0.5


def test_it_loads_the_model_once_per_process(trained_model):
    assert inference.loaded_state()["loaded"] is False
    first = inference.get_classifier()
    assert inference.get_classifier() is first
    assert inference.loaded_state() == {
        "loaded": True,
        "version": trained_model[0],
        "demo": False,
        "source": "registry",
        "runtime": "torch",  # the fixture's version carries no int8 network
        "decoder": "pil",  # INFERENCE_DECODE=auto on the CPU
    }


@pytest.mark.django_db
def test_it_serves_the_last_known_good_copy_when_the_registry_is_down(trained_model):
    version, _ = trained_model
    inference.get_classifier()  # fetched once while the registry answers
    inference.forget_loaded()
    with override_settings(MLFLOW_TRACKING_URI=UNREACHABLE_REGISTRY):
        classifier = inference.get_classifier()
        health = Client().get("/health").json()
    assert classifier.version == version
    assert classifier.source == "cache"
    # /health says so, and names the version that serves.
    assert health["status"] == "degraded"
    assert (health["model"]["version"], health["model"]["source"]) == (version, "cache")


def test_without_registry_or_copy_the_model_is_unavailable(trained_model, tmp_path):
    with override_settings(MLFLOW_TRACKING_URI=UNREACHABLE_REGISTRY, MODEL_CACHE_DIR=tmp_path):
        with pytest.raises(inference.ModelUnavailable):
            inference.get_classifier()


def test_it_refuses_a_tampered_copy(trained_model, tmp_path):
    version, _ = trained_model
    copy = tmp_path / "copy"
    shutil.copytree(registry.fetch_version(version), copy)
    weights = copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(inference.ModelUnavailable, match="digest"):
        inference.load_model_dir(copy, version)
    config = json.loads((copy / "config.json").read_text())
    assert len(config["weights_sha256"]) == 64
