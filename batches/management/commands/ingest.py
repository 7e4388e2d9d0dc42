import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from batches import ingest


class Command(BaseCommand):
    help = "Register every photo in a folder (default: INBOX_DIR). Scanning twice changes nothing."

    def add_arguments(self, parser):
        parser.add_argument("folder", nargs="?", default=None, help="folder to scan (default: INBOX_DIR)")

    def handle(self, *args, **options):
        folder = Path(options["folder"]) if options["folder"] else settings.INBOX_DIR
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a directory")
        with tqdm(desc="ingest", unit="file", dynamic_ncols=True, file=sys.stderr) as bar:
            result = ingest.ingest_folder(folder, on_file=lambda path, outcome: bar.update(1))
        self.stdout.write(
            f"{len(result.created)} new, {len(result.existing)} already registered, {len(result.rejected)} refused"
        )
        if result.unsettled:
            self.stdout.write(
                f"{len(result.unsettled)} changed in the last {settings.INBOX_SETTLE_SECONDS} s, "
                "maybe still being copied: left for the next scan"
            )
        if result.storage_full:
            self.stderr.write(
                self.style.ERROR("the media folder is full: the scan stopped, the rest stays in the inbox")
            )
        for name, rejection in result.rejected:
            self.stdout.write(self.style.WARNING(f"  refused {name}: {rejection.reason} ({rejection.detail})"))
