"""Small builders shared by the tests (rows via objects.create, photos from the development set)."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import TestCase, override_settings
from PIL import Image as PILImage

from classifier.imaging import FailureReason

DATASET = Path(os.environ.get("REFUND_ITEMS_DIR", settings.SHARED_DATASETS / "refund-items"))
# Real photos of returns (phone photos on beds and floors) of a few of the classes.
REAL_DATASET = Path(os.environ.get("REFUND_ITEMS_REAL_DIR", settings.SHARED_DATASETS / "refund-items-real"))
BAD_INPUTS = Path(os.environ.get("BAD_INPUTS_DIR", settings.SHARED_DATASETS / "bad-inputs"))

# What becomes of each hostile file of bad-inputs/ (its README): accepted, or refused with a reason.
ACCEPTED = [
    "valid_control.jpg",
    "png_with_jpg_extension.jpg",
    "cmyk.jpg",
    "gray16.png",
    "rgb16.png",
    "grayscale.jpg",
    "rgba_transparent_background.png",
    "image.webp",
    "exif_orientation_6.jpg",
    "jpeg_with_trailing_html.jpg",
    "photo with spaces.jpg",
    "ünïcödé-商品-📷.jpg",
    "-leading-dash.jpg",
    "double.extension.php.jpg",
    "UPPERCASE.JPG",
    "no_extension",
    "..%2F..%2Fetc%2Fpasswd.jpg",
]
REJECTED = {
    "truncated.jpg": FailureReason.TRUNCATED,
    "zero_bytes.jpg": FailureReason.EMPTY_FILE,
    "text_file.jpg": FailureReason.UNSUPPORTED_FORMAT,
    "animated.gif": FailureReason.UNSUPPORTED_FORMAT,
    "one_pixel.png": FailureReason.TOO_SMALL,
    "extreme_aspect_4000x2.png": FailureReason.TOO_SMALL,
    "decompression_bomb_30000x30000.png": FailureReason.TOO_MANY_PIXELS,
    "jpeg_header_65000x65000.jpg": FailureReason.TOO_MANY_PIXELS,
    "svg_as_jpg.jpg": FailureReason.UNSUPPORTED_FORMAT,
    "html_as_jpg.jpg": FailureReason.UNSUPPORTED_FORMAT,
    "image.svg": FailureReason.UNSUPPORTED_FORMAT,
}


def free_port() -> int:
    """A TCP port free on the loopback interface now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_dataset() -> None:
    if not (DATASET / "train").is_dir():
        pytest.fail(f"the development photo set is missing at {DATASET} (set REFUND_ITEMS_DIR)")


def dev_photos(split: str = "val", per_class: int = 4, classes: list[str] | None = None) -> list[tuple[Path, str]]:
    """(path, true class) for the first photos of each class, in a stable order."""
    require_dataset()
    root = DATASET / split
    names = classes or sorted(d.name for d in root.iterdir() if d.is_dir())
    return [(path, name) for name in names for path in sorted((root / name).glob("*.jpg"))[:per_class]]


def jpeg_bytes(size=(120, 160), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, format="JPEG")
    return out.getvalue()


def make_user(username: str, *groups: str, staff: bool = False, password: str = "pw-for-tests-only"):
    call_command("setup_roles", verbosity=0)
    user = get_user_model().objects.create_user(username, password=password, is_staff=staff)
    user.groups.set(Group.objects.filter(name__in=groups))
    return user


def register_file(path: Path, source: str = "inbox"):
    from batches import ingest

    with open(path, "rb") as stream:
        image, _ = ingest.register_image(stream, path.name, source)
    return image


def small_folder(
    tmp_path, split="val", classes=("jeans", "sunglasses", "watches"), per_class=6, dataset: Path = DATASET
):
    """An ImageFolder of links to a few development photos (the photos themselves stay where they are)."""
    require_dataset()
    if not (dataset / split).is_dir():
        pytest.fail(f"the photo set is missing at {dataset}")
    for name in classes:
        (tmp_path / name).mkdir(parents=True)
        for path in sorted((dataset / split / name).glob("*.jpg"))[:per_class]:
            os.symlink(path, tmp_path / name / path.name)
    return tmp_path


class IsolatedRegistry(TestCase):
    """Each test gets its own registered model name, so aliases never leak between tests."""

    @pytest.fixture(autouse=True)
    def _isolate(self, request, tmp_path):
        self.tmp_path = tmp_path
        name = f"test-{request.node.name}".replace("_", "-")[:60]
        with override_settings(MODEL_NAME=name, MODEL_CACHE_DIR=tmp_path / "cache"):
            yield


def queued_prediction(name="item.jpg", predicted="tops", confidence=0.41, reason="low_confidence", run=None):
    """A prediction of a small generated photo, queued for review as the engine queues them
    (`reason` empty: accepted automatically, queued only when sampled for audit)."""
    from batches import engine, ingest
    from batches.models import BatchRun, Image, Prediction

    image, _ = ingest.register_image(io.BytesIO(jpeg_bytes() + name.encode()), name, Image.Source.UPLOAD)
    run = run or BatchRun.objects.create(trigger="button", model_version="3")
    rest = 1 - confidence
    others = [name for name in ("tops", "tshirts", "shirts") if name != predicted]
    prediction = Prediction.objects.create(
        image=image,
        batch_run=run,
        model_version=run.model_version,
        predicted_class=predicted,
        confidence=confidence,
        threshold=0.9,
        probabilities={predicted: confidence, others[0]: round(0.6 * rest, 6), others[1]: round(0.4 * rest, 6)},
        review_reason=reason,
    )
    engine.queue_for_review(Prediction.objects.filter(pk=prediction.pk))
    return prediction


def review_item(**kwargs):
    """A review item waiting for a first decision (see queued_prediction)."""
    from reviews.models import ReviewItem

    prediction = queued_prediction(**kwargs)
    if not kwargs.get("reason", "low_confidence"):  # an automatic decision: queued here as an audit
        return ReviewItem.objects.get_or_create(prediction=prediction, defaults={"reason": "audit"})[0]
    return prediction.review
