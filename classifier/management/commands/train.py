import json
from dataclasses import asdict, fields
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from tqdm import tqdm

from classifier import services
from classifier.management import command_actor
from classifier.models import AliasChange
from classifier.training import TrainConfig


class TrainingProgress:
    """tqdm bars for feature caching and each epoch, plus one summary line per epoch."""

    def __init__(self, write):
        self.write = write
        self.bar = None
        self.key = None

    def __call__(self, event: dict) -> None:
        stage = event["stage"]
        if stage == "features":
            bar = self._bar(("features", event["part"]), event["total"], f"frozen layers ({event['part']})", "img")
            bar.update(event["done"] - bar.n)
        elif stage == "batch":
            bar = self._bar(
                ("epoch", event["epoch"]), event["steps"], f"epoch {event['epoch']}/{event['epochs']}", "batch"
            )
            bar.set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
            bar.update(1)
        elif stage == "epoch":
            self.close()
            loss = f"{event['train_loss']:.3f}" if event["train_loss"] is not None else "-"
            parts = [f"epoch {event['epoch']}/{event['epochs']}: train loss {loss}"]
            parts += [
                f"{name} accuracy {_percent(event.get(f'{name}_accuracy'))}"
                for name in ("holdout", "val")
                if f"{name}_accuracy" in event
            ]
            if "elapsed" in event:
                parts.append(f"elapsed {_minutes(event['elapsed'])}")
            if "eta" in event:
                parts.append(f"ETA {_minutes(event['eta'])}")
            self.write(", ".join(parts))

    def _bar(self, key, total: int, desc: str, unit: str) -> tqdm:
        if self.key != key:
            self.close()
            self.bar, self.key = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True), key
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.key = None, None


class Command(BaseCommand):
    help = "Fine-tune a model on an ImageFolder directory, register it in MLflow and point 'staging' at it."

    def add_arguments(self, parser):
        defaults = TrainConfig()
        parser.add_argument(
            "--data", default=settings.TRAIN_DATA_DIR, help="ImageFolder directory (default: TRAIN_DATA_DIR)"
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
            "--val",
            default=settings.EVAL_DATA_DIR,
            help="labelled folder scored after every epoch, never trained on (default: EVAL_DATA_DIR)",
        )
        parser.add_argument("--no-val", action="store_true", help="do not score a validation folder")
        parser.add_argument(
            "--include-reviews",
            action="store_true",
            help="also train on every confirmed or corrected review item, with its final class",
        )
        parser.add_argument(
            "--target-precision",
            type=float,
            default=None,
            help="precision of auto-accepted photos on held-out photos (default: AUTO_ACCEPT_PRECISION)",
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

    def handle(self, *args, **options):
        from classifier import training

        if not options["data"]:
            raise CommandError("no training data: pass --data DIR or set TRAIN_DATA_DIR")
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            # Found now, not after minutes of training: the alias move is recorded there.
            raise CommandError("the database has unapplied migrations: run manage.py migrate first")
        data_dir = Path(options["data"])
        names = {f.name for f in fields(TrainConfig)}
        cfg = TrainConfig(**{key: value for key, value in options.items() if key in names})
        val_dir = None if options["no_val"] or not options["val"] else Path(options["val"])
        extra = self.review_samples(data_dir) if options["include_reviews"] else []
        progress = TrainingProgress(self.stderr.write)
        try:
            result = training.train(data_dir, cfg, progress, extra_samples=extra, eval_dir=val_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            progress.close()
        if not options["no_int8"]:
            self.stderr.write(f"building the int8 ONNX network ({len(result.int8_photos)} calibration photos)")
        registered = self.register(result, cfg, data_dir, len(extra), int8=not options["no_int8"])
        summary = {
            "version": registered.version,
            "run_id": registered.run_id,
            "holdout_accuracy": result.history[-1]["holdout_accuracy"],
            "val_accuracy": result.history[-1].get("val_accuracy"),
            "n_reviews": len(extra),
            "n_train": result.n_train,
            "n_holdout": result.n_holdout,
            "seconds": round(result.seconds, 1),
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Registered {settings.MODEL_NAME} version {registered.version} as staging "
                    f"({result.n_train} photos, {result.seconds / 60:.1f} min, holdout accuracy "
                    f"{_percent(summary['holdout_accuracy'])}, val accuracy {_percent(summary['val_accuracy'])}). "
                    "Promote it with: manage.py promote"
                )
            )

    def review_samples(self, data_dir: Path) -> list:
        """(stored photo, class index) for every reviewed photo whose final class is trained here."""
        from batches.storage import media_path
        from classifier import training
        from reviews.services import reviewed_photos

        classes, _ = training.list_image_folder(data_dir, max_per_class=0)
        samples, skipped = [], 0
        for image, final_class in reviewed_photos():
            if final_class in classes:
                samples.append((media_path(image.file.name), classes.index(final_class)))
            else:
                skipped += 1
        self.stderr.write(
            f"including {len(samples)} reviewed photos"
            + (f" ({skipped} skipped: their class is not in {data_dir})" if skipped else "")
        )
        return samples

    def register(self, result, cfg: TrainConfig, data_dir: Path, n_reviews: int = 0, int8: bool = True):
        from classifier import training

        params = {
            **asdict(cfg),
            "data": str(data_dir),
            "n_reviews": n_reviews,
            "n_train": result.n_train,
            "n_holdout": result.n_holdout,
            "classes": ",".join(result.config["classes"]),
            "train_seconds": round(result.seconds, 1),
        }
        registered = services.register_model(
            result.model,
            result.config,
            run_name=f"train-{cfg.arch}",
            params=params,
            history=result.history,
            reports={
                name: report
                for name, report in (("holdout", result.holdout_report), ("val", result.eval_report))
                if report
            },
            manifest=result.manifest,
            extra_tags={"holdout_accuracy": str(result.history[-1]["holdout_accuracy"])},
            int8_photos=result.int8_photos if int8 else None,
            int8_routing=training.int8_routing(result, cfg),
        )
        services.move_alias(services.STAGING, registered.version, AliasChange.Action.TRAIN, command_actor("train"))
        return registered


def _percent(value) -> str:
    return f"{value:.2%}" if value is not None else "n/a"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
