import re
import shutil
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reviews import services
from reviews.models import Outcome

SAFE_CLASS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Photos that are not one of our classes go to folders of their own, which training never reads as
# classes (a folder starting with "_" is not a class): for open-set tuning, and for retakes.
OTHER_FOLDERS = {Outcome.NONE_OF_OUR_CATEGORIES: "_none_of_our_categories", Outcome.UNUSABLE: "_unusable"}


class Command(BaseCommand):
    help = (
        "Write every settled review into DIR as an ImageFolder, the form `train --data` reads: confirmed or "
        "corrected photos into DIR/<final class>/, the others into DIR/_none_of_our_categories/ and DIR/_unusable/."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", help="target folder (created if missing; existing files are kept)")

    def handle(self, *args, **options):
        target = Path(options["directory"])
        try:  # found before any work, even with nothing to export
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot write to {target}: {exc.strerror}") from exc
        counts = Counter()
        skipped = 0
        for photo in services.reviewed_photos(outcomes=tuple(Outcome)):
            folder_name = OTHER_FOLDERS.get(photo.outcome, photo.final_class)
            if not SAFE_CLASS.match(photo.final_class) and photo.outcome not in OTHER_FOLDERS:
                self.stderr.write(
                    self.style.WARNING(f"image {photo.image_id}: class {photo.final_class!r} is not a folder name")
                )
                skipped += 1
                continue
            if not photo.path.is_file():
                self.stderr.write(self.style.WARNING(f"image {photo.image_id}: stored file is missing"))
                skipped += 1
                continue
            folder = target / folder_name
            try:
                folder.mkdir(parents=True, exist_ok=True)
                destination = folder / photo.path.name  # stored photos are named by their SHA-256
                if not destination.exists():
                    shutil.copyfile(photo.path, destination)
            except OSError as exc:
                raise CommandError(f"cannot write to {folder}: {exc}") from exc
            counts[folder_name] += 1
        for name, count in sorted(counts.items()):
            self.stdout.write(f"{name}: {count}")
        classes = sum(count for name, count in counts.items() if not name.startswith("_"))
        others = sum(counts.values()) - classes
        self.stdout.write(
            self.style.SUCCESS(f"Exported {classes} reviewed photos to {target}")
            + (f", and {others} that are not one of our classes" if others else "")
            + (f" ({skipped} skipped)" if skipped else "")
        )
