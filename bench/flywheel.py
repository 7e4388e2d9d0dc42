"""The review flywheel, simulated (`manage.py simulate_reviews`): a labelled folder of returns is
sent as nights of returns through the real batch path; an oracle reviewer decides every photo
queued for review from its label (as the desk records decisions); the product's own weekly
retrain runs after each week; and the production model is judged after each week on a separate
labelled folder: the share it accepts automatically and the precision of what it accepts.

Everything happens in a throw-away database, a temporary media folder and a registered-model name
of its own (`<MODEL_NAME>-flywheel`), so the installation's production model is never touched.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.test import override_settings

from batches import engine, ingest, services
from batches.models import BatchRun, Image, Prediction
from classifier import inference, registry
from classifier import services as model_services
from classifier.datasets import list_image_folder
from classifier.evaluation import evaluate
from classifier.models import AliasChange, Retrain
from classifier.training import TrainConfig
from reviews import services as review_services
from reviews import tasks
from reviews.models import ReviewItem

from .benchmark import throwaway_database


def simulate(
    returns: Path,
    judge: Path,
    train_dirs: list[Path],
    eval_dirs: list[Path],
    *,
    weeks: int,
    nights: int,
    max_per_class: int,
    seed: int = 1,
    progress: Callable[[str], None] = lambda line: None,
) -> list[dict]:
    """One row per week (week 0: the first model, before any review)."""
    classes, samples = list_image_folder(returns)
    random.Random(seed).shuffle(samples)
    labels = {path: classes[index] for path, index in samples}
    per_night = -(-len(samples) // (weeks * nights))
    work = Path(tempfile.mkdtemp(prefix="flywheel-", dir=settings.VAR_DIR))
    overrides = override_settings(
        MEDIA_ROOT=str(work / "media"),
        MODEL_NAME=f"{settings.MODEL_NAME}-flywheel",
        MODEL_CACHE_DIR=work / "models",
        TRAIN_DATA_DIR=[str(folder) for folder in train_dirs],
        EVAL_DATA_DIR=[str(folder) for folder in eval_dirs],
        RETRAIN_MAX_PER_CLASS=max_per_class,
    )
    rows = []
    try:
        with overrides, throwaway_database():
            inference.forget_loaded()
            progress(f"week 0: the first model, trained on {', '.join(map(str, train_dirs))} only")
            first = model_services.train_and_register(
                train_dirs,
                TrainConfig(epochs=0, unfreeze=0, max_per_class=max_per_class),
                run_name="flywheel-week-0",
                actor="simulate_reviews",
                action=AliasChange.Action.BOOTSTRAP,
                aliases=(model_services.STAGING, model_services.PRODUCTION),
            )
            rows.append({"week": 0, "version": first.version, **judged(judge)})
            progress(f"week 0: {rows[-1]}")
            oracle = Oracle(labels)
            for week in range(1, weeks + 1):
                week_samples = samples[(week - 1) * nights * per_night : week * nights * per_night]
                arrived = []
                for night in range(nights):
                    tonight = week_samples[night * per_night : (night + 1) * per_night]
                    if tonight:
                        arrived += night_of_returns([path for path, _ in tonight])
                        oracle.decide_waiting()
                live = week_figures(arrived)
                record = Retrain.objects.get(pk=tasks.weekly_retrain(trigger="simulation"))
                inference.forget_loaded()
                rows.append(
                    {
                        "week": week,
                        "returns": live["photos"],
                        "auto_accepted_live": live["auto_accepted"],
                        "reviewed_total": record.reviewed_photos,
                        "retrain": record.outcome,
                        "reason": record.reason,
                        "version": registry.alias_version(model_services.PRODUCTION),
                        **judged(judge),
                    }
                )
                progress(f"week {week}: {rows[-1]}")
    finally:
        inference.forget_loaded()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def night_of_returns(paths: list[Path]) -> list[Image]:
    """The night's returns registered, then the nightly run over every photo without a result from
    the production version (after a promotion, the earlier returns too, as in the product)."""
    images = []
    for path in paths:
        with open(path, "rb") as stream:
            images.append(ingest.register_image(stream, path.name, Image.Source.INBOX)[0])
    run = services.start_batch_run(BatchRun.Trigger.SCHEDULE)
    while engine.process_run(run.pk):
        pass
    return images


def week_figures(arrived: list[Image]) -> dict:
    """The week's new returns and the share of them production accepted automatically on their night."""
    predictions = Prediction.objects.filter(image__in=arrived, batch_run__trigger=BatchRun.Trigger.SCHEDULE)
    first = {}
    for prediction in predictions.order_by("id"):
        first.setdefault(prediction.image_id, prediction)  # the night it arrived
    accepted = sum(1 for prediction in first.values() if not prediction.review_reason)
    return {"photos": len(arrived), "auto_accepted": round(accepted / len(first), 4) if first else None}


def judged(judge: Path) -> dict:
    """The production model on the judge folder: the share it accepts automatically, their
    precision, and its accuracy."""
    report = evaluate(inference.get_classifier(), judge)
    return {
        "judge_auto_accept_rate": round(report["auto_accept_rate"], 4),
        "judge_auto_accept_precision": round(report["auto_accept_precision"], 4)
        if report["auto_accept_precision"] is not None
        else None,
        "judge_accuracy": round(report["accuracy"], 4),
    }


class Oracle:
    """A reviewer who knows every return's label (a second one gives the second opinions)."""

    def __init__(self, labels: dict[Path, str]):
        from django.contrib.auth import get_user_model

        self.by_name = {path.name: label for path, label in labels.items()}
        users = get_user_model().objects
        self.first = users.create_user("oracle", is_staff=True)
        self.second = users.create_user("oracle-2", is_staff=True)

    def decide_waiting(self) -> None:
        decided: set[tuple[int, str]] = set()
        while True:
            waiting = list(ReviewItem.objects.waiting().select_related("prediction__image"))
            if not waiting:
                return
            if {(item.pk, item.status) for item in waiting} <= decided:
                raise RuntimeError(f"{len(waiting)} review items stay waiting after the oracle's decisions")
            decided |= {(item.pk, item.status) for item in waiting}
            for item in waiting:
                answer = self.by_name[item.prediction.image.original_name]
                second = item.status == ReviewItem.Status.SECOND_OPINION
                review_services.record_decision(item.pk, self.second if second else self.first, answer, source="desk")
