"""Drift: a finished run keeps its class mix and confidence histogram, compared with the PSI to its
production version's baseline (its held-out photos at training time), through the real network."""

from __future__ import annotations

import random

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from batches import services
from batches.models import BatchRun
from classifier import drift, registry
from tests.helpers import DATASET, dev_photos, register_file

pytestmark = pytest.mark.django_db


def run_of(paths) -> BatchRun:
    images = [register_file(path) for path in paths]
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    run.refresh_from_db()
    assert run.is_finished, run.error
    return run


def not_our_products(folder, count: int = 120) -> list:
    """Pictures of nothing we sell: noise, stripes, rings and gradients, drawn at 60x80 like the photos."""
    rng = random.Random(7)
    paths = []
    for i in range(count):
        picture = PILImage.new("RGB", (60, 80), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(picture)
        kind = i % 4
        for k in range(12):
            colour = tuple(rng.randrange(256) for _ in range(3))
            if kind == 0:
                draw.point([(rng.randrange(60), rng.randrange(80)) for _ in range(300)], fill=colour)
            elif kind == 1:
                draw.rectangle([0, k * 7, 60, k * 7 + 3], fill=colour)
            elif kind == 2:
                draw.ellipse([30 - 3 * k, 40 - 3 * k, 30 + 3 * k, 40 + 3 * k], outline=colour, width=2)
            else:
                draw.line([(0, rng.randrange(80)), (60, rng.randrange(80))], fill=colour, width=3)
        path = folder / f"not-ours-{i:03}.jpg"
        picture.save(path, quality=90)
        paths.append(path)
    return paths


def test_the_version_keeps_the_baseline_of_its_held_out_photos(production_with_baseline):
    version, classes = production_with_baseline
    baseline = drift.version_baseline(registry.read_config(version))
    assert baseline["photos"] == 300 and set(baseline["classes"]) == set(classes)
    assert sum(baseline["classes"].values()) == sum(baseline["confidence"]) == 300


def test_a_run_like_the_training_photos_is_not_flagged(production_with_baseline):
    run = run_of([path for path, _ in dev_photos("val", per_class=15)])
    print(f"\ndrift of a run like the training photos ({run.total} val photos): {run.drift}")
    assert set(run.drift) == {"classes", "confidence"}
    assert sum(run.confidence_histogram) == run.n_predicted == run.total
    assert run.drifted == [], run.drift


def test_a_run_of_shoes_only_is_flagged_on_its_class_mix(production_with_baseline):
    shoes = sorted((DATASET / "val" / "casual_shoes").glob("*.jpg"))  # 100 photos
    run = run_of(shoes)
    print(f"\ndrift of a run of shoes only ({run.total} photos): {run.drift}")
    assert "classes" in run.drifted, run.drift


def test_a_run_of_things_we_do_not_sell_is_flagged(production_with_baseline, tmp_path):
    run = run_of(not_our_products(tmp_path))
    print(f"\ndrift of a run of things we do not sell ({run.total} pictures): {run.drift}")
    assert run.drifted, run.drift


def test_a_version_without_a_baseline_gives_no_drift_figures(trained_model):
    run = run_of([path for path, _ in dev_photos("val", per_class=7)])
    assert run.is_finished and run.drift == {} and sum(run.confidence_histogram) == run.n_predicted == 105
    assert run.drift_note == f"No drift figures: version {run.model_version} keeps no baseline of its photos."


def test_a_run_too_small_to_compare_gives_no_drift_figures(production_with_baseline):
    run = run_of([path for path, _ in dev_photos("val", per_class=2)])
    assert run.drift == {} and run.drift_note.startswith("No drift figures: fewer than 100 photos")


def test_the_run_page_and_the_history_show_the_drift(production_with_baseline, client, django_user_model):
    from tests.helpers import make_user

    run = run_of(sorted((DATASET / "val" / "casual_shoes").glob("*.jpg")))
    client.force_login(make_user("olga", "operators"))
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'class="tag drift drifted" data-kind="classes"' in page
    assert f"class mix {run.drift['classes']:.2f} · drifted" in page
    history = client.get("/runs/").content.decode()
    assert f'<span class="tag drift drifted" title="class mix">{run.drift["classes"]:.2f}</span>' in history
