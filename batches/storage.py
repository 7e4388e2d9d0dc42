"""Storing photos under MEDIA_ROOT by content hash, atomically (temporary file + rename)."""

from __future__ import annotations

import errno
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


class StorageFull(Exception):
    """The media folder has no space left: nothing of the photo was kept."""


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    name: str  # relative to MEDIA_ROOT
    size: int


def read_capped(stream: BinaryIO, max_bytes: int) -> bytes:
    """A stream's content, refusing it as soon as it passes max_bytes."""
    blocks, size = [], 0
    for block in iter(lambda: stream.read(CHUNK), b""):
        size += len(block)
        if size > max_bytes:
            raise TooLarge(f"more than {max_bytes} bytes")
        blocks.append(block)
    return b"".join(blocks)


def store_content(content: bytes, sha256: str) -> StoredFile:
    """Write a photo into the media folder under a name made from `sha256` (the hash of the
    file as received, so the same upload always lands on the same name).

    The bytes go to a temporary file in the same folder first and are renamed into place,
    so a crash or a full disk never leaves a partial photo under a real name.
    """
    root = Path(settings.MEDIA_ROOT)
    incoming = root / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    name = f"images/{sha256[:2]}/{sha256}.{EXTENSIONS.get(sniff_format(content[:16]) or '', 'bin')}"
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=incoming, prefix=".upload-")
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, root / name)
    except BaseException as exc:
        if tmp_name:
            Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"no space left in the media folder {root}: {exc.strerror}") from None
        raise
    return StoredFile(sha256=sha256, name=name, size=len(content))


def media_path(name: str) -> Path:
    """The absolute path of a stored name, refusing anything that would leave MEDIA_ROOT."""
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{name!r} is outside the media folder")
    return path
