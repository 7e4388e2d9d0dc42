"""Storing and reading photos through Django's default storage (STORAGES["default"]), by content hash.

This is the one module that knows where photos live. With the file-system storage (MEDIA_ROOT,
local or a shared NFS mount) a photo is written to a temporary file and renamed into place,
so a crash or a full disk never leaves a partial photo under a real name, and the classifier
reads it by path; with another storage (S3 through django-storages) it is saved and read
through the storage's own API.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage

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
    name: str  # in the default storage
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
    """Write a photo into the default storage under a name made from `sha256` (the hash of the
    file as received, so the same upload always lands on the same name)."""
    name = f"images/{sha256[:2]}/{sha256}.{EXTENSIONS.get(sniff_format(content[:16]) or '', 'bin')}"
    if is_local():
        _write_atomically(Path(default_storage.location), name, content)
    elif not default_storage.exists(name):  # same name, same bytes: stored once
        default_storage.save(name, ContentFile(content))
    return StoredFile(sha256=sha256, name=name, size=len(content))


def _write_atomically(root: Path, name: str, content: bytes) -> None:
    """The bytes go to a temporary file in the same folder first and are renamed into place."""
    incoming = root / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
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


def is_local() -> bool:
    """Whether photos are files on a file system this process can open (local disk or NFS)."""
    return isinstance(default_storage, FileSystemStorage)


def media_path(name: str) -> Path:
    """The path of a stored photo on the file-system storage, refusing anything that would leave
    its folder (ValueError), or a storage that has no paths."""
    if not is_local():
        raise ValueError(f"the storage {type(default_storage).__name__} has no file paths")
    try:
        return Path(default_storage.path(name)).resolve()
    except SuspiciousFileOperation:
        raise ValueError(f"{name!r} is outside the media folder") from None


def local_path(name: str) -> Path:
    """A file-system path of a stored photo, for what reads files by path (training on reviewed
    photos): the photo itself on the file-system storage, else a copy kept under VAR_DIR/media-copies."""
    if is_local():
        return media_path(name)
    root = (Path(settings.VAR_DIR) / "media-copies").resolve()
    copy = (root / name).resolve()
    if not copy.is_relative_to(root):
        raise ValueError(f"{name!r} is outside the media folder")
    if not copy.is_file():
        with default_storage.open(name, "rb") as stored:
            content = stored.read()
        _write_atomically(root, name, content)
    return copy


def photo_source(name: str) -> str | bytes:
    """What the classifier decodes a stored photo from: its path on a file system, else its bytes
    read from the storage ("" when it cannot be read: the classifier reports it as missing)."""
    if is_local():
        try:
            return str(media_path(name))
        except ValueError:
            return ""
    try:
        with default_storage.open(name, "rb") as stored:
            return read_capped(stored, settings.MAX_UPLOAD_BYTES)
    except (OSError, TooLarge, SuspiciousFileOperation):
        return ""


def used_ratios() -> dict[str, float]:
    """Share of space in use of the volumes holding the photos (when on a file system), the inbox
    and the working files (VAR_DIR), by name; a volume that cannot be read is left out."""
    folders = {"inbox": settings.INBOX_DIR, "var": settings.VAR_DIR}
    if is_local():
        folders["media"] = Path(default_storage.location)
    ratios = {}
    for volume, folder in folders.items():
        folder = Path(folder)
        while not folder.exists() and folder != folder.parent:  # not made yet: the volume it will be on
            folder = folder.parent
        try:
            usage = shutil.disk_usage(folder)
        except OSError:
            continue
        ratios[volume] = usage.used / usage.total if usage.total else 0.0
    return ratios
