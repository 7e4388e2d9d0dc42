"""Property-based: whatever is done to a valid photo, decoding gives an RGB picture or a
refusal with a reason from the closed set, never another exception."""

import io
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from classifier.imaging import FailureReason, Rejection, open_image
from tests.helpers import dev_photos


def _valid_photos() -> list[bytes]:
    path = dev_photos("val", per_class=1, classes=["watches"])[0][0]
    jpeg = path.read_bytes()
    picture = Image.open(io.BytesIO(jpeg)).convert("RGB")
    photos = [jpeg]
    for fmt in ("PNG", "WEBP"):
        out = io.BytesIO()
        picture.save(out, format=fmt)
        photos.append(out.getvalue())
    return photos


PHOTOS = _valid_photos()


def forge_dimensions(data: bytes, width: int, height: int) -> bytes:
    """Write other dimensions into the header (PNG IHDR, JPEG SOF0/SOF2)."""
    if data.startswith(b"\x89PNG"):
        return data[:16] + struct.pack(">II", width, height) + data[24:]
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at != -1:
            return data[: at + 5] + struct.pack(">HH", height & 0xFFFF, width & 0xFFFF) + data[at + 9 :]
    return data


@st.composite
def mutated_photos(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(PHOTOS)))
    kind = draw(st.sampled_from(["truncate", "flip", "dimensions", "all"]))
    if kind in ("dimensions", "all"):
        size = st.integers(min_value=0, max_value=70_000)
        data = bytearray(forge_dimensions(bytes(data), draw(size), draw(size)))
    if kind in ("flip", "all"):
        for _ in range(draw(st.integers(min_value=1, max_value=12))):
            at = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[at] = draw(st.integers(min_value=0, max_value=255))
    if kind in ("truncate", "all"):
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
    return bytes(data)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_photos())
def test_decoding_a_mutated_photo_gives_a_picture_or_a_reasoned_refusal(data):
    try:
        picture = open_image(data, max_bytes=10**7, max_pixels=50_000_000, min_side=32)
    except Rejection as exc:
        assert exc.reason in set(FailureReason)
        assert exc.detail
    else:
        assert picture.mode == "RGB" and min(picture.size) >= 32
