"""Photos in: registering a photo once by its content hash, from uploads and from the inbox folder."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from classifier.imaging import FailureReason, Rejection, clean_copy, open_photo

from .models import Image
from .storage import StorageFull, TooLarge, read_capped, store_content

logger = logging.getLogger(__name__)

# Refusal codes of files that could not be stored, through no fault of the photo.
STORAGE_FULL = "storage_full"
UNREADABLE = "unreadable"


@dataclass
class Registration:
    created: list[Image] = field(default_factory=list)
    existing: list[Image] = field(default_factory=list)
    rejected: list[tuple[str, Rejection]] = field(default_factory=list)  # (name, why)
    unsettled: list[str] = field(default_factory=list)  # still being written: left for the next scan
    storage_full: bool = False  # the media folder filled up: the files from the first refused on were not kept

    @property
    def images(self) -> list[Image]:
        return self.created + self.existing

    def add(self, image: Image, created: bool) -> None:
        (self.created if created else self.existing).append(image)


def register_image(stream: BinaryIO, original_name: str, source: str, strict: bool = False) -> tuple[Image, bool]:
    """Store one photo and create its Image row, keyed by the hash of the file as received;
    returns (image, created).

    The photo is decoded once here and stored re-encoded (imaging.clean_copy: no metadata,
    no trailing bytes). A file that does not decode raises its Rejection when `strict`
    (uploads); otherwise (the inbox) it is kept as received, never served, and the batch
    records why it is unusable as a FailedImage.
    """
    try:
        data = read_capped(stream, settings.MAX_UPLOAD_BYTES)
    except TooLarge as exc:
        raise Rejection(FailureReason.TOO_LARGE_BYTES, f"{exc}, the limit is {settings.MAX_UPLOAD_BYTES}") from None
    sha256 = hashlib.sha256(data).hexdigest()
    known = Image.objects.filter(sha256=sha256).first()
    if known is not None:
        return known, False
    try:
        content = clean_copy(data, open_photo(data))
    except Rejection:
        if strict:
            raise
        content = data
    stored = store_content(content, sha256)
    return Image.objects.get_or_create(
        sha256=sha256,
        defaults={
            "file": stored.name,
            "original_name": original_name[:255],
            "source": source,
            "size_bytes": stored.size,
        },
    )


def register_uploads(files: Iterable, source: str) -> Registration:
    """Validate and store uploaded files (Django UploadedFile); bad ones are refused, not stored."""
    result = Registration()
    for upload in files:
        name = upload.name or ""
        if result.storage_full:
            result.rejected.append((name, Rejection(STORAGE_FULL, "not stored: the media folder is full")))
            continue
        try:
            result.add(*register_image(upload, name, source, strict=True))
        except Rejection as rejection:
            result.rejected.append((name, rejection))
        except StorageFull as exc:
            logger.error("upload refused: %s", exc)
            result.storage_full = True
            result.rejected.append((name, Rejection(STORAGE_FULL, str(exc))))
    return result


def scan_inbox(folder: Path, unsettled: list | None = None) -> Iterable[Path]:
    """Regular files under the folder, never following symbolic links or leaving it.

    A file changed in the last INBOX_SETTLE_SECONDS may still be being copied in: it is left
    for the next scan (and listed in `unsettled`). Hidden files (a copy in progress under a
    temporary dot name, renamed when complete) are never taken.
    """
    root = folder.resolve()
    settled_before = time.time() - settings.INBOX_SETTLE_SECONDS
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            if not path.resolve().is_relative_to(root):
                continue
            if path.stat().st_mtime > settled_before:
                if unsettled is not None:
                    unsettled.append(str(path))
                continue
            yield path


def ingest_folder(folder: Path, on_file: Callable[[Path, str], None] = lambda path, outcome: None) -> Registration:
    """Register every file in a folder. Content is judged later by the batch, as for any photo:
    a file that is not a usable photo becomes a FailedImage with its reason then."""
    result = Registration()
    for path in scan_inbox(folder, result.unsettled):
        try:
            with path.open("rb") as stream:
                image, created = register_image(stream, path.name, Image.Source.INBOX)
        except Rejection as rejection:
            result.rejected.append((str(path), rejection))
            on_file(path, rejection.reason)
            continue
        except StorageFull as exc:  # the rest stays in the inbox for the next scan
            logger.error("inbox scan stopped: %s", exc)
            result.storage_full = True
            on_file(path, STORAGE_FULL)
            break
        except OSError as exc:
            result.rejected.append((str(path), Rejection(UNREADABLE, str(exc))))
            on_file(path, UNREADABLE)
            continue
        result.add(image, created)
        on_file(path, "new" if created else "known")
    return result
