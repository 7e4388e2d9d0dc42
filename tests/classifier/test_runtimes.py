"""The int8 ONNX serving path: built at registration from training photos, stored and
digest-checked with the version, chosen on the CPU, and giving the same answers as PyTorch."""

import pytest
import torch
from django.test import override_settings

from batches import engine, services
from batches.models import Prediction
from classifier import inference, int8, registry, training
from classifier import services as model_services
from tests.helpers import DATASET, dev_photos, register_file, require_dataset

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """A probe on 8 photos per class, registered once with its int8 network and once without."""
    require_dataset()
    root = tmp_path_factory.mktemp("runtimes")
    with override_settings(MODEL_NAME="test-runtimes", MODEL_CACHE_DIR=root / "cache"):
        cfg = training.TrainConfig(epochs=0, unfreeze=0, holdout=0.25, max_per_class=8, seed=2)
        result = training.train(DATASET / "train", cfg)
        with_int8 = model_services.register_model(
            result.model,
            result.config,
            run_name="int8",
            params={},
            history=[],
            int8_photos=result.int8_photos,
            int8_routing=training.int8_routing(result, cfg),
        ).version
        without = model_services.register_model(
            result.model, result.config, run_name="fp32", params={}, history=[]
        ).version
    return {
        "root": root,
        "int8": with_int8,
        "fp32": without,
        "photos": len(result.int8_photos),
        "held_out": len(result.holdout_photos),
    }


@pytest.fixture(autouse=True)
def model_name(versions):
    with override_settings(MODEL_NAME="test-runtimes", MODEL_CACHE_DIR=versions["root"] / "cache"):
        yield


def val_photos():
    return [path for path, _ in dev_photos("val", per_class=3)]


def test_a_cpu_serves_the_int8_network_with_the_answers_of_pytorch(versions):
    served = inference.get_classifier(versions["int8"])
    assert served.runtime == "onnx-int8"
    entry = served.config["runtimes"]["onnx-int8"]
    assert entry["calibration_photos"] == versions["photos"] == 15 * 6  # the training side only
    assert entry["top1_agreement_with_fp32"] >= int8.MIN_INT8_AGREEMENT
    photos = val_photos()
    by_int8 = served.classify_files(photos)
    with override_settings(INFERENCE_RUNTIME="torch"):
        reference = inference.get_classifier(versions["int8"])
        assert reference.runtime == "torch"
        by_fp32 = reference.classify_files(photos)
    same = sum(a.predicted_class == b.predicted_class for a, b in zip(by_int8, by_fp32))
    assert same >= 0.9 * len(photos), f"int8 and fp32 agree on {same} of {len(photos)} photos"
    # The networks' outputs are close for most photos. (Served confidences are not compared: each
    # runtime's are calibrated with the temperature fitted on its own outputs, see the next test; and
    # this small model's near-ties may swing a few photos by more.)
    tensors = served.decode_many(photos)
    int8_probs = torch.cat(list(served.logits(tensors))).softmax(dim=1)
    fp32_probs = torch.cat(list(reference.logits(tensors))).softmax(dim=1)
    difference = (int8_probs - fp32_probs).abs().max(dim=1).values
    print(f"\nint8 vs fp32, {len(photos)} photos: {same} same class, median difference {difference.median():.3f}")
    assert float(difference.median()) < 0.05


def test_the_int8_network_routes_with_a_policy_fitted_on_its_own_outputs(versions):
    served = inference.get_classifier(versions["int8"])
    own = served.config["runtimes"]["onnx-int8"]["routing"]
    assert own["fitted_on"] == versions["held_out"] == 15 * 2
    assert served.routing.temperature == own["temperature"] != served.config["routing"]["temperature"]
    assert served.routing.thresholds == own["thresholds"]
    with override_settings(INFERENCE_RUNTIME="torch"):
        reference = inference.get_classifier(versions["int8"])
        assert reference.routing.temperature == served.config["routing"]["temperature"]


def test_a_batch_run_on_the_int8_network_writes_a_prediction_per_photo(versions):
    with override_settings(MODEL_ALIAS="production"):
        registry.set_alias("production", versions["int8"])
        images = [register_file(path) for path in val_photos()[:20]]
        run = services.start_batch_run("command", images)
        while engine.process_run(run.pk):
            pass
    run.refresh_from_db()
    assert run.status == "completed"
    assert Prediction.objects.filter(batch_run=run, model_version=versions["int8"]).count() == 20


def test_a_tampered_int8_network_is_refused(versions):
    folder = registry.fetch_version(versions["int8"])
    onnx_file = folder / "model.int8.onnx"
    original = onnx_file.read_bytes()
    try:
        onnx_file.write_bytes(original[:-64] + bytes(64))
        with pytest.raises(inference.ModelUnavailable, match="digest mismatch"):
            inference.get_classifier(versions["int8"])
    finally:
        onnx_file.write_bytes(original)


def test_a_version_without_an_int8_network_is_served_by_pytorch(versions):
    assert "runtimes" not in inference.get_classifier(versions["fp32"]).config
    assert inference.get_classifier(versions["fp32"]).runtime == "torch"
    with override_settings(INFERENCE_RUNTIME="onnx-int8"):
        with pytest.raises(inference.ModelUnavailable, match="has no int8 ONNX network"):
            inference.get_classifier(versions["fp32"])
