"""Small builders shared by the tests (rows via objects.create, photos from the development set)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from PIL import Image as PILImage

DATASET = Path(os.environ.get("REFUND_ITEMS_DIR", settings.SHARED_DATASETS / "refund-items"))
BAD_INPUTS = Path(os.environ.get("BAD_INPUTS_DIR", settings.SHARED_DATASETS / "bad-inputs"))


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
    from batches import services

    with open(path, "rb") as stream:
        image, _ = services.register_image(stream, path.name, source)
    return image
