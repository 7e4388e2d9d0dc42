import json
import os

from django.core.management.base import BaseCommand, CommandError

from bench import review


class Command(BaseCommand):
    help = (
        "Measure the review desk through its own HTTP endpoints: pending items decided by one reviewer, then by "
        "4 at once, in a throw-away database; prints one JSON document (see docs/performance.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--items",
            type=int,
            default=int(os.environ.get("BENCH_REVIEW_ITEMS", "1000")),
            help="pending items per phase (default: BENCH_REVIEW_ITEMS or 1000)",
        )

    def handle(self, *args, **options):
        if options["items"] < 1:
            raise CommandError("--items must be at least 1")
        try:
            document = review.run(options["items"], progress=lambda line: self.stderr.write(line))
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(document, indent=2))
