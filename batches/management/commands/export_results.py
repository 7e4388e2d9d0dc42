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
            raise CommandError(
                f"no run {options['run']}: see the runs page or the admin for run ids"
                if options["run"]
                else "no runs yet: start one with manage.py run_batch"
            )
        write = exports.write_csv if options["format"] == "csv" else exports.write_jsonl
        if options["output"]:
            try:
                with open(options["output"], "w", newline="", encoding="utf-8") as stream:
                    write(exports.result_rows(run), stream)
            except OSError as exc:
                raise CommandError(f"cannot write {options['output']}: {exc.strerror}") from exc
        else:
            write(exports.result_rows(run), sys.stdout)
