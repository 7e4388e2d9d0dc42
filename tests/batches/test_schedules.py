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
        # Once each, beside the stalled-run check and the weekly retrain (tests/reviews/test_retrain.py).
        names = sorted(Schedule.objects.values_list("name", flat=True))
        assert names == ["nightly-batch", "resume-stalled-runs", "weekly-retrain"]


class NightlyGuardTests(TestCase):
    def test_the_nightly_run_does_not_start_beside_its_own_previous_run(self):
        from batches import tasks
        from batches.models import BatchRun

        running = BatchRun.objects.create(trigger="schedule", model_version="3", total=500)
        with self.assertLogs("batches.services", "WARNING") as logs:
            skipped_id = tasks.nightly_batch()
        skipped = BatchRun.objects.get(pk=skipped_id)
        assert skipped.status == BatchRun.Status.SKIPPED and skipped.is_finished and skipped.total == 0
        assert f"the nightly run {running.pk}" in skipped.error and "still running" in skipped.error
        assert "still running" in logs.output[0]
        assert list(BatchRun.objects.running()) == [running]

    def test_the_history_shows_the_skipped_night(self):
        from batches import tasks
        from batches.models import BatchRun
        from tests.helpers import make_user

        running = BatchRun.objects.create(trigger="schedule", model_version="3", total=500)
        tasks.nightly_batch()
        self.client.force_login(make_user("olga", "operators"))
        page = self.client.get("/runs/").content.decode()
        assert '<span class="status skipped">Skipped</span>' in page
        detail = self.client.get(f"/runs/{running.pk + 1}/").content.decode()
        assert f"the nightly run {running.pk}" in detail
