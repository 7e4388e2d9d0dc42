"""train, evaluate, promote, rollback, bootstrap_model: real training, a real MLflow registry."""

import io
import json

import pytest
import torch
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import override_settings
from PIL import Image as PILImage

from classifier import inference, registry, services, training
from classifier.datasets import folder_label
from classifier.models import AliasChange
from tests.helpers import DATASET, REAL_DATASET, IsolatedRegistry, make_user, small_folder


def run_command(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


class TrainCommandTests(IsolatedRegistry):
    def test_it_trains_registers_and_points_staging_at_the_new_version(self):
        data = small_folder(self.tmp_path / "train", split="train", per_class=10)
        val = small_folder(self.tmp_path / "val", split="val", per_class=3)
        err = io.StringIO()
        out = io.StringIO()
        call_command(
            "train",
            "--data",
            str(data),
            "--val",
            str(val),
            "--epochs",
            "1",
            "--unfreeze",
            "1",
            "--holdout",
            "0.2",
            "--json",
            stdout=out,
            stderr=err,
        )
        summary = json.loads(out.getvalue())
        label = folder_label(val)
        assert set(summary["val_accuracy"]) == {label}
        # Progress: one line per epoch with loss, accuracies and the time left.
        assert "epoch 1/1: train loss" in err.getvalue() and f"val {label} accuracy" in err.getvalue()
        assert "ETA" in err.getvalue()
        assert registry.alias_version("staging") == summary["version"]
        assert registry.alias_version("production") is None  # promotion is a separate, deliberate step
        assert summary["n_train"] + summary["n_holdout"] == 30
        info = registry.describe_version(summary["version"])
        assert info.tags["arch"] == "lite0" and not info.demo
        run = registry.client().get_run(info.run_id)
        assert run.data.params["epochs"] == "1"
        assert run.data.params["data"] == str(data) and run.data.params["val_data"] == str(val)
        assert run.data.params[f"data_{folder_label(data)}_n"] == "30"
        assert len(run.data.params[f"data_{folder_label(data)}_sha256"]) == 64
        val_metrics = {f"val_{label}_accuracy", f"val_{label}_ece"}
        assert {"holdout_accuracy", "train_loss", "holdout_auto_accept_rate", *val_metrics} <= set(run.data.metrics)
        history = registry.client().get_metric_history(info.run_id, f"val_{label}_accuracy")
        assert [m.step for m in history] == [0, 1]  # after the probe and after the epoch
        artifacts = {a.path for a in registry.client().list_artifacts(info.run_id)}
        assert {
            "classes.json",
            "holdout_report.json",
            f"val_{label}_report.json",
            f"confusion_matrix_val_{label}.png",
            "dataset_manifest.csv",
            "serving_config.json",
        } <= artifacts
        manifest = open(registry.client().download_artifacts(info.run_id, "dataset_manifest.csv", str(self.tmp_path)))
        rows = manifest.read().splitlines()
        assert rows[0] == "folder,class,file,sha256" and len(rows) == 31
        assert len(run.data.params["dataset_manifest_sha256"]) == 64
        classes = json.loads(
            open(registry.client().download_artifacts(info.run_id, "classes.json", str(self.tmp_path))).read()
        )
        assert classes == ["jeans", "sunglasses", "watches"]
        # The routing policy fitted on the held-out photos travels with the version.
        routing = inference.get_classifier(summary["version"]).config["routing"]
        assert routing["temperature"] > 0 and set(routing["thresholds"]) == set(classes)
        assert routing["target_precision"] == 0.99 and routing["unknown"]["method"] == "max_logit"
        change = AliasChange.objects.get()
        assert (change.alias, change.to_version, change.action) == ("staging", summary["version"], "train")
        assert "manage.py train" in change.actor

    def test_the_same_seed_gives_the_same_model(self):
        data = small_folder(self.tmp_path / "train", split="train", per_class=8)
        cfg = training.TrainConfig(epochs=1, unfreeze=1, holdout=0.25, seed=3)
        first, second = training.train(data, cfg), training.train(data, cfg)
        assert [r["holdout_accuracy"] for r in first.history] == [r["holdout_accuracy"] for r in second.history]
        for name, tensor in first.model.state_dict().items():
            assert torch.equal(tensor, second.model.state_dict()[name]), name
        assert first.config["routing"] == second.config["routing"]

    def test_a_version_trained_at_a_smaller_input_size_serves_at_its_own_size(self):
        data = small_folder(self.tmp_path / "train", split="train", per_class=6)
        summary = json.loads(
            run_command("train", "--data", str(data), "--no-val", "--epochs", "0", "--input-size", "128", "--json")
        )
        classifier = inference.get_classifier(summary["version"])
        assert classifier.config["preprocessing"]["input_size"] == [3, 128, 128]
        assert classifier.runtime == "onnx-int8"  # the int8 network was built for 128 px too
        # A big camera photo is resized to the version's size, then classified.
        photo = self.tmp_path / "camera.jpg"
        PILImage.new("RGB", (1280, 960), (40, 90, 160)).save(photo, format="JPEG")
        (tensor,) = classifier.decode_many([photo])
        assert tuple(tensor.shape) == (3, 128, 128)
        (outcome,) = classifier.classify_files([photo, *sorted((data / "jeans").glob("*.jpg"))[:1]])[1:]
        assert outcome.predicted_class == "jeans"
        with pytest.raises(CommandError, match="32 px at least"):
            run_command("train", "--data", str(data), "--no-val", "--epochs", "0", "--input-size", "16")

    def test_it_explains_a_missing_folder(self):
        with pytest.raises(CommandError, match="not a directory"):
            run_command("train", "--data", str(self.tmp_path / "nowhere"))

    def test_catalogue_and_real_folders_train_together_and_are_scored_apart(self):
        # Catalogue photos of three classes, and a folder of real photos of two of them: the
        # model knows all three, the small folder counts for a fair share of each epoch, and
        # both kinds of held-out photos fit the routing.
        catalogue = small_folder(self.tmp_path / "catalogue" / "train", split="train", per_class=12)
        real = small_folder(
            self.tmp_path / "real" / "train",
            split="train",
            classes=("jeans", "shirts"),
            per_class=4,
            dataset=REAL_DATASET,
        )
        real_val = small_folder(
            self.tmp_path / "real" / "val", split="val", classes=("jeans",), per_class=3, dataset=REAL_DATASET
        )
        catalogue_val = small_folder(self.tmp_path / "catalogue" / "val", split="val", per_class=2)
        out = run_command(
            "train", "--data", str(catalogue), str(real), "--val", str(catalogue_val), str(real_val),
            "--epochs", "1", "--unfreeze", "1", "--holdout", "0.25", "--min-folder-share", "0.4", "--no-int8", "--json",
        )  # fmt: skip
        summary = json.loads(out)
        assert set(summary["val_accuracy"]) == {"catalogue", "real"}
        folders = {folder["label"]: folder for folder in summary["folders"]}
        assert (folders["catalogue"]["n"], folders["real"]["n"]) == (36, 8)
        # 6 real training photos beside 27 catalogue ones: seen 3 times per epoch, they make up 40% of it.
        assert folders["catalogue"]["repeat"] == 1 and folders["real"]["repeat"] == 3
        info = registry.describe_version(summary["version"])
        params = registry.client().get_run(info.run_id).data.params
        assert params["data_real_n"] == "8" and params["data_real_repeat"] == str(folders["real"]["repeat"])
        assert params["data_catalogue_sha256"] != params["data_real_sha256"]
        classifier = inference.get_classifier(summary["version"])
        assert classifier.classes == ["jeans", "shirts", "sunglasses", "watches"]
        assert classifier.config["routing"]["fitted_on"] == 9 + 2  # a quarter of each folder
        lines = run_command(
            "evaluate", "--version", summary["version"], "--data", str(catalogue_val), str(real_val), "--json"
        )
        reports = [json.loads(line) for line in lines.splitlines()]
        assert [(report["data"], report["n"]) for report in reports] == [(str(catalogue_val), 6), (str(real_val), 3)]


class LifecycleTests(IsolatedRegistry):
    def register_probe(self, data, rotate_classes=False) -> str:
        result = training.train(data, training.TrainConfig(epochs=0, unfreeze=0, holdout=0))
        config = dict(result.config)
        if rotate_classes:  # a deliberately wrong model: every class name shifted by one
            config["classes"] = config["classes"][1:] + config["classes"][:1]
        return services.register_model(result.model, config, run_name="t", params={}, history=[]).version

    def test_evaluate_json_reports_accuracy_per_class_calibration_and_routing(self):
        train = small_folder(self.tmp_path / "train", split="train", per_class=8)
        val = small_folder(self.tmp_path / "val", split="val", per_class=5)
        version = self.register_probe(train)
        report = json.loads(run_command("evaluate", "--data", str(val), "--version", version, "--json"))
        assert report["model_version"] == version
        assert report["n"] == 15 and report["classes"] == ["jeans", "sunglasses", "watches"]
        assert [row["support"] for row in report["per_class"].values()] == [5, 5, 5]
        matrix = report["confusion_matrix"]
        assert sum(map(sum, matrix)) == 15
        recall = matrix[0][0] / sum(matrix[0])  # jeans photos called jeans
        assert report["per_class"]["jeans"]["recall"] == pytest.approx(recall)
        assert report["accuracy"] > 0.6  # three easy classes, real features
        assert 0 <= report["ece"] <= 1 and 0 <= report["auto_accept_rate"] <= 1
        accepted = round(report["auto_accept_rate"] * 15)
        assert accepted + sum(report["review_reasons"].values()) == 15
        text = run_command("evaluate", "--data", str(val), "--version", version)
        assert "Calibration: ECE" in text and "accepted automatically" in text

    def test_promote_moves_production_and_rollback_moves_it_back(self):
        train = small_folder(self.tmp_path / "train", split="train", per_class=5)
        val = small_folder(self.tmp_path / "val", split="val", per_class=3)
        first, second = self.register_probe(train), self.register_probe(train)
        registry.set_alias("staging", first)
        run_command("promote", "--data", str(val))
        registry.set_alias("staging", second)
        run_command("promote", "--data", str(val))  # the same recipe: not worse
        assert registry.alias_version("production") == second
        run_command("rollback")
        assert registry.alias_version("production") == first
        actions = list(
            AliasChange.objects.filter(alias="production")
            .order_by("id")
            .values_list("action", "from_version", "to_version")
        )
        assert actions == [("promote", "", first), ("promote", first, second), ("rollback", second, first)]
        promoted = AliasChange.objects.filter(action="promote").order_by("id").last()
        label = folder_label(val)
        assert promoted.evaluation["candidate"][label]["n"] == 9 and label in promoted.evaluation["production"]
        assert all("manage.py" in change.actor for change in AliasChange.objects.all())
        with pytest.raises(CommandError, match="no earlier production version"):
            run_command("rollback")

    def test_promote_refuses_a_worse_candidate_unless_forced(self):
        train = small_folder(self.tmp_path / "train", split="train", per_class=6)
        val = small_folder(self.tmp_path / "val", split="val", per_class=4)
        good, bad = self.register_probe(train), self.register_probe(train, rotate_classes=True)
        run_command("promote", "--version", good, "--data", str(val))
        with pytest.raises(CommandError, match=f"promotion refused: {folder_label(val)}: accuracy"):
            run_command("promote", "--version", bad, "--data", str(val))
        assert registry.alias_version("production") == good
        run_command("promote", "--version", bad, "--data", str(val), "--force")
        assert registry.alias_version("production") == bad
        forced = AliasChange.objects.filter(action="forced_promote").get()
        label = folder_label(val)
        assert forced.evaluation["candidate"][label]["accuracy"] < forced.evaluation["production"][label]["accuracy"]
        assert forced.evaluation["problems"]

    def test_a_version_trained_on_some_of_the_classes_is_promoted_on_the_photos_of_those(self):
        three = small_folder(self.tmp_path / "three", split="train", per_class=6)
        two = small_folder(self.tmp_path / "two", split="train", classes=("jeans", "watches"), per_class=6)
        val = small_folder(self.tmp_path / "val", split="val", per_class=4)  # jeans, sunglasses, watches
        run_command("promote", "--version", self.register_probe(three), "--data", str(val))
        subset = self.register_probe(two)
        # Production would lose a class: refused unless forced, and scored all the same.
        with pytest.raises(CommandError, match="does not know production's classes sunglasses"):
            run_command("promote", "--version", subset, "--data", str(val))
        out = run_command("promote", "--version", subset, "--data", str(val), "--force")
        assert registry.alias_version("production") == subset
        assert "photos of sunglasses left out" in out
        change = AliasChange.objects.filter(to_version=subset).get()
        label = folder_label(val)
        assert change.evaluation["candidate"][label]["n"] == 8  # jeans and watches only
        assert change.evaluation["classes_left_out"] == {label: ["sunglasses"]}
        # A folder holding none of its classes: one line that says what to pass.
        other = small_folder(self.tmp_path / "other", split="val", classes=("belts",), per_class=2)
        with pytest.raises(CommandError, match="holds none of the classes .* pass --data"):
            run_command("promote", "--version", self.register_probe(two), "--data", str(other))

    def test_promote_without_a_folder_to_compare_on_is_refused_unless_forced(self):
        train = small_folder(self.tmp_path / "train", split="train", per_class=4)
        first, second = self.register_probe(train), self.register_probe(train)
        run_command("promote", "--version", first, "--data", "")  # the first production needs no comparison
        with pytest.raises(CommandError, match="no labelled folder"):
            run_command("promote", "--version", second, "--data", "")
        run_command("promote", "--version", second, "--data", "", "--force")
        assert registry.alias_version("production") == second

    def test_alias_moves_are_shown_in_the_admin_with_their_figures(self):
        train = small_folder(self.tmp_path / "train", split="train", per_class=4)
        val = small_folder(self.tmp_path / "val", split="val", per_class=2)
        version = self.register_probe(train)
        run_command("promote", "--version", version, "--data", str(val))
        change = AliasChange.objects.get()
        admin = make_user("admin-user", staff=True)
        admin.is_superuser = True
        admin.save()
        self.client.force_login(admin)
        listing = self.client.get("/admin/classifier/aliaschange/").content.decode()
        label = folder_label(val)
        assert f"{label} {change.evaluation['candidate'][label]['accuracy']:.2%}" in listing
        detail = self.client.get(f"/admin/classifier/aliaschange/{change.pk}/change/").content.decode()
        assert "candidate" in detail and "recall" in detail
        assert self.client.post("/admin/classifier/aliaschange/add/").status_code == 403


def report(accuracy, recalls):
    return {"accuracy": accuracy, "per_class": {name: {"recall": r} for name, r in recalls.items()}}


def test_the_gate_refuses_a_class_recall_drop_of_more_than_three_points():
    production = report(0.90, {"tops": 0.90, "belts": 1.0})
    assert services.compare_reports(report(0.92, {"tops": 0.88, "belts": 1.0}), production) == []
    problems = services.compare_reports(report(0.95, {"tops": 0.86, "belts": 1.0}), production)
    assert problems == ["recall of tops drops from 90.00% to 86.00%"]
    assert services.compare_reports(report(0.89, {"tops": 0.9, "belts": 1.0}), production)[0].startswith("accuracy")


def test_the_gate_judges_class_recall_only_on_classes_with_enough_photos():
    def scored(recalls):
        report = {"accuracy": 0.9, "per_class": {}}
        for name, (recall, support) in recalls.items():
            report["per_class"][name] = {"recall": recall, "support": support}
        return report

    production = scored({"tops": (0.5, 2), "shirts": (0.9, 40)})
    # One of two tops lost is chance; four points of forty shirts are not.
    assert services.compare_reports(scored({"tops": (0.0, 2), "shirts": (0.9, 40)}), production) == []
    problems = services.compare_reports(scored({"tops": (0.5, 2), "shirts": (0.85, 40)}), production)
    assert problems == ["recall of shirts drops from 90.00% to 85.00%"]


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
        assert "Demo model (version" in self.client.get("/upload/").content.decode()

    def test_with_data_it_fits_a_linear_probe_and_is_idempotent(self):
        data = small_folder(self.tmp_path / "train", split="train", per_class=4)
        run_command("bootstrap_model", "--data", str(data))
        version = registry.alias_version("production")
        assert not registry.describe_version(version).demo
        assert registry.alias_version("staging") == version
        assert "already version" in run_command("bootstrap_model", "--data", str(data))
        assert registry.alias_version("production") == version
