"""`setup_schedules`, extended with the weekly retrain (RETRAIN_CRON).

This app comes before `batches` in INSTALLED_APPS, so this command replaces the batches' one of
the same name (as `train` extends the classifier's): the nightly run and the stalled-run check are
the batches' own, which know nothing of reviews.
"""

from croniter import croniter
from django.conf import settings
from django.core.management.base import CommandError
from django_q.models import Schedule

from batches.management.commands import setup_schedules

from ...tasks import RETRAIN_TIMEOUT_SECONDS


class Command(setup_schedules.Command):
    help = setup_schedules.Command.help[:-1] + ", and the weekly retrain (RETRAIN_CRON; empty: none)."

    def handle(self, *args, **options):
        if settings.RETRAIN_CRON and not croniter.is_valid(settings.RETRAIN_CRON):
            raise CommandError(
                f"RETRAIN_CRON {settings.RETRAIN_CRON!r} is not a cron expression (five fields, e.g. '0 3 * * 0'; "
                "empty: no weekly retrain)"
            )
        super().handle(*args, **options)
        if not settings.RETRAIN_CRON:
            Schedule.objects.filter(name="weekly-retrain").delete()
            self.stdout.write("no weekly retrain (RETRAIN_CRON is empty)")
            return
        Schedule.objects.update_or_create(
            name="weekly-retrain",
            defaults={
                "func": "reviews.tasks.weekly_retrain",
                "schedule_type": Schedule.CRON,
                "cron": settings.RETRAIN_CRON,
                "repeats": -1,
                # A retrain outlasts the batch tasks' timeout.
                "kwargs": f"q_options={{'timeout': {RETRAIN_TIMEOUT_SECONDS}}}",
            },
        )
        self.stdout.write(f"weekly retrain at '{settings.RETRAIN_CRON}'")
