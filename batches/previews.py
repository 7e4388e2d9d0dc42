"""Pictures of stored photos for pages: always decoded and re-encoded, never the stored bytes."""

from __future__ import annotations

from django.conf import settings

from classifier.imaging import Rejection, open_image, reencode_jpeg, scaled_jpeg

from .models import Image
from .storage import photo_source


class NoPreview(Exception):
    """The stored photo cannot be shown (missing, or not a picture)."""


def _open(image: Image, draft_size: int | None):
    try:
        return open_image(
            photo_source(image.file.name) or b"",
            max_bytes=settings.MAX_UPLOAD_BYTES,
            max_pixels=settings.MAX_IMAGE_PIXELS,
            min_side=1,
            draft_size=draft_size,
        )
    except (Rejection, ValueError) as exc:
        raise NoPreview(str(exc)) from None


def thumbnail_jpeg(image: Image, max_side: int = 160) -> bytes:
    """A small JPEG (longest side `max_side`, never enlarged)."""
    return reencode_jpeg(_open(image, draft_size=2 * max_side), max_side)


def photo_jpeg(image: Image, height: int, max_width: int | None = None) -> bytes:
    """The photo at `height` pixels (a small photo scaled up crisply, a big one down)."""
    return scaled_jpeg(_open(image, draft_size=height), height, max_width or 2 * height)


def full_jpeg(image: Image, max_side: int = 4096) -> bytes:
    """The photo at its own size (at most `max_side`), re-encoded."""
    return reencode_jpeg(_open(image, draft_size=None), max_side, quality=92)
