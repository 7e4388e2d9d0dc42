"""`setup_schedules`, extended with the weekly retrain (RETRAIN_CRON).

This app comes before `batches` in INSTALLED_APPS, so this command replaces the batches' one of
the same name (as `train` extends the classifier's): the nightly run and the stalled-run check are
the batches' own, which know nothing of reviews.
"""

from django.conf import settings
from django_q.models import Schedule

from batches.management.commands import setup_schedules

from ...tasks import RETRAIN_TIMEOUT_SECONDS


class Command(setup_schedules.Command):
    help = setup_schedules.Command.help[:-1] + ", and the weekly retrain (RETRAIN_CRON; empty: none)."

    def handle(self, *args, **options):
        if settings.RETRAIN_CRON:
            self.check_cron("RETRAIN_CRON", settings.RETRAIN_CRON, "e.g. '0 3 * * 0'; empty: no weekly retrain")
        super().handle(*args, **options)
        if not settings.RETRAIN_CRON:
            Schedule.objects.filter(name="weekly-retrain").delete()
            self.stdout.write("no weekly retrain (RETRAIN_CRON is empty)")
            return
        # A retrain outlasts the batch tasks' timeout.
        timeout = f"q_options={{'timeout': {RETRAIN_TIMEOUT_SECONDS}}}"
        self.install_cron("weekly-retrain", "reviews.tasks.weekly_retrain", settings.RETRAIN_CRON, kwargs=timeout)
        self.stdout.write(f"weekly retrain at '{settings.RETRAIN_CRON}'")
