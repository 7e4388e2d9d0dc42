from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from classifier import services
from classifier.management import command_actor
from classifier.models import AliasChange


class Command(BaseCommand):
    help = (
        "Make sure a production model exists: a linear head on the pretrained backbone when labelled photos "
        "are at hand (TRAIN_DATA_DIR), else the ImageNet-to-category demo model."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--data", default=settings.TRAIN_DATA_DIR, help="ImageFolder directory (default: TRAIN_DATA_DIR)"
        )
        parser.add_argument("--demo", action="store_true", help="register the demo model even if data is at hand")
        parser.add_argument(
            "--no-int8",
            action="store_true",
            help="do not build the int8 ONNX network for the CPU serving path (e.g. on a GPU machine)",
        )

    def handle(self, *args, **options):
        from classifier import registry

        current = registry.alias_version(services.PRODUCTION)
        if current is not None:
            self.stdout.write(f"production is already version {current} of {settings.MODEL_NAME}")
            return
        data = Path(options["data"]) if options["data"] and not options["demo"] else None
        if data is not None and not data.is_dir():
            raise CommandError(f"{data} is not a directory")
        registered = self.linear_probe(data, int8=not options["no_int8"]) if data else self.demo()
        services.move_alias(
            services.STAGING, registered.version, AliasChange.Action.BOOTSTRAP, command_actor("bootstrap_model")
        )
        services.move_alias(
            services.PRODUCTION, registered.version, AliasChange.Action.BOOTSTRAP, command_actor("bootstrap_model")
        )
        kind = "linear probe" if data else "DEMO (ImageNet mapping, about 67% accurate)"
        self.stdout.write(self.style.SUCCESS(f"production is now version {registered.version}: {kind}"))

    def linear_probe(self, data: Path, int8: bool = True):
        from classifier import training

        from .train import TrainingProgress

        self.stdout.write(
            f"Fitting a linear head on the pretrained backbone with the photos in {data} (about a minute)"
        )
        cfg = training.TrainConfig(epochs=0, unfreeze=0)
        progress = TrainingProgress(self.stderr.write)
        try:
            result = training.train(data, cfg, progress)
        finally:
            progress.close()
        params = {"recipe": "linear_probe", "arch": cfg.arch, "data": str(data), "n_train": result.n_train}
        return services.register_model(
            result.model,
            result.config,
            run_name="bootstrap-linear-probe",
            params=params,
            history=result.history,
            reports={"holdout": result.holdout_report} if result.holdout_report else None,
            manifest=result.manifest,
            int8_photos=result.int8_photos if int8 else None,
            int8_routing=training.int8_routing(result, cfg),
        )

    def demo(self):
        from classifier import training

        self.stdout.write(
            self.style.WARNING(
                "No labelled photos (TRAIN_DATA_DIR): registering the ImageNet-to-category DEMO model. "
                "Train a real one with: manage.py train --data DIR"
            )
        )
        model, config = training.demo_model()
        return services.register_model(
            model,
            config,
            run_name="bootstrap-demo",
            params={"recipe": "imagenet_mapping"},
            history=[],
            extra_tags={"demo": "true"},
        )
