"""What is kept of a photo: the decoded picture re-encoded, never the bytes as received."""

import hashlib
import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from PIL import Image as PILImage

from batches import ingest
from batches.models import Image
from batches.storage import media_path
from tests.helpers import BAD_INPUTS, dev_photos

pytestmark = pytest.mark.django_db


def upload(path, name=None):
    result = ingest.register_uploads([SimpleUploadedFile(name or path.name, path.read_bytes())], "upload")
    assert not result.rejected, result.rejected
    return result.created[0]


def stored_bytes(image: Image) -> bytes:
    return media_path(image.file.name).read_bytes()


def test_trailing_bytes_after_a_jpeg_are_not_kept():
    received = (BAD_INPUTS / "jpeg_with_trailing_html.jpg").read_bytes()
    image = upload(BAD_INPUTS / "jpeg_with_trailing_html.jpg")
    kept = stored_bytes(image)
    assert b"<script" in received and b"<script" not in kept
    assert kept.endswith(b"\xff\xd9") and kept.count(b"\xff\xd9") == 1
    assert image.sha256 == hashlib.sha256(received).hexdigest()  # named after what was received
    assert image.size_bytes == len(kept)


def test_metadata_is_dropped_and_the_picture_is_stored_upright():
    image = upload(BAD_INPUTS / "exif_orientation_6.jpg")
    with PILImage.open(media_path(image.file.name)) as kept:
        assert kept.size == (240, 320)  # EXIF orientation applied, then the tag dropped
        assert "exif" not in kept.info and "icc_profile" not in kept.info
        assert kept.getexif() == {}


def test_a_jpeg_keeps_its_pixels_within_a_grey_level_or_two():
    path = dev_photos("val", per_class=1, classes=["watches"])[0][0]
    image = upload(path)
    with PILImage.open(path) as original, PILImage.open(media_path(image.file.name)) as kept:
        assert kept.format == "JPEG" and kept.size == original.size
        difference = np.abs(np.asarray(original.convert("RGB"), int) - np.asarray(kept.convert("RGB"), int))
    assert difference.mean() < 2.0


def test_transparent_and_16_bit_pngs_are_stored_as_8_bit_rgb_png():
    for name in ("rgba_transparent_background.png", "rgb16.png", "gray16.png"):
        image = upload(BAD_INPUTS / name)
        with PILImage.open(media_path(image.file.name)) as kept:
            assert (kept.format, kept.mode) == ("PNG", "RGB"), name
            assert not {key for key in kept.info if key not in ("dpi",)} - {"gamma"}, (name, kept.info)


def test_an_inbox_file_that_is_no_photo_is_kept_as_received_for_the_batch_to_refuse(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "truncated.jpg").write_bytes((BAD_INPUTS / "truncated.jpg").read_bytes())
    image = ingest.ingest_folder(inbox).created[0]
    assert stored_bytes(image) == (BAD_INPUTS / "truncated.jpg").read_bytes()


def test_an_upload_that_is_no_photo_stores_nothing():
    received = (BAD_INPUTS / "truncated.jpg").read_bytes()[:-100]
    result = ingest.register_uploads([SimpleUploadedFile("truncated.jpg", received)], "upload")
    assert [(name, rejection.reason) for name, rejection in result.rejected] == [("truncated.jpg", "truncated")]
    assert not Image.objects.exists()
    sha = hashlib.sha256(received).hexdigest()
    assert not list(Path(settings.MEDIA_ROOT).glob(f"images/{sha[:2]}/{sha}.*"))


def test_the_same_photo_twice_is_one_image():
    path = dev_photos("val", per_class=1, classes=["tops"])[0][0]
    first, second = (ingest.register_image(io.BytesIO(path.read_bytes()), path.name, "inbox") for _ in range(2))
    assert first[0] == second[0] and (first[1], second[1]) == (True, False)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted as the media folder (needs root, as the suite runs in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "media"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], check=True)
    try:
        with override_settings(MEDIA_ROOT=str(mount_point)):
            yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def big_photo(seed: int) -> bytes:
    """A 640x480 noisy JPEG (about 200 KB): more than the full disk has left."""
    pixels = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_a_full_disk_keeps_nothing_of_the_upload_and_works_again_once_space_is_freed(small_disk):
    from rest_framework.test import APIClient

    from tests.helpers import make_user

    filler = small_disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(bytes(64 * 1024))
                handle.flush()
        except OSError:
            pass
    client = APIClient()
    client.force_authenticate(make_user("api-operator", "operators"))
    photo = big_photo(1)

    refused = client.post("/api/images/", {"images": [SimpleUploadedFile("big.jpg", photo)]}, format="multipart")
    assert refused.status_code == 507
    assert refused.json()["rejected"][0]["reason"] == "storage_full"
    assert "no space left" in refused.json()["rejected"][0]["detail"]
    assert not Image.objects.exists()
    assert [p for p in small_disk.rglob("*") if p.is_file() and p != filler] == []  # no partial file

    filler.unlink()
    accepted = client.post("/api/images/", {"images": [SimpleUploadedFile("big.jpg", photo)]}, format="multipart")
    assert accepted.status_code == 201
    image = Image.objects.get()
    assert media_path(image.file.name).is_relative_to(small_disk)
    assert PILImage.open(media_path(image.file.name)).size == (640, 480)


def test_photos_in_a_storage_without_file_paths_are_stored_classified_shown_and_trained_on(trained_model, client):
    """Every file access goes through STORAGES: with a storage that has no paths (as S3 has none)
    photos are saved, classified, shown and copied for training without touching MEDIA_ROOT."""
    from django.core.files.storage import default_storage

    from batches import services, storage
    from batches.models import BatchRun
    from tests.helpers import make_user, register_file

    in_memory = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    with override_settings(STORAGES=in_memory):
        assert not storage.is_local()
        on_disk = set(Path(settings.MEDIA_ROOT).rglob("*"))
        images = [register_file(path) for path, _ in dev_photos("val", per_class=1)[:4]]
        assert all(default_storage.exists(image.file.name) for image in images)
        run = services.start_and_enqueue_run(BatchRun.Trigger.BUTTON, images)
        run.refresh_from_db()
        assert (run.status, run.n_predicted) == (BatchRun.Status.COMPLETED, 4)
        client.force_login(make_user("olga", "operators"))
        thumbnail = client.get(f"/images/{images[0].pk}/thumbnail.jpg")
        assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
        copy = storage.local_path(images[1].file.name)
        with default_storage.open(images[1].file.name, "rb") as stored:
            assert copy.read_bytes() == stored.read()
        assert copy.is_relative_to(settings.VAR_DIR)
        assert set(Path(settings.MEDIA_ROOT).rglob("*")) == on_disk  # nothing written under MEDIA_ROOT
