"""The last-known-good cache (MODEL_CACHE_DIR) keys each copy by what identifies a version (its
MLflow run and the digest of its weights), not by its number: two registries, both with a
"version 1", share one cache folder without one serving the other's weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from django.test import override_settings
from safetensors.torch import save_file

from classifier import artifacts, registry


def register(folder: Path, classes: list[str]) -> str:
    """A model folder with `classes` (weights of the right shape) registered in the current registry."""
    model = folder / f"model-{len(classes)}"
    model.mkdir(parents=True)
    save_file({"head.weight": torch.randn(len(classes), 8)}, str(model / artifacts.WEIGHTS_FILE))
    digest = artifacts.sha256_file(model / artifacts.WEIGHTS_FILE)
    config = {"arch": "lite0", "head": "linear", "classes": classes, "weights_sha256": digest}
    (model / artifacts.CONFIG_FILE).write_text(json.dumps(config))
    with registry.TrainingRun(f"cache-test-{len(classes)}") as run:
        return run.register(model, {"weights_sha256": digest})


def served_classes(version: str) -> list[str]:
    return json.loads((registry.fetch_version(version) / artifacts.CONFIG_FILE).read_text())["classes"]


def registry_at(folder: Path, cache: Path):
    return override_settings(
        MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
        MLFLOW_ARTIFACT_ROOT=(folder / "artifacts").as_uri(),
        MODEL_CACHE_DIR=cache,
        MODEL_NAME="cache-test",
    )


@pytest.mark.django_db
def test_two_registries_sharing_one_cache_folder_each_serve_their_own_version_1(tmp_path):
    cache = tmp_path / "shared-cache"
    fifteen = [f"class-{i}" for i in range(15)]
    five = ["shirts", "tops", "watches", "handbags", "casual_shoes"]
    with registry_at(tmp_path / "first", cache):
        assert register(tmp_path / "first", fifteen) == "1"
        assert served_classes("1") == fifteen
    with registry_at(tmp_path / "second", cache):  # another registry (or this one re-created)
        assert register(tmp_path / "second", five) == "1"
        assert served_classes("1") == five
    with registry_at(tmp_path / "first", cache):
        assert served_classes("1") == fifteen
    assert len(list((cache / "cache-test" / "versions").iterdir())) == 2

    # The registry away: the copy this number last resolved to serves (the second registry's, asked last).
    with registry_at(tmp_path / "second", cache):
        served_classes("1")
    with registry_at(tmp_path / "nowhere" / "missing", cache):
        assert served_classes("1") == five


@pytest.mark.django_db
def test_a_cached_copy_that_does_not_match_the_registry_is_fetched_again(tmp_path):
    cache = tmp_path / "cache"
    with registry_at(tmp_path / "registry", cache):
        register(tmp_path / "registry", ["tops", "watches"])
        folder = registry.fetch_version("1")
        config = json.loads((folder / artifacts.CONFIG_FILE).read_text())
        (folder / artifacts.CONFIG_FILE).write_text(json.dumps({**config, "weights_sha256": "0" * 64, "classes": []}))
        assert served_classes("1") == ["tops", "watches"]
