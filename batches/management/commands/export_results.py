import sys

from django.core.management.base import BaseCommand, CommandError

from batches import exports
from batches.models import BatchRun


class Command(BaseCommand):
    help = "Write a run's results (one row per photo) as CSV or JSON Lines."

    def add_arguments(self, parser):
        parser.add_argument("--run", type=int, help="run id (default: the latest run)")
        parser.add_argument("--format", choices=["csv", "jsonl"], default="csv")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args, **options):
        runs = BatchRun.objects.all()
        run = runs.filter(pk=options["run"]).first() if options["run"] else runs.first()
        if run is None:
            raise CommandError("no such run")
        write = exports.write_csv if options["format"] == "csv" else exports.write_jsonl
        if options["output"]:
            with open(options["output"], "w", newline="", encoding="utf-8") as stream:
                write(exports.result_rows(run), stream)
        else:
            write(exports.result_rows(run), sys.stdout)
