"""Functions the django-q2 cluster calls by dotted path. Each is safe to run twice."""

from django.conf import settings
from django_q.tasks import async_task

from . import services
from .models import BatchRun


def process_run(run_id: int) -> None:
    """A slice of a run's work; re-queues itself while work remains, so no task outlives `timeout`."""
    if services.process_run(run_id, budget_seconds=settings.BATCH_TASK_SECONDS):
        async_task("batches.tasks.process_run", run_id, task_name=f"batch-run-{run_id}", group=f"run-{run_id}")


def nightly_batch() -> int | None:
    """Register what waits in the inbox, then classify every pending photo."""
    if settings.INBOX_DIR.is_dir():
        services.ingest_folder(settings.INBOX_DIR)
    run = services.start_batch_run(BatchRun.Trigger.SCHEDULE)
    services.enqueue_batch_run(run)
    return run.pk


def resume_stalled_runs() -> list[int]:
    return services.resume_stalled_runs()
