"""Storing photos under MEDIA_ROOT by content hash, atomically (temporary file + rename)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from classifier.imaging import sniff_format

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
CHUNK = 1 << 20


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    name: str  # relative to MEDIA_ROOT
    size: int


def store_stream(stream: BinaryIO, max_bytes: int) -> StoredFile:
    """Copy a stream into the media folder under a name made from its SHA-256.

    The bytes go to a temporary file in the same folder first and are renamed into place,
    so a crash or a full disk never leaves a partial photo under a real name.
    """
    root = Path(settings.MEDIA_ROOT)
    incoming = root / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    head = b""
    fd, tmp_name = tempfile.mkstemp(dir=incoming, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: stream.read(CHUNK), b""):
                size += len(block)
                if size > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                if len(head) < 16:
                    head = (head + block)[:16]
                digest.update(block)
                out.write(block)
        sha = digest.hexdigest()
        name = f"images/{sha[:2]}/{sha}.{EXTENSIONS.get(sniff_format(head) or '', 'bin')}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, root / name)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return StoredFile(sha256=sha, name=name, size=size)


def media_path(name: str) -> Path:
    """The absolute path of a stored name, refusing anything that would leave MEDIA_ROOT."""
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{name!r} is outside the media folder")
    return path
