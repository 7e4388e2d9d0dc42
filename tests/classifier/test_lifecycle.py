"""train, evaluate, promote, rollback, bootstrap_model: real training, a real MLflow registry."""

import io
import json
import os

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings

from classifier import inference, registry, services, training
from classifier.models import AliasChange
from tests.helpers import DATASET, make_user, require_dataset


def run_command(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def small_folder(tmp_path, split="val", classes=("jeans", "sunglasses", "watches"), per_class=6):
    """An ImageFolder of links to a few development photos (the photos themselves stay where they are)."""
    require_dataset()
    for name in classes:
        (tmp_path / name).mkdir(parents=True)
        for path in sorted((DATASET / split / name).glob("*.jpg"))[:per_class]:
            os.symlink(path, tmp_path / name / path.name)
    return tmp_path


class IsolatedRegistry(TestCase):
    """Each test gets its own registered model name, so aliases never leak between tests."""

    @pytest.fixture(autouse=True)
    def _isolate(self, request, tmp_path):
        self.tmp_path = tmp_path
        name = f"test-{request.node.name}".replace("_", "-")[:60]
        with override_settings(MODEL_NAME=name, MODEL_CACHE_DIR=tmp_path / "cache"):
            inference.forget_loaded()
            yield
        inference.forget_loaded()


class TrainCommandTests(IsolatedRegistry):
    def test_it_trains_registers_and_points_staging_at_the_new_version(self):
        data = small_folder(self.tmp_path / "train", split="train", per_class=10)
        out = run_command(
            "train", "--data", str(data), "--epochs", "1", "--unfreeze", "1", "--holdout", "0.2", "--json"
        )
        summary = json.loads(out)
        assert registry.alias_version("staging") == summary["version"]
        assert registry.alias_version("production") is None  # promotion is a separate, deliberate step
        assert summary["n_train"] + summary["n_holdout"] == 30
        info = registry.describe_version(summary["version"])
        assert info.tags["arch"] == "lite0" and not info.demo
        run = registry.client().get_run(info.run_id)
        assert run.data.params["epochs"] == "1"
        assert "holdout_accuracy" in run.data.metrics and "train_loss" in run.data.metrics
        classes = json.loads(
            open(registry.client().download_artifacts(info.run_id, "classes.json", str(self.tmp_path))).read()
        )
        assert classes == ["jeans", "sunglasses", "watches"]
        change = AliasChange.objects.get()
        assert (change.alias, change.to_version, change.action) == ("staging", summary["version"], "train")

    def test_it_explains_a_missing_folder(self):
        with pytest.raises(CommandError, match="not a directory"):
            run_command("train", "--data", str(self.tmp_path / "nowhere"))


class LifecycleTests(IsolatedRegistry):
    def register_probe(self, data, rotate_classes=False) -> str:
        result = training.train(data, training.TrainConfig(epochs=0, unfreeze=0, holdout=0))
        config = dict(result.config)
        if rotate_classes:  # a deliberately wrong model: every class name shifted by one
            config["classes"] = config["classes"][1:] + config["classes"][:1]
        return services.register_model(result.model, config, run_name="t", params={}, history=[]).version

    def test_evaluate_json_reports_accuracy_per_class_and_confusion(self):
        train = small_folder(self.tmp_path / "train", split="train", per_class=8)
        val = small_folder(self.tmp_path / "val", split="val", per_class=5)
        version = self.register_probe(train)
        report = json.loads(run_command("evaluate", "--data", str(val), "--version", version, "--json"))
        assert {"accuracy", "per_class", "confusion_matrix", "classes", "n"} <= set(report)
        assert report["n"] == 15 and report["classes"] == ["jeans", "sunglasses", "watches"]
        assert set(report["per_class"]["jeans"]) == {"precision", "recall", "support"}
        assert sum(map(sum, report["confusion_matrix"])) == 15
        assert report["accuracy"] > 0.6  # three easy classes, real features

    def test_promote_moves_production_and_rollback_moves_it_back(self):
        train = small_folder(self.tmp_path / "train", split="train", per_class=5)
        first, second = self.register_probe(train), self.register_probe(train)
        registry.set_alias("staging", first)
        run_command("promote")
        registry.set_alias("staging", second)
        run_command("promote")
        assert registry.alias_version("production") == second
        run_command("rollback")
        assert registry.alias_version("production") == first
        actions = list(
            AliasChange.objects.filter(alias="production")
            .order_by("id")
            .values_list("action", "from_version", "to_version")
        )
        assert actions == [("promote", "", first), ("promote", first, second), ("rollback", second, first)]
        with pytest.raises(CommandError, match="no earlier production version"):
            run_command("rollback")

    def test_promote_refuses_a_worse_candidate_unless_forced(self):
        train = small_folder(self.tmp_path / "train", split="train", per_class=6)
        val = small_folder(self.tmp_path / "val", split="val", per_class=4)
        good, bad = self.register_probe(train), self.register_probe(train, rotate_classes=True)
        run_command("promote", "--version", good)
        with pytest.raises(CommandError, match="promotion refused: accuracy"):
            run_command("promote", "--version", bad, "--data", str(val))
        assert registry.alias_version("production") == good
        run_command("promote", "--version", bad, "--data", str(val), "--force")
        assert registry.alias_version("production") == bad
        forced = AliasChange.objects.filter(action="forced_promote").get()
        assert forced.evaluation["candidate_accuracy"] < forced.evaluation["production_accuracy"]


class BootstrapTests(IsolatedRegistry):
    def test_without_data_it_registers_the_demo_model_flagged_as_demo(self):
        with override_settings(TRAIN_DATA_DIR=""):
            run_command("bootstrap_model")
        version = registry.alias_version("production")
        assert registry.describe_version(version).demo
        classifier = inference.get_classifier()
        assert classifier.demo and len(classifier.classes) == 15
        jeans = sorted((DATASET / "val" / "jeans").glob("*.jpg"))[:5]
        outcomes = classifier.classify_files(jeans)
        assert sum(o.predicted_class == "jeans" for o in outcomes) >= 4
        health = self.client.get("/health").json()
        assert health["status"] == "degraded" and health["model"]["demo"] is True
        cache.clear()
        self.client.force_login(make_user("operator", "operators"))
        assert "Demo model (version" in self.client.get("/").content.decode()

    def test_with_data_it_fits_a_linear_probe_and_is_idempotent(self):
        data = small_folder(self.tmp_path / "train", split="train", per_class=4)
        run_command("bootstrap_model", "--data", str(data))
        version = registry.alias_version("production")
        assert not registry.describe_version(version).demo
        assert registry.alias_version("staging") == version
        assert "already version" in run_command("bootstrap_model", "--data", str(data))
        assert registry.alias_version("production") == version
