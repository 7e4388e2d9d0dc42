"""`manage.py workers`: the task queue (django-q2's qcluster) with its own /metrics."""

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Start the task queue (django-q2's qcluster: the nightly run, the runs started from the pages) "
        "and, with WORKER_METRICS_PORT set, serve its workers' metrics at http://WORKER_METRICS_ADDR:PORT/metrics."
    )

    def handle(self, *args, **options):
        if settings.WORKER_METRICS_PORT:
            self.serve_metrics()
        call_command("qcluster")

    def serve_metrics(self) -> None:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        folder = settings.PROMETHEUS_MULTIPROC_DIR
        if not folder:
            raise CommandError(
                "WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR: the workers are separate processes "
                "whose counters meet in that folder (give the workers a folder of their own)"
            )
        # Counters from an earlier start describe dead processes.
        for entry in Path(folder).glob("*.db"):
            entry.unlink(missing_ok=True)
        Path(folder).mkdir(parents=True, exist_ok=True)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        try:
            start_http_server(settings.WORKER_METRICS_PORT, addr=settings.WORKER_METRICS_ADDR, registry=registry)
        except OSError as exc:
            raise CommandError(
                f"cannot serve the workers' metrics on {settings.WORKER_METRICS_ADDR}:{settings.WORKER_METRICS_PORT}: "
                f"{exc.strerror} (set WORKER_METRICS_PORT to a free port, or 0 for none)"
            ) from None
        self.stdout.write(
            f"workers' metrics at http://{settings.WORKER_METRICS_ADDR}:{settings.WORKER_METRICS_PORT}/metrics"
        )
