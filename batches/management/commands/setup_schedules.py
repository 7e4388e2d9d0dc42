from croniter import croniter
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_q.models import Schedule


class Command(BaseCommand):
    help = "Create or update the nightly batch and the stalled-run check (safe to rerun)."

    def handle(self, *args, **options):
        if not croniter.is_valid(settings.NIGHTLY_CRON):
            raise CommandError(
                f"NIGHTLY_CRON {settings.NIGHTLY_CRON!r} is not a cron expression (five fields, e.g. '0 2 * * *')"
            )
        Schedule.objects.update_or_create(
            name="nightly-batch",
            defaults={
                "func": "batches.tasks.nightly_batch",
                "schedule_type": Schedule.CRON,
                "cron": settings.NIGHTLY_CRON,
                "repeats": -1,
            },
        )
        Schedule.objects.update_or_create(
            name="resume-stalled-runs",
            defaults={
                "func": "batches.tasks.resume_stalled_runs",
                "schedule_type": Schedule.MINUTES,
                "minutes": 5,
                "repeats": -1,
            },
        )
        self.stdout.write(f"nightly batch at '{settings.NIGHTLY_CRON}'; stalled runs checked every 5 minutes")
