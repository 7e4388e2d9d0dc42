"""`bench` runs the real batch path in a throw-away database and prints one JSON document."""

import io
import json

import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from batches.models import BatchRun, Image

pytestmark = pytest.mark.django_db(transaction=True)

SET_KEYS = {"pipeline_img_s", "model_only_img_s", "decode_only_img_s", "efficiency", "naive_img_s", "n"}


def test_bench_prints_every_figure_for_both_photo_sets_and_leaves_the_database_alone(trained_model, settings):
    version, _ = trained_model
    out, err = io.StringIO(), io.StringIO()
    call_command("bench", "--photos", "6", "--naive-photos", "2", "--no-accuracy", stdout=out, stderr=err)
    document = json.loads(out.getvalue())
    for name in ("photos_60x80", "photos_1280x960"):
        figures = document[name]
        assert SET_KEYS <= set(figures)
        assert figures["n"] == 6 and figures["naive_n"] == 2
        assert all(figures[key] > 0 for key in SET_KEYS)
        # efficiency is the pipeline against what decoding and the model allow together
        ideal = 1 / (1 / figures["decode_only_img_s"] + 1 / figures["model_only_img_s"])
        assert figures["efficiency"] == pytest.approx(figures["pipeline_img_s"] / ideal, rel=0.01)
    assert document["peak_rss_mb"] > 100 and document["device"] == "cpu"
    assert document["config"]["model_version"] == version and document["config"]["runtime"] == "pytorch eager fp32"
    assert document["config"]["database"] == "postgresql" and document["val_accuracy"] is None  # --no-accuracy
    # The big photos really are 1280x960 camera-like JPEGs.
    made = sorted((settings.VAR_DIR / "bench" / "photos-1280x960").glob("*.jpg"))
    assert len(made) == 6
    with PILImage.open(made[0]) as photo:
        assert photo.size == (1280, 960) and photo.format == "JPEG"
    # Everything was registered and classified in the throw-away database, not here.
    assert not Image.objects.exists() and not BatchRun.objects.exists()


def test_bench_compares_a_version_at_another_input_size_and_sets_both_against_the_b0_reference(
    trained_model, tmp_path, settings
):
    from classifier import inference, registry, services, training
    from tests.helpers import DATASET, small_folder

    version, _ = trained_model
    settings.EVAL_DATA_DIR = [str(small_folder(tmp_path / "val", split="val", per_class=2))]
    cfg = training.TrainConfig(epochs=0, unfreeze=0, holdout=0.0, max_per_class=4, seed=1, input_size=128)
    result = training.train(DATASET / "train", cfg)
    smaller = services.register_model(
        result.model, result.config, run_name="test-128", params={"recipe": "test"}, history=result.history
    )
    registry.set_alias("staging", smaller.version)
    try:
        out = io.StringIO()
        call_command(
            "bench",
            *("--photos", "4", "--naive-photos", "1", "--reference-photos", "32", "--compare", "staging"),
            stdout=out,
            stderr=io.StringIO(),
        )
    finally:
        registry.set_alias("staging", version)
        inference.forget_loaded()
    document = json.loads(out.getvalue())
    reference = document["reference_b0"]
    assert reference["network"] == "efficientnet_b0" and reference["batch"] == 32 and reference["img_s"] > 0
    beside = document["compared"]["staging"]
    # Production at its 224 px and the candidate at its own 128 px, on the same photos.
    assert document["config"]["input_size"] == [3, 224, 224] and document["config"]["model_version"] == version
    assert beside["config"]["input_size"] == [3, 128, 128] and beside["config"]["model_version"] == smaller.version
    for figures in (document, beside):
        assert figures["peak_rss_mb"] > 100 and 0 <= min(figures["val_accuracy"].values()) <= 1
        for name in ("photos_60x80", "photos_1280x960"):
            assert figures[name]["n"] == 4 and figures[name]["efficiency"] > 0
            assert figures[name]["vs_reference_b0"] == pytest.approx(
                figures[name]["pipeline_img_s"] / reference["img_s"], rel=0.01
            )
    assert "naive_img_s" not in beside["photos_60x80"]  # the slow naive path is measured once


def test_bench_review_decides_every_item_once_through_the_desk_and_leaves_the_database_alone():
    from reviews.models import ReviewDecision, ReviewItem

    out, err = io.StringIO(), io.StringIO()
    call_command("bench_review", "--items", "12", stdout=out, stderr=err)
    document = json.loads(out.getvalue())
    for name, reviewers in (("one_reviewer", 1), ("four_reviewers", 4)):
        figures = document[name]
        assert (figures["reviewers"], figures["items"], figures["decisions"]) == (reviewers, 12, 12), figures
        assert (figures["decided_twice"], figures["left_undecided"], figures["errors"]) == (0, 0, [])
        assert 0 < figures["median_ms"] <= figures["p95_ms"]
        assert figures["queries_per_decision"]["max"] < figures["round_trips_per_decision"]["max"]
        assert figures["decisions_per_second"] > 0 and sum(figures["per_reviewer"]) == 12
    assert document["config"]["database"] == "postgresql"
    assert not ReviewItem.objects.exists() and not ReviewDecision.objects.exists()


def test_simulate_reviews_runs_weeks_of_returns_and_leaves_production_and_the_database_alone(trained_model, tmp_path):
    """The flywheel on a small set: real photos as returns and judge, catalogue photos to train on."""
    import os

    from classifier import registry
    from classifier.models import Retrain
    from tests.helpers import DATASET, small_folder

    version, _ = trained_model
    real = DATASET.parent / "refund-items-real"
    classes = ("jeans", "shirts", "tshirts")

    def folder(name, source, per_class):
        for label in classes:
            (tmp_path / name / label).mkdir(parents=True)
            for path in sorted((source / label).glob("*.jpg"))[:per_class]:
                os.symlink(path, tmp_path / name / label / path.name)
        return str(tmp_path / name)

    train = str(small_folder(tmp_path / "train", split="train", classes=classes, per_class=8))
    gate = str(small_folder(tmp_path / "gate", split="val", classes=classes, per_class=6))
    returns, judge = folder("returns", real / "train", 6), folder("judge", real / "val", 4)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "simulate_reviews",
        *("--returns", returns, "--judge", judge, "--train", train, "--eval", gate),
        *("--weeks", "1", "--nights", "2", "--max-per-class", "8"),
        stdout=out,
        stderr=err,
    )
    rows = json.loads(out.getvalue().splitlines()[-1])
    assert [row["week"] for row in rows] == [0, 1]
    week = rows[1]
    assert week["returns"] == 18 and 0 <= week["auto_accepted_live"] <= 1
    assert 1 <= week["reviewed_total"] <= 18  # what the first version did not accept, decided by the oracle
    assert week["retrain"] in ("promoted", "refused")
    assert all(0 <= row["judge_auto_accept_rate"] <= 1 and 0 <= row["judge_accuracy"] <= 1 for row in rows)
    assert "week" in out.getvalue().splitlines()[0] and "judge: auto-accepted" in out.getvalue()
    # The installation's production, database and retrain history are untouched.
    assert registry.alias_version("production") == version
    assert not Image.objects.exists() and not BatchRun.objects.exists() and not Retrain.objects.exists()
