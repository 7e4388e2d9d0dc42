"""`manage.py retrain`: the weekly retrain now (reviews.tasks.weekly_retrain)."""

from django.core.management.base import BaseCommand, CommandError

from classifier.models import Retrain

from ...tasks import weekly_retrain


class Command(BaseCommand):
    help = (
        "Retrain now as the weekly schedule does: the training folders plus every settled review, the "
        "candidate promoted only if it passes the promotion gate on every EVAL_DATA_DIR folder (4-10 min on 2 cores)."
    )

    def handle(self, *args, **options):
        record = Retrain.objects.get(pk=weekly_retrain(trigger="command"))
        if record.outcome in (Retrain.Outcome.SKIPPED, Retrain.Outcome.FAILED):
            raise CommandError(f"retrain {record.pk} {record.outcome}: {record.reason}")
        self.stdout.write(
            f"retrain {record.pk}: version {record.candidate_version} {record.get_outcome_display().lower()}"
        )
        if record.reason:
            self.stdout.write(record.reason)
        for row in record.accuracy_rows():
            self.stdout.write(f"  accuracy {row['text']}")
