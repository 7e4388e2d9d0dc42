"""The nightly schedule and the stalled-run check, installed by setup_schedules."""

import io

from django.core.management import call_command
from django.test import TestCase, override_settings
from django_q.models import Schedule


class ScheduleTests(TestCase):
    def test_setup_schedules_installs_the_nightly_run_once(self):
        with override_settings(NIGHTLY_CRON="30 3 * * *"):
            call_command("setup_schedules", stdout=io.StringIO())
            call_command("setup_schedules", stdout=io.StringIO())
        nightly = Schedule.objects.get(name="nightly-batch")
        assert (nightly.func, nightly.schedule_type, nightly.cron) == ("batches.tasks.nightly_batch", "C", "30 3 * * *")
        assert nightly.next_run.hour == 3 and nightly.next_run.minute == 30
        assert Schedule.objects.count() == 2
