import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from batches import engine, services
from batches.models import BatchRun


class Command(BaseCommand):
    help = "Classify every pending photo now, in this process, with a progress bar (or --enqueue it)."

    def add_arguments(self, parser):
        parser.add_argument("--enqueue", action="store_true", help="hand the run to the qcluster instead")

    def handle(self, *args, **options):
        start = services.start_and_enqueue_run if options["enqueue"] else services.start_batch_run
        try:
            run = start(BatchRun.Trigger.COMMAND)
        except services.NoModel as exc:
            raise CommandError(f"no production model: {exc}. Run: manage.py bootstrap_model") from exc
        self.stdout.write(f"Run {run.pk}: {run.total} photos, model version {run.model_version}")
        if options["enqueue"]:
            self.stdout.write("queued for the qcluster")
            return
        with tqdm(total=run.total, desc=f"run {run.pk}", unit="img", dynamic_ncols=True, file=sys.stderr) as bar:
            engine.process_run(run.pk, on_chunk=lambda chunk: bar.update(chunk.claimed))
        run.refresh_from_db()
        self.print_summary(run)

    def print_summary(self, run: BatchRun) -> None:
        if run.status == BatchRun.Status.FAILED:
            raise CommandError(f"run {run.pk} failed: {run.error}")
        if not run.is_finished:
            counts = run.counts()
            self.stdout.write(f"{counts['pending']} photos are still being processed by other workers")
            return
        speed = f", {run.images_per_second:.1f} img/s" if run.images_per_second else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Run {run.pk} {run.get_status_display().lower()}: {run.n_predicted} classified, "
                f"{run.n_failed} failed, {run.n_review} sent to review, in {run.duration_seconds:.1f} s{speed}"
            )
        )
        for name, count in sorted(run.class_counts.items(), key=lambda item: -item[1]):
            self.stdout.write(f"  {name:<16} {count}")
        for reason, count in run.failure_counts().items():
            self.stdout.write(self.style.WARNING(f"  failed: {reason:<18} {count}"))
