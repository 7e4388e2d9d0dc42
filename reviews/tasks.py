"""The weekly retrain, called by django-q2 from the `weekly-retrain` schedule (RETRAIN_CRON)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from batches.models import BatchRun
from classifier.models import Retrain

from . import services

logger = logging.getLogger(__name__)

# A retrain task may run this long (the schedule passes it to django-q2 as the task's timeout); a
# `running` record older than this belongs to a worker that died.
RETRAIN_TIMEOUT_SECONDS = 3 * 3600


def weekly_retrain(trigger: str = "schedule") -> int:
    """Train on the default training folders plus every settled review (latest decision of each;
    none of our categories and unusable left out), promote only through the gate on every
    EVAL_DATA_DIR folder, and record the outcome; never beside a batch run or another retrain."""
    busy = why_not_now()
    if busy:
        logger.warning("weekly retrain skipped: %s", busy)
        now = timezone.now()
        return Retrain.objects.create(
            trigger=trigger, outcome=Retrain.Outcome.SKIPPED, reason=busy, finished_at=now, started_at=now
        ).pk
    from classifier import services as model_services
    from classifier.datasets import list_image_folders
    from classifier.training import TrainConfig

    data_dirs = [Path(folder) for folder in settings.TRAIN_DATA_DIR]
    try:
        classes, _ = list_image_folders(data_dirs, max_per_class=0)
    except (FileNotFoundError, ValueError) as exc:
        now = timezone.now()
        return Retrain.objects.create(
            trigger=trigger, outcome=Retrain.Outcome.FAILED, reason=f"TRAIN_DATA_DIR: {exc}", finished_at=now
        ).pk
    reviewed, _ = services.training_samples(classes)
    record = model_services.retrain(
        data_dirs,
        [Path(folder) for folder in settings.EVAL_DATA_DIR],
        TrainConfig(epochs=0, unfreeze=0, max_per_class=settings.RETRAIN_MAX_PER_CLASS),
        trigger=trigger,
        actor=f"retrain ({trigger})",
        extra_samples=reviewed,
    )
    return record.pk


def why_not_now() -> str:
    """Why a retrain must not start now ("" when it may): a batch run holds the machine's cores,
    or another retrain is under way (a re-delivered task)."""
    running = BatchRun.objects.running().first()
    if running is not None:
        return (
            f"batch run {running.pk} is running; the retrain waits for next week's schedule (or run bin/manage retrain)"
        )
    stale = timezone.now() - timedelta(seconds=RETRAIN_TIMEOUT_SECONDS)
    Retrain.objects.filter(outcome=Retrain.Outcome.RUNNING, started_at__lt=stale).update(
        outcome=Retrain.Outcome.FAILED, reason="its worker stopped before it finished", finished_at=timezone.now()
    )
    other = Retrain.objects.filter(outcome=Retrain.Outcome.RUNNING).first()
    if other is not None:
        return f"retrain {other.pk} started at {other.started_at:%Y-%m-%d %H:%M} is still running"
    return ""
