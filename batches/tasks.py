"""Functions the django-q2 cluster calls by dotted path. Each is safe to run twice."""

import logging

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from . import engine, ingest, services
from .models import BatchRun

logger = logging.getLogger(__name__)


def process_run(run_id: int) -> None:
    """A slice of a run's work; re-queues itself while work remains, so no task outlives `timeout`."""
    try:
        more = engine.process_run(run_id, budget_seconds=settings.BATCH_TASK_SECONDS)
    except (OperationalError, InterfaceError) as exc:
        # The database restarted under the run: wait for it (within this task's time), then go on.
        logger.warning("run %s: database unavailable (%s); waiting for it", run_id, exc)
        if not engine.wait_for_database(settings.BATCH_TASK_SECONDS):
            raise
        more = True
    if more:
        services.queue_run_task(run_id)


def nightly_batch() -> int | None:
    """Register what waits in the inbox, then classify every pending photo; when the previous
    nightly run still runs, only say so (a skipped run in the history)."""
    skipped = services.skip_nightly_if_running()
    if skipped is not None:
        return skipped.pk
    if settings.INBOX_DIR.is_dir():
        ingest.ingest_folder(settings.INBOX_DIR)
    return services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE).pk


def resume_stalled_runs() -> list[int]:
    return services.resume_stalled_runs()


def worker_started(sender, proc_name: str, **kwargs) -> None:
    """A qcluster worker was (re)born: give every running run a task (see BatchesConfig.ready)."""
    from django_q.conf import Conf

    if Conf.SYNC:  # tasks run inline in the caller's process: no worker was born
        return
    try:
        services.resume_running_runs()
    except DatabaseError:  # the database is down: the stalled-run check resumes them later
        logger.exception("could not re-queue running runs at worker start")
