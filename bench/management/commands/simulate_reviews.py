import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import flywheel


class Command(BaseCommand):
    help = (
        "Simulate the review flywheel in a throw-away database: a labelled folder of returns sent as nights "
        "through the batch path, an oracle reviewer deciding what is queued, the weekly retrain after each week, "
        "and the production model judged on another labelled folder after each week (docs/model.md)."
    )

    def add_arguments(self, parser):
        real = settings.SHARED_DATASETS / "refund-items-real"
        parser.add_argument("--returns", type=Path, default=real / "train", help="labelled folder of returns")
        parser.add_argument("--judge", type=Path, default=real / "val", help="labelled folder the model is judged on")
        parser.add_argument(
            "--train",
            type=Path,
            nargs="+",
            default=None,
            help="folders the first model and every retrain train on (default: TRAIN_DATA_DIR without --returns)",
        )
        parser.add_argument(
            "--eval",
            type=Path,
            nargs="+",
            default=None,
            help="folders of the promotion gate (default: EVAL_DATA_DIR)",
        )
        parser.add_argument("--weeks", type=int, default=4)
        parser.add_argument("--nights", type=int, default=5, help="nights of returns per week")
        parser.add_argument(
            "--max-per-class",
            type=int,
            default=settings.RETRAIN_MAX_PER_CLASS,
            help="training photos per class and folder (default: RETRAIN_MAX_PER_CLASS)",
        )
        parser.add_argument("--seed", type=int, default=1, help="order of the returns")

    def handle(self, *args, **options):
        returns, judge = options["returns"], options["judge"]
        train = options["train"] or [Path(f) for f in settings.TRAIN_DATA_DIR if Path(f).resolve() != returns.resolve()]
        evaluation = options["eval"] or [Path(f) for f in settings.EVAL_DATA_DIR]
        for folder in [returns, judge, *train, *evaluation]:
            if not folder.is_dir():
                raise CommandError(f"{folder} is not a directory")
        if returns.resolve() in {folder.resolve() for folder in train} or judge.resolve() == returns.resolve():
            raise CommandError("--returns must be neither trained on from the start nor the judge")
        if options["weeks"] < 1 or options["nights"] < 1:
            raise CommandError("--weeks and --nights must be at least 1")
        rows = flywheel.simulate(
            returns,
            judge,
            train,
            evaluation,
            weeks=options["weeks"],
            nights=options["nights"],
            max_per_class=options["max_per_class"],
            seed=options["seed"],
            progress=lambda line: self.stderr.write(line),
        )
        self.stdout.write(
            f"{'week':>4} {'returns':>7} {'auto-accepted':>13} {'reviews':>7} {'retrain':>9} {'version':>7} "
            f"{'judge: auto-accepted':>20} {'precision':>9} {'accuracy':>8}"
        )
        for row in rows:
            live = row.get("auto_accepted_live")
            precision = row["judge_auto_accept_precision"]
            self.stdout.write(
                f"{row['week']:>4} {row.get('returns', ''):>7} {'' if live is None else f'{live:.1%}':>13} "
                f"{row.get('reviewed_total', ''):>7} {row.get('retrain', ''):>9} {row['version']:>7} "
                f"{row['judge_auto_accept_rate']:>20.1%} {'' if precision is None else f'{precision:.1%}':>9} "
                f"{row['judge_accuracy']:>8.1%}"
            )
        self.stdout.write(json.dumps(rows))
