from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from classifier import services
from classifier.management import command_actor
from classifier.management.progress import TrainingProgress
from classifier.models import AliasChange

# The linear probe reads this many photos per class of each folder at most: the catalogue's 400
# and every real photo, a first model in minutes even where TRAIN_DATA_DIR holds thousands more.
BOOTSTRAP_PER_CLASS = 400


class Command(BaseCommand):
    help = (
        "Make sure a production model exists: a linear head on the pretrained backbone when labelled photos "
        "are at hand (TRAIN_DATA_DIR: catalogue photos, and real photos of returns where there are some), "
        "else the ImageNet-to-category demo model."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--data",
            nargs="+",
            default=settings.TRAIN_DATA_DIR,
            help="one or more ImageFolder directories (default: TRAIN_DATA_DIR)",
        )
        parser.add_argument(
            "--max-per-class",
            type=int,
            default=BOOTSTRAP_PER_CLASS,
            help=f"photos per class and folder at most, so the first model is quick (default {BOOTSTRAP_PER_CLASS})",
        )
        parser.add_argument("--demo", action="store_true", help="register the demo model even if data is at hand")
        parser.add_argument(
            "--no-int8",
            action="store_true",
            help="do not build the int8 ONNX network for the CPU serving path (e.g. on a GPU machine)",
        )

    def handle(self, *args, **options):
        from classifier import registry

        data = [] if options["demo"] else [Path(folder) for folder in options["data"] or () if folder]
        for folder in data:
            if not folder.is_dir():
                raise CommandError(f"{folder} is not a directory: pass --data a folder of class folders")
        current = registry.alias_version(services.PRODUCTION)
        if current is not None:
            self.stdout.write(f"production is already version {current} of {settings.MODEL_NAME}")
            return
        actor = command_actor("bootstrap_model")
        if data:
            registered = self.linear_probe(data, actor, options["max_per_class"], build_int8=not options["no_int8"])
        else:
            registered = self.demo()
            for alias in (services.STAGING, services.PRODUCTION):
                services.move_alias(alias, registered.version, AliasChange.Action.BOOTSTRAP, actor)
        kind = "linear probe" if data else "DEMO (ImageNet mapping, about 67% accurate)"
        self.stdout.write(self.style.SUCCESS(f"production is now version {registered.version}: {kind}"))

    def linear_probe(
        self, data: list[Path], actor: str, max_per_class: int, build_int8: bool = True
    ) -> services.Registered:
        from classifier import training

        self.stdout.write(
            f"Fitting a linear head on the pretrained backbone with the photos in {', '.join(map(str, data))} "
            "(about 2 minutes on 2 idle cores, longer on a busy machine; then about 1-2 minutes for the int8 network)"
        )
        progress = TrainingProgress(self.stderr.write)
        try:
            return services.train_and_register(
                data,
                training.TrainConfig(epochs=0, unfreeze=0, max_per_class=max_per_class),
                run_name="bootstrap-linear-probe",
                actor=actor,
                action=AliasChange.Action.BOOTSTRAP,
                aliases=(services.STAGING, services.PRODUCTION),
                extra_params={"recipe": "linear_probe"},
                build_int8=build_int8,
                progress=progress,
            )
        finally:
            progress.close()

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
