import re
import shutil
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from batches.storage import media_path
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
        for image, final_class in services.reviewed_photos():
            if not SAFE_CLASS.match(final_class):
                self.stderr.write(self.style.WARNING(f"image {image.pk}: class {final_class!r} is not a folder name"))
                skipped += 1
                continue
            source = media_path(image.file.name)
            if not source.is_file():
                self.stderr.write(self.style.WARNING(f"image {image.pk}: stored file is missing"))
                skipped += 1
                continue
            folder = target / final_class
            try:
                folder.mkdir(parents=True, exist_ok=True)
                destination = folder / f"{image.sha256}{source.suffix.lower()}"
                if not destination.exists():
                    shutil.copyfile(source, destination)
            except OSError as exc:
                raise CommandError(f"cannot write to {folder}: {exc}") from exc
            counts[final_class] += 1
        for name, count in sorted(counts.items()):
            self.stdout.write(f"{name}: {count}")
        self.stdout.write(
            self.style.SUCCESS(f"Exported {sum(counts.values())} reviewed photos to {target}")
            + (f" ({skipped} skipped)" if skipped else "")
        )
