import json
from dataclasses import asdict, fields
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from classifier import services
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
            accuracy = event["holdout_accuracy"]
            shown = f"{accuracy:.2%}" if accuracy is not None else "n/a"
            loss = f"{event['train_loss']:.3f}" if event["train_loss"] is not None else "-"
            self.write(f"epoch {event['epoch']}/{event['epochs']}: train loss {loss}, holdout accuracy {shown}")

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
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **options):
        from classifier import training

        if not options["data"]:
            raise CommandError("no training data: pass --data DIR or set TRAIN_DATA_DIR")
        data_dir = Path(options["data"])
        names = {f.name for f in fields(TrainConfig)}
        cfg = TrainConfig(**{key: value for key, value in options.items() if key in names})
        progress = TrainingProgress(self.stderr.write)
        try:
            result = training.train(data_dir, cfg, progress)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            progress.close()
        registered = self.register(result, cfg, data_dir)
        summary = {
            "version": registered.version,
            "run_id": registered.run_id,
            "holdout_accuracy": result.history[-1]["holdout_accuracy"],
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
                    f"{_percent(summary['holdout_accuracy'])}). Promote it with: manage.py promote"
                )
            )

    def register(self, result, cfg: TrainConfig, data_dir: Path):
        params = {
            **asdict(cfg),
            "data": str(data_dir),
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
            extra_tags={"holdout_accuracy": str(result.history[-1]["holdout_accuracy"])},
        )
        services.move_alias(services.STAGING, registered.version, AliasChange.Action.TRAIN, "manage.py train")
        return registered


def _percent(value) -> str:
    return f"{value:.2%}" if value is not None else "n/a"
