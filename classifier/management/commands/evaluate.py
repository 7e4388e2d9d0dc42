import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from classifier.calibration import ECE_BINS
from classifier.management import ModelVersionCommand


class Command(ModelVersionCommand):
    help = "Score a registered model version on labelled ImageFolder directories, each on its own."

    def add_arguments(self, parser):
        parser.add_argument(
            "--data",
            nargs="+",
            default=settings.EVAL_DATA_DIR,
            help="ImageFolder directories with the true classes (default: EVAL_DATA_DIR)",
        )
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--version", help="model version number")
        which.add_argument("--alias", help="registry alias (default: MODEL_ALIAS)")
        parser.add_argument("--max-per-class", type=int, default=None)
        parser.add_argument("--json", action="store_true", help="print one JSON document per folder, one per line")

    def handle(self, *args, **options):
        from classifier import evaluation, inference, registry

        folders = [folder for folder in options["data"] or () if folder]
        if not folders:
            raise CommandError("no labelled folder: pass --data DIR or set EVAL_DATA_DIR")
        version = options["version"] or registry.alias_version(options["alias"] or settings.MODEL_ALIAS)
        if version is None:
            raise CommandError(f"alias {options['alias'] or settings.MODEL_ALIAS!r} is not set")
        try:
            classifier = inference.get_classifier(version)
        except inference.ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        for number, folder in enumerate(folders):
            try:
                report = evaluation.evaluate(classifier, Path(folder), options["max_per_class"])
            except (FileNotFoundError, ValueError) as exc:
                raise CommandError(f"{folder}: {exc}") from exc
            report = {"model_version": version, "data": str(folder), **report}
            if options["json"]:
                self.stdout.write(json.dumps(report))
            else:
                self.stdout.write(("\n" if number else "") + format_report(report))


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def format_report(report: dict) -> str:
    classes = report["classes"]
    width = max(len(name) for name in classes)
    lines = [
        f"Model version {report['model_version']} on {report['data']}: top-1 accuracy {report['accuracy']:.2%} "
        f"on {report['n']} photos",
        f"Calibration: ECE {report['ece']:.2%} (uncalibrated {report['ece_uncalibrated']:.2%}, "
        f"temperature {report['temperature']:.3f}; {ECE_BINS} bins)",
        f"Routing: {report['auto_accept_rate']:.1%} accepted automatically, "
        f"{_percent(report['auto_accept_precision'])} of them right; to review: "
        + ", ".join(f"{count} {reason}" for reason, count in report["review_reasons"].items()),
    ]
    seed = report.get("seed_classes")
    if seed and seed["n"]:
        lines.append(
            f"Seed classes ({', '.join(seed['classes'])}; {seed['n']} photos): recall {seed['recall']:.2%}, "
            f"accuracy among the five {seed['accuracy_among_five']:.2%}"
        )
    lines.append("")
    lines.append(f"{'class':<{width}}  precision  recall  support")
    for name in classes:
        row = report["per_class"][name]
        lines.append(f"{name:<{width}}  {row['precision']:>9.1%}  {row['recall']:>6.1%}  {row['support']:>7}")
    lines += ["", "Confusion matrix (rows: true class, columns: predicted, in the order above):"]
    lines += [
        "  ".join(f"{count:>4}" for count in row) + f"  {name}"
        for name, row in zip(classes, report["confusion_matrix"])
    ]
    return "\n".join(lines)
