from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from classifier import services
from classifier.management import ModelVersionCommand, command_actor


class Command(ModelVersionCommand):
    help = "Point the 'production' alias at a model version (default: the 'staging' version)."

    def add_arguments(self, parser):
        parser.add_argument("--version", help="version number (default: the staging version)")
        parser.add_argument(
            "--data",
            default=settings.EVAL_DATA_DIR,
            help="labelled folder both versions are scored on; a candidate worse than production is refused "
            "(default: EVAL_DATA_DIR)",
        )
        parser.add_argument("--force", action="store_true", help="promote even if it scores worse")

    def handle(self, *args, **options):
        data = Path(options["data"]) if options["data"] else None
        try:
            change = services.promote(
                options["version"], command_actor("promote"), data_dir=data, force=options["force"]
            )
        except services.PromotionRefused as exc:
            raise CommandError(f"promotion refused: {exc}") from exc
        for problem in change.evaluation.get("problems", []):
            self.stderr.write(self.style.WARNING(f"forced past: {problem}"))
        figures = change.evaluation.get("candidate")
        scored = f" (accuracy {figures['accuracy']:.2%} on {figures['n']} photos)" if figures else ""
        self.stdout.write(
            self.style.SUCCESS(f"production: version {change.from_version or '(none)'} -> {change.to_version}{scored}")
        )
