"""The inbox scan takes only files that have stopped changing, each once."""

import io
import os
import time

import pytest
from django.core.management import call_command

from batches.models import Image
from tests.helpers import dev_photos

pytestmark = pytest.mark.django_db


def test_a_file_still_being_copied_waits_for_the_next_scan(settings, tmp_path):
    settings.INBOX_SETTLE_SECONDS = 60
    (path, _), (other, _) = dev_photos("val", per_class=2, classes=["watches"])
    done = tmp_path / "done.jpg"
    done.write_bytes(path.read_bytes())
    an_hour_ago = time.time() - 3600
    os.utime(done, (an_hour_ago, an_hour_ago))
    arriving = tmp_path / "arriving.jpg"
    arriving.write_bytes(other.read_bytes()[:500])  # half copied, written just now

    out = io.StringIO()
    call_command("ingest", str(tmp_path), stdout=out, stderr=io.StringIO())
    assert list(Image.objects.values_list("original_name", flat=True)) == ["done.jpg"]
    assert "1 changed in the last 60 s" in out.getvalue()

    # The copy finishes; once it has been quiet long enough the next scan takes it, once.
    arriving.write_bytes(other.read_bytes())
    os.utime(arriving, (an_hour_ago, an_hour_ago))
    call_command("ingest", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO())
    call_command("ingest", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO())
    assert sorted(Image.objects.values_list("original_name", flat=True)) == ["arriving.jpg", "done.jpg"]
    stored = Image.objects.get(original_name="arriving.jpg")
    assert stored.size_bytes == other.stat().st_size  # the whole file, not the half seen first
