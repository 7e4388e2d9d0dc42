import argparse
import json
from dataclasses import fields
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from classifier import services
from classifier.datasets import list_image_folders
from classifier.management import command_actor
from classifier.management.progress import TrainingProgress, percent
from classifier.models import AliasChange
from classifier.training import TrainConfig


class Command(BaseCommand):
    """Training on labelled folders. The reviews app extends this command with reviewers' decisions
    (`extra_samples`); the model itself knows nothing of where extra photos come from."""

    help = "Fine-tune a model on an ImageFolder directory, register it in MLflow and point 'staging' at it."

    def add_arguments(self, parser):
        defaults = TrainConfig()
        parser.add_argument(
            "--data",
            nargs="+",
            default=settings.TRAIN_DATA_DIR,
            help="one or more ImageFolder directories, trained on together (default: TRAIN_DATA_DIR)",
        )
        parser.add_argument("--arch", default=defaults.arch, choices=["lite0", "lite1", "lite2"])
        parser.add_argument(
            "--epochs", type=int, default=defaults.epochs, help="fine-tuning epochs; 0: linear probe only"
        )
        parser.add_argument("--unfreeze", type=int, default=defaults.unfreeze, help="trailing stages to fine-tune")
        parser.add_argument("--lr", type=float, default=defaults.lr)
        parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
        parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
        parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
        parser.add_argument("--views", type=int, default=defaults.views, help="augmented views kept per photo")
        parser.add_argument("--holdout", type=float, default=defaults.holdout, help="fraction kept aside for scoring")
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--max-per-class", type=int, default=None, help="use at most N photos per class")
        parser.add_argument(
            "--resize",
            default=defaults.resize,
            choices=["pad", "crop"],
            help="pad: whole photo on a white square; crop: centre crop",
        )
        parser.add_argument(
            "--input-size",
            type=int,
            default=defaults.input_size,
            help="side of the square the network sees, in pixels, kept in the version's config "
            "(default 0: the network's own, 224 for lite0)",
        )
        parser.add_argument(
            "--desk-scenes",
            action=argparse.BooleanOptionalAction,
            default=defaults.desk_scenes,
            help="second view of a catalogue photo: the item laid on a generated background (default; "
            "--no-desk-scenes: its mirror image)",
        )
        parser.add_argument(
            "--min-folder-share",
            type=float,
            default=defaults.min_folder_share,
            help="every training folder makes up at least this share of an epoch (a small one is repeated)",
        )
        parser.add_argument(
            "--val",
            nargs="+",
            default=settings.EVAL_DATA_DIR,
            help="labelled folders scored after every epoch, never trained on (default: EVAL_DATA_DIR)",
        )
        parser.add_argument("--no-val", action="store_true", help="do not score validation folders")
        parser.add_argument(
            "--target-precision",
            type=float,
            default=None,
            help="precision of auto-accepted photos on held-out photos (default: AUTO_ACCEPT_PRECISION)",
        )
        parser.add_argument(
            "--label-noise",
            type=float,
            default=defaults.label_noise,
            help="share of held-out labels taken to be wrong when fitting the temperature",
        )
        parser.add_argument("--unknown-method", default=defaults.unknown_method, choices=["energy", "max_logit", "msp"])
        parser.add_argument(
            "--unknown-rate",
            type=float,
            default=defaults.unknown_rate,
            help="fraction of known held-out photos the open-set threshold sends to review",
        )
        parser.add_argument(
            "--no-int8",
            action="store_true",
            help="do not build the int8 ONNX network for the CPU serving path (served by PyTorch then)",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def extra_samples(self, options: dict, classes: list[str]) -> dict[str, list[tuple[Path, int]]]:
        """Photos trained on besides the folder's, by where they come from ((photo, class index) pairs);
        each source's count is logged as `n_<source>`. None here: see reviews' `train`."""
        return {}

    def handle(self, *args, **options):
        data_dirs = [Path(folder) for folder in options["data"] or () if folder]
        if not data_dirs:
            raise CommandError("no training data: pass --data DIR or set TRAIN_DATA_DIR")
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            # Found now, not after minutes of training: the alias move is recorded there.
            raise CommandError("the database has unapplied migrations: run manage.py migrate first")
        names = {f.name for f in fields(TrainConfig)}
        cfg = TrainConfig(**{key: value for key, value in options.items() if key in names})
        val_dirs = [] if options["no_val"] else [Path(folder) for folder in options["val"] or () if folder]
        try:
            classes, _ = list_image_folders(data_dirs, max_per_class=0)
            extra = self.extra_samples(options, classes)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        counts = {f"n_{source}": len(samples) for source, samples in extra.items()}
        progress = TrainingProgress(self.stderr.write)
        try:
            trained = services.train_and_register(
                data_dirs,
                cfg,
                run_name=f"train-{cfg.arch}",
                actor=command_actor("train"),
                action=AliasChange.Action.TRAIN,
                extra_samples=[sample for samples in extra.values() for sample in samples],
                extra_params=counts,
                eval_dirs=val_dirs,
                build_int8=not options["no_int8"],
                progress=progress,
            )
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            progress.close()
        self.report(trained, counts, options["json"])

    def report(self, trained: services.Trained, counts: dict, as_json: bool) -> None:
        result = trained.result
        val = {name.removeprefix("val_"): report["accuracy"] for name, report in result.eval_reports.items()}
        summary = {
            "version": trained.version,
            "run_id": trained.run_id,
            "holdout_accuracy": result.history[-1]["holdout_accuracy"],
            "val_accuracy": val,
            "folders": result.folders,
            **counts,
            "n_train": result.n_train,
            "n_holdout": result.n_holdout,
            "seconds": round(result.seconds, 1),
        }
        if as_json:
            self.stdout.write(json.dumps(summary))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {settings.MODEL_NAME} version {trained.version} as staging "
                f"({result.n_train} photos, {result.seconds / 60:.1f} min, holdout accuracy "
                f"{percent(summary['holdout_accuracy'])}"
                + "".join(f", val accuracy {percent(value)} on {name}" for name, value in val.items())
                + "). Promote it with: manage.py promote"
            )
        )
