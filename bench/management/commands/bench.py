import json
import os

from django.core.management.base import BaseCommand, CommandError

from bench import benchmark


class Command(BaseCommand):
    help = (
        "Measure the batch path on the development photos and on 1280x960 copies of them, in a throw-away "
        "database; prints one JSON document (see docs/performance.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--photos",
            type=int,
            default=int(os.environ.get("BENCH_PHOTOS", "1000")),
            help="photos per set (default: BENCH_PHOTOS or 1000)",
        )
        parser.add_argument("--naive-photos", type=int, default=100, help="photos for the naive path (it is slow)")
        parser.add_argument("--no-accuracy", action="store_true", help="skip scoring the model on EVAL_DATA_DIR")
        parser.add_argument(
            "--reference-photos",
            type=int,
            default=256,
            help="photos per pass of the fp32 EfficientNet-B0 reference (median of 3 passes)",
        )
        parser.add_argument(
            "--compare",
            nargs="*",
            default=os.environ.get("BENCH_COMPARE", "").split(),
            metavar="ALIAS",
            help="registry aliases whose versions are measured beside production's on the same photos, "
            "e.g. a candidate at another input size under staging (default: BENCH_COMPARE)",
        )

    def handle(self, *args, **options):
        from classifier import inference

        if options["photos"] < 1:
            raise CommandError("--photos must be at least 1")
        try:
            document = benchmark.run(
                options["photos"],
                min(options["naive_photos"], options["photos"]),
                accuracy=not options["no_accuracy"],
                progress=lambda line: self.stderr.write(line),
                compare=tuple(options["compare"]),
                reference_photos=max(benchmark.REFERENCE_BATCH, options["reference_photos"]),
            )
        except (inference.ModelUnavailable, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(document, indent=2))
