import re
import shutil
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reviews import services

SAFE_CLASS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Command(BaseCommand):
    help = (
        "Write every reviewed photo (confirmed or corrected) into DIR/<final class>/ as an ImageFolder, "
        "the form `train --data` reads."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", help="target folder (created if missing; existing files are kept)")

    def handle(self, *args, **options):
        target = Path(options["directory"])
        counts = Counter()
        skipped = 0
        for photo in services.reviewed_photos():
            if not SAFE_CLASS.match(photo.final_class):
                self.stderr.write(
                    self.style.WARNING(f"image {photo.image_id}: class {photo.final_class!r} is not a folder name")
                )
                skipped += 1
                continue
            if not photo.path.is_file():
                self.stderr.write(self.style.WARNING(f"image {photo.image_id}: stored file is missing"))
                skipped += 1
                continue
            folder = target / photo.final_class
            try:
                folder.mkdir(parents=True, exist_ok=True)
                destination = folder / photo.path.name  # stored photos are named by their SHA-256
                if not destination.exists():
                    shutil.copyfile(photo.path, destination)
            except OSError as exc:
                raise CommandError(f"cannot write to {folder}: {exc}") from exc
            counts[photo.final_class] += 1
        for name, count in sorted(counts.items()):
            self.stdout.write(f"{name}: {count}")
        self.stdout.write(
            self.style.SUCCESS(f"Exported {sum(counts.values())} reviewed photos to {target}")
            + (f" ({skipped} skipped)" if skipped else "")
        )
