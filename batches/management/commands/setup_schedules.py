from croniter import croniter
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_q.models import Schedule


class Command(BaseCommand):
    help = "Create or update the nightly batch and the stalled-run check (safe to rerun)."

    def handle(self, *args, **options):
        self.check_cron("NIGHTLY_CRON", settings.NIGHTLY_CRON, "e.g. '0 2 * * *'")
        self.install_cron("nightly-batch", "batches.tasks.nightly_batch", settings.NIGHTLY_CRON)
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

    @staticmethod
    def check_cron(setting: str, value: str, hint: str) -> None:
        """Refuse a malformed cron line before any schedule changes."""
        if not croniter.is_valid(value):
            raise CommandError(f"{setting} {value!r} is not a cron expression (five fields, {hint})")

    @staticmethod
    def install_cron(name: str, func: str, cron: str, **defaults) -> None:
        """Create or update the schedule `name`: `func` at every `cron` time, forever."""
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.CRON, "cron": cron, "repeats": -1, **defaults},
        )
