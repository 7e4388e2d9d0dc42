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
            nargs="+",
            default=settings.EVAL_DATA_DIR,
            help="labelled folders both versions are scored on, each on its own; a candidate worse than "
            "production on any of them is refused (default: EVAL_DATA_DIR)",
        )
        parser.add_argument("--force", action="store_true", help="promote even if it scores worse")

    def handle(self, *args, **options):
        from classifier import inference

        data = [Path(folder) for folder in options["data"] or () if folder]
        try:
            change = services.promote(
                options["version"], command_actor("promote"), data_dirs=data, force=options["force"]
            )
        except services.PromotionRefused as exc:
            raise CommandError(f"promotion refused: {exc}") from exc
        except inference.ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(f"cannot score the versions: {exc}") from exc
        for label, names in change.evaluation.get("classes_left_out", {}).items():
            self.stdout.write(f"{label}: photos of {', '.join(names)} left out (not classes of both versions)")
        for problem in change.evaluation.get("problems", []):
            self.stderr.write(self.style.WARNING(f"forced past: {problem}"))
        figures = change.evaluation.get("candidate") or {}
        scored = "; ".join(
            f"accuracy {row['accuracy']:.2%} on {row['n']} photos of {label}" for label, row in figures.items()
        )
        scored = f" ({scored})" if scored else ""
        self.stdout.write(
            self.style.SUCCESS(f"production: version {change.from_version or '(none)'} -> {change.to_version}{scored}")
        )
