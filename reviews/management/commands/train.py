"""`train`, extended with reviewers' decisions (--include-reviews).

This app comes before `classifier` in INSTALLED_APPS, so this command replaces the classifier's
`train` of the same name (Django's documented way to extend a command): everything else is the
classifier's own, which knows nothing of reviews.
"""

from pathlib import Path

from classifier.management.commands import train
from reviews import services


class Command(train.Command):
    help = train.Command.help + " --include-reviews adds every reviewed photo with its final class."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--include-reviews",
            action="store_true",
            help="also train on every confirmed or corrected review item, with its final class",
        )

    def extra_samples(self, options: dict, classes: list[str]) -> dict[str, list[tuple[Path, int]]]:
        """(stored photo, class index) for every reviewed photo whose final class is trained here."""
        if not options["include_reviews"]:
            return {"reviews": []}
        samples, skipped = services.training_samples(classes)
        self.stderr.write(
            f"including {len(samples)} reviewed photos"
            + (f" ({skipped} skipped: their class is not in {', '.join(options['data'])})" if skipped else "")
        )
        return {"reviews": samples}
