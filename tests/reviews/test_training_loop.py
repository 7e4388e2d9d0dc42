"""Reviewers' decisions become training data: export_reviews and train --include-reviews, with
real training and the real network."""

import io
import json

from django.core.management import call_command
from django.test import override_settings

from batches import services as batch_services
from batches.models import Prediction
from classifier import inference, registry
from reviews import services
from reviews.models import ReviewItem
from tests.helpers import IsolatedRegistry, dev_photos, make_user, register_file, small_folder


def train(*args) -> str:
    out = io.StringIO()
    call_command(
        "train",
        *args,
        "--epochs",
        "0",
        "--unfreeze",
        "0",
        "--holdout",
        "0",
        "--no-val",
        "--json",
        stdout=out,
        stderr=io.StringIO(),
    )
    return json.loads(out.getvalue())["version"]


class ReviewLoopTests(IsolatedRegistry):
    def test_corrections_change_what_the_next_version_predicts_for_those_photos(self):
        data = str(small_folder(self.tmp_path / "train", split="train", per_class=8))
        first = train("--data", data)
        registry.set_alias("production", first)
        photos = [path for path, _ in dev_photos("val", per_class=4, classes=["watches"])]
        images = [register_file(path) for path in photos]

        # The first version has no routing of its own (nothing held out): the fallback threshold,
        # set out of reach here, sends every photo to review.
        with override_settings(REVIEW_CONFIDENCE_THRESHOLD=1.01):
            inference.forget_loaded()
            batch_services.start_and_enqueue_run("button")  # django-q2 runs it inline under test
        assert Prediction.objects.filter(predicted_class="watches").count() >= 3
        reviewer = make_user("rita", "reviewers", staff=True)
        # The reviewer (deliberately, to make the effect visible) files them under sunglasses;
        # one photo stays pending and must not be used.
        items = list(ReviewItem.objects.order_by("id"))
        assert len(items) == 4
        for item in items[:3]:
            services.record_decision(item.pk, reviewer, "sunglasses", source="desk")
        # A correction of a prediction the model was sure of waits for a second reviewer before it
        # is trained on; here the second reviewer agrees.
        second = make_user("sam", "reviewers", staff=True)
        for item in ReviewItem.objects.filter(status=ReviewItem.Status.SECOND_OPINION):
            services.record_decision(item.pk, second, "sunglasses", source="desk")
        corrected = {item.prediction.image_id for item in items[:3]}

        out = io.StringIO()
        call_command("export_reviews", str(self.tmp_path / "reviewed"), stdout=out)
        exported = sorted(p.name for p in (self.tmp_path / "reviewed" / "sunglasses").iterdir())
        assert exported == sorted(f"{image.sha256}.jpg" for image in images if image.pk in corrected)
        assert "Exported 3 reviewed photos" in out.getvalue()

        with_reviews = train("--data", data, "--include-reviews")
        without = train("--data", data)
        paths = [str(path) for image, path in zip(images, photos) if image.pk in corrected]
        learned = [o.predicted_class for o in inference.get_classifier(with_reviews).classify_files(paths)]
        control = [o.predicted_class for o in inference.get_classifier(without).classify_files(paths)]
        assert learned == ["sunglasses"] * 3
        assert "sunglasses" not in control
        params = registry.client().get_run(registry.describe_version(with_reviews).run_id).data.params
        assert params["n_reviews"] == "3"
