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
