"""The model lifecycle: registering trained models and moving the registry's aliases.

Every alias move is written to AliasChange, so `rollback` knows where production was.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import AliasChange, Retrain

if TYPE_CHECKING:  # training imports torch: only where a model is fitted
    from .training import TrainConfig, TrainResult

logger = logging.getLogger(__name__)

PRODUCTION = "production"
STAGING = "staging"
# A candidate may lose at most this much recall on any class against production...
MAX_CLASS_RECALL_DROP = 0.03
# ...judged on classes with at least this many photos in the folder: below it one photo moves the
# recall by more than 10 points, which is chance, not a regression (those photos still count in the
# accuracy). Found by the flywheel: the real val folder's 2 tops refused every retrain.
MIN_CLASS_SUPPORT = 10


class PromotionRefused(Exception):
    """The candidate scores worse than production; --force overrides. `evaluation`: the figures."""

    def __init__(self, message: str, evaluation: dict | None = None):
        super().__init__(message)
        self.evaluation = evaluation or {}


@dataclass
class Registered:
    version: str
    run_id: str


@dataclass
class Trained(Registered):
    result: TrainResult


# Accuracy is in the per-epoch history already.
REPORT_METRICS = ("ece", "ece_uncalibrated", "auto_accept_rate", "auto_accept_precision")


def register_model(
    model,
    config: dict,
    *,
    run_name: str,
    params: dict,
    history: list[dict],
    reports: dict[str, dict] | None = None,
    manifest: list[dict] | None = None,
    extra_tags: dict | None = None,
    int8_photos: list[Path] | None = None,
    int8_routing: tuple[list[tuple[Path, int]], Callable] | None = None,
    progress: Callable[[dict], None] | None = None,
) -> Registered:
    """Log a trained (or demo) model to MLflow and register it as a new version.

    `reports` (by data set: "holdout", "val") are logged as JSON, metrics and a confusion
    matrix picture; `manifest` (class, file, SHA-256 per training photo) as CSV, with its digest
    as a tag and a parameter. `int8_photos` (training photos) calibrate an int8 ONNX network
    stored with the version for the CPU serving path (classifier.runtimes); `int8_routing`
    (held-out photos, fit function) refits the routing policy on that network's outputs.
    `progress` receives the int8 build's steps and a note as each later step starts.
    """
    from . import artifacts, datasets, int8, plots, registry, runtimes

    def note(text: str) -> None:
        if progress:
            progress({"stage": "note", "text": text})

    tags = {"arch": config["arch"], "head": config["head"], "demo": "true" if config.get("demo") else "false"}
    tags.update(extra_tags or {})
    with registry.TrainingRun(run_name) as run, tempfile.TemporaryDirectory() as tmp:
        note("logging the recipe, figures and confusion matrices to MLflow (a few seconds)")
        if manifest:
            digest = datasets.manifest_digest(manifest)
            params = {**params, "dataset_manifest_sha256": digest}
            tags["dataset_manifest_sha256"] = digest
            run.log_text(datasets.manifest_csv(manifest), "dataset_manifest.csv")
        run.log_params(params)
        for record in history:
            run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        run.log_json(config["classes"], "classes.json")
        for name, report in (reports or {}).items():
            run.log_json(report, f"{name}_report.json")
            run.log_metrics({f"{name}_{key}": report.get(key) for key in REPORT_METRICS})
            picture = plots.confusion_matrix_image(report["classes"], report["confusion_matrix"], f"{name} photos")
            run.log_image(picture, f"confusion_matrix_{name}.png")
        run.set_tags(tags)
        if int8_photos:
            entry = int8.build_int8(model, config, int8_photos, Path(tmp) / "model", int8_routing, progress)
            if entry:
                config = {**config, "runtimes": {runtimes.ONNX_INT8: entry}}
        note("saving the network and registering the version in MLflow (about 10 s)")
        saved = artifacts.save_model_dir(model, config, Path(tmp) / "model")
        run.log_json(saved, "serving_config.json")
        version = run.register(Path(tmp) / "model", {**tags, "weights_sha256": saved["weights_sha256"]})
    return Registered(version=version, run_id=run.run_id)


def train_and_register(
    data_dirs: list[Path],
    cfg: TrainConfig,
    *,
    run_name: str,
    actor: str,
    action: str,
    aliases: Iterable[str] = (STAGING,),
    extra_samples: list[tuple[Path, int]] = (),
    extra_params: dict | None = None,
    eval_dirs: list[Path] = (),
    build_int8: bool = True,
    progress: Callable[[dict], None] = lambda event: None,
) -> Trained:
    """Train on ImageFolders with the recipe `cfg`, register the result as a new version with
    what it was trained on (each folder's path, photo count and manifest digest) and how it
    scored, and point `aliases` at it.

    `extra_samples` ((photo, class index), e.g. reviewers' decisions) are trained on, never held out;
    `extra_params` are logged beside the recipe. Every folder of `eval_dirs` is scored after every
    epoch (`val_<folder>_accuracy`), never trained on.
    """
    from . import training

    result = training.train(data_dirs, cfg, progress, extra_samples=extra_samples, eval_dirs=eval_dirs)
    if build_int8:
        progress({"stage": "int8", "photos": len(result.int8_photos)})
    params = {
        **asdict(cfg),
        "data": ",".join(folder["path"] for folder in result.folders),
        "val_data": ",".join(str(folder) for folder in eval_dirs),
        **{
            f"data_{folder['label']}_{key}": folder[key]
            for folder in result.folders
            for key in ("n", "n_holdout", "repeat", "sha256")
        },
        **(extra_params or {}),
        "n_train": result.n_train,
        "n_holdout": result.n_holdout,
        "classes": ",".join(result.config["classes"]),
        "train_seconds": round(result.seconds, 1),
    }
    reports = {"holdout": result.holdout_report, **result.eval_reports}
    registered = register_model(
        result.model,
        result.config,
        run_name=run_name,
        params=params,
        history=result.history,
        reports={name: report for name, report in reports.items() if report},
        manifest=result.manifest,
        extra_tags={"holdout_accuracy": str(result.history[-1]["holdout_accuracy"])},
        int8_photos=result.int8_photos if build_int8 else None,
        int8_routing=training.int8_routing(result, cfg),
        progress=progress,
    )
    for alias in aliases:
        move_alias(alias, registered.version, action, actor)
    return Trained(version=registered.version, run_id=registered.run_id, result=result)


def move_alias(
    alias: str, version: str, action: str, actor: str, evaluation: dict | None = None, note: str = ""
) -> AliasChange:
    from . import registry

    previous = registry.alias_version(alias)
    registry.set_alias(alias, version)
    with transaction.atomic():
        return AliasChange.objects.create(
            model_name=settings.MODEL_NAME,
            alias=alias,
            from_version=previous or "",
            to_version=version,
            action=action,
            actor=actor,
            evaluation=evaluation or {},
            note=note,
        )


def compare_reports(candidate: dict, production: dict) -> list[str]:
    """Why the candidate is worse than production on the same photos (empty: it is not)."""
    problems = []
    if candidate["accuracy"] < production["accuracy"]:
        problems.append(f"accuracy {candidate['accuracy']:.2%} < production {production['accuracy']:.2%}")
    for name, theirs in production["per_class"].items():
        if theirs.get("support", MIN_CLASS_SUPPORT) < MIN_CLASS_SUPPORT:
            continue  # too few of its photos were scored to tell
        ours = candidate["per_class"].get(name)
        if ours is None:
            problems.append(f"class {name!r} is missing")
        elif theirs["recall"] - ours["recall"] > MAX_CLASS_RECALL_DROP:
            problems.append(f"recall of {name} drops from {theirs['recall']:.2%} to {ours['recall']:.2%}")
    return problems


def evaluation_summary(report: dict) -> dict:
    """The figures of an evaluation kept in the audit table."""
    keys = ("accuracy", "n", "ece", "auto_accept_rate", "auto_accept_precision")
    return {key: report.get(key) for key in keys} | {
        "recall": {name: row["recall"] for name, row in report["per_class"].items()}
    }


def promote(version: str | None, actor: str, *, data_dirs: Iterable[Path] = (), force: bool = False) -> AliasChange:
    """Point production at a version (default: staging) after scoring it against production on
    the same labelled folders, each on its own; a candidate worse on any of them is refused
    unless forced. Without a folder to score on, only a forced promotion (or the very first
    one) goes through. The figures are kept by folder label (`datasets.folder_labels`)."""
    from . import inference, registry
    from .datasets import folder_labels, list_image_folder
    from .evaluation import evaluate

    version = version or registry.alias_version(STAGING)
    if version is None:
        raise PromotionRefused("no version given and no staging version exists")
    current = registry.alias_version(PRODUCTION)
    if current == version:
        raise PromotionRefused(f"version {version} is already in production")
    data_dirs = [Path(folder) for folder in data_dirs]
    evaluation: dict = {}
    if data_dirs:
        evaluation = {"data": [str(folder) for folder in data_dirs], "candidate": {}, "problems": []}
        challenger = inference.get_classifier(version)
        incumbent = inference.get_classifier(current) if current is not None else None
        # Both are scored on the photos of the classes both know (a version trained on some of
        # the classes is compared on those).
        known = [name for name in challenger.classes if incumbent is None or name in incumbent.classes]
        if incumbent is not None:
            dropped = [name for name in incumbent.classes if name not in challenger.classes]
            if dropped:
                evaluation["problems"].append(f"it does not know production's classes {', '.join(dropped)}")
        for label, folder in zip(folder_labels(data_dirs), data_dirs):
            folder_classes, _ = list_image_folder(folder, max_per_class=0)
            if not set(folder_classes) & set(known):
                raise PromotionRefused(
                    f"{folder} holds none of the classes version {version} is scored on ({', '.join(known)}): "
                    "pass --data with labelled folders of those classes"
                )
            candidate = evaluate(challenger, folder, only=known)
            evaluation["candidate"][label] = evaluation_summary(candidate)
            if candidate["classes_left_out"]:
                evaluation.setdefault("classes_left_out", {})[label] = candidate["classes_left_out"]
            if incumbent is not None:
                baseline = evaluate(incumbent, folder, only=known)
                evaluation.setdefault("production", {})[label] = evaluation_summary(baseline)
                evaluation["problems"] += [f"{label}: {problem}" for problem in compare_reports(candidate, baseline)]
    elif current is not None:
        evaluation = {"problems": ["no labelled folder to compare the candidate with production on"]}
    if evaluation.get("problems") and not force:
        raise PromotionRefused("; ".join(evaluation["problems"]), evaluation)
    action = AliasChange.Action.FORCED_PROMOTE if force else AliasChange.Action.PROMOTE
    return move_alias(PRODUCTION, version, action, actor, evaluation)


def rollback(actor: str) -> AliasChange:
    """Move production back to the version it pointed at before its last move."""
    from . import registry

    current = registry.alias_version(PRODUCTION)
    # The last move *to* the current version that was not itself a rollback: rolling back
    # twice walks further back instead of toggling between two versions.
    last_move = (
        AliasChange.objects.filter(model_name=settings.MODEL_NAME, alias=PRODUCTION, to_version=current)
        .exclude(from_version="")
        .exclude(action=AliasChange.Action.ROLLBACK)
        .first()
    )
    if current is None or last_move is None:
        raise PromotionRefused("there is no earlier production version to roll back to")
    return move_alias(PRODUCTION, last_move.from_version, AliasChange.Action.ROLLBACK, actor)


def retrain(
    data_dirs: list[Path],
    eval_dirs: list[Path],
    cfg: TrainConfig,
    *,
    trigger: str,
    actor: str,
    extra_samples: list[tuple[Path, int]] = (),
    progress: Callable[[dict], None] = lambda event: None,
) -> Retrain:
    """Train a candidate on `data_dirs` plus `extra_samples` (reviewers' decisions), point staging at
    it, and promote it only through the promotion gate on `eval_dirs`; record the outcome. A
    failure anywhere leaves production where it was."""
    from . import registry

    try:
        with transaction.atomic():
            record = Retrain.objects.create(
                trigger=trigger,
                reviewed_photos=len(extra_samples),
                production_version=registry.alias_version(PRODUCTION) or "",
            )
    except IntegrityError:  # another retrain started since the caller looked (one_retrain_running)
        now = timezone.now()
        return Retrain.objects.create(
            trigger=trigger,
            outcome=Retrain.Outcome.SKIPPED,
            reason="another retrain started at the same time and is still running",
            started_at=now,
            finished_at=now,
        )
    try:
        trained = train_and_register(
            data_dirs,
            cfg,
            run_name="retrain",
            actor=actor,
            action=AliasChange.Action.TRAIN,
            extra_samples=list(extra_samples),
            extra_params={"n_reviews": len(extra_samples), "recipe": "retrain"},
            eval_dirs=eval_dirs,
            progress=progress,
        )
        record.candidate_version = trained.version
        change = promote(trained.version, actor, data_dirs=eval_dirs)
        record.figures = change.evaluation
        record.outcome = Retrain.Outcome.PROMOTED
    except PromotionRefused as exc:
        record.outcome, record.reason = Retrain.Outcome.REFUSED, str(exc)
        record.figures = exc.evaluation
    except Exception as exc:  # anything else: production stays, the outcome says why
        logger.exception("retrain %s failed", record.pk)
        record.outcome, record.reason = Retrain.Outcome.FAILED, f"{type(exc).__name__}: {exc}"
    record.finished_at = timezone.now()
    record.save()
    logger.info("retrain %s: %s %s %s", record.pk, record.outcome, record.candidate_version, record.reason)
    return record
