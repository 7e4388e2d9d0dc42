from pathlib import Path

from django.core.management.base import CommandError

from classifier import services
from classifier.management import ModelVersionCommand


class Command(ModelVersionCommand):
    help = "Point the 'production' alias at a model version (default: the 'staging' version)."

    def add_arguments(self, parser):
        parser.add_argument("--version", help="version number (default: the staging version)")
        parser.add_argument(
            "--data", help="labelled folder: refuse a candidate that scores worse than production on it"
        )
        parser.add_argument("--force", action="store_true", help="promote even if it scores worse")

    def handle(self, *args, **options):
        data = Path(options["data"]) if options["data"] else None
        try:
            change = services.promote(options["version"], "manage.py promote", data_dir=data, force=options["force"])
        except services.PromotionRefused as exc:
            raise CommandError(f"promotion refused: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(f"production: version {change.from_version or '(none)'} -> {change.to_version}")
        )
