"""Every hostile file in bad-inputs/ gets the outcome its README asks for."""

import io

import numpy as np
import pytest
from django.conf import settings
from django.test import SimpleTestCase
from PIL import Image as PILImage

from classifier.imaging import FailureReason, Rejection, follow_pixel_limit, open_image, sniff_format
from tests.helpers import ACCEPTED, BAD_INPUTS, REJECTED


def load(source, **overrides):
    options = {
        "max_bytes": settings.MAX_UPLOAD_BYTES,
        "max_pixels": settings.MAX_IMAGE_PIXELS,
        "min_side": settings.MIN_IMAGE_SIDE,
        **overrides,
    }
    return open_image(source, **options)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def red_triangle_points_up(image) -> bool:
    """The test card's red triangle: narrow rows at its top, wide rows at its bottom."""
    a = pixels(image)
    red = (a[..., 0] > 180) & (a[..., 1] < 90) & (a[..., 2] < 90)
    rows = np.nonzero(red.any(axis=1))[0]
    if len(rows) < 10:
        return False
    return red[rows[0]].sum() * 5 < red[rows[-1]].sum()


def test_every_bad_input_has_an_expected_outcome():
    files = {p.name for p in BAD_INPUTS.iterdir() if p.name != "README.md"}
    assert files == set(ACCEPTED) | set(REJECTED)


@pytest.mark.parametrize("name", ACCEPTED)
def test_it_accepts_and_normalises(name):
    image = load(BAD_INPUTS / name)
    assert image.mode == "RGB"
    assert image.size == (240, 320)  # portrait, upright
    control = pixels(load(BAD_INPUTS / "valid_control.jpg"))
    if name not in ("gray16.png", "grayscale.jpg"):  # grey cards have no colour to compare
        assert np.abs(pixels(image).mean(axis=(0, 1)) - control.mean(axis=(0, 1))).max() < 8
        assert red_triangle_points_up(image)


@pytest.mark.parametrize("name, reason", REJECTED.items())
def test_it_rejects_with_a_reason(name, reason):
    with pytest.raises(Rejection) as caught:
        load(BAD_INPUTS / name)
    assert caught.value.reason == reason
    assert caught.value.detail


class PolicyTests(SimpleTestCase):
    def test_it_composites_transparency_onto_white_not_magenta(self):
        a = pixels(load(BAD_INPUTS / "rgba_transparent_background.png"))
        assert (a[0, 0] == 255).all()

    def test_it_scales_16_bit_grey_instead_of_clipping_to_white(self):
        a = pixels(load(BAD_INPUTS / "gray16.png"))
        assert a.min() < 100 and 100 < a.mean() < 240

    def test_it_applies_the_exif_orientation(self):
        raw = PILImage.open(BAD_INPUTS / "exif_orientation_6.jpg")
        assert raw.size == (320, 240)  # stored landscape
        assert red_triangle_points_up(load(BAD_INPUTS / "exif_orientation_6.jpg"))

    def test_it_keeps_cmyk_colours_upright_not_inverted(self):
        a = pixels(load(BAD_INPUTS / "cmyk.jpg"))
        assert (a[0, 0] > 240).all()  # white stays white

    def test_it_refuses_by_bytes_not_by_name(self):
        with pytest.raises(Rejection) as caught:
            load((BAD_INPUTS / "text_file.jpg").read_bytes())
        assert caught.value.reason == FailureReason.UNSUPPORTED_FORMAT

    def test_it_refuses_a_file_over_the_byte_limit(self):
        with pytest.raises(Rejection) as caught:
            load(BAD_INPUTS / "valid_control.jpg", max_bytes=1000)
        assert caught.value.reason == FailureReason.TOO_LARGE_BYTES

    def test_it_refuses_pixels_over_the_limit_from_the_header(self):
        with pytest.raises(Rejection) as caught:
            load(BAD_INPUTS / "valid_control.jpg", max_pixels=240 * 320 - 1)
        assert caught.value.reason == FailureReason.TOO_MANY_PIXELS
        assert caught.value.detail == "240x320 pixels, the limit is 76,799 pixels"

    def test_a_bomb_is_refused_against_the_configured_limit_not_pillows(self):
        with pytest.raises(Rejection) as caught:
            load(BAD_INPUTS / "decompression_bomb_30000x30000.png")
        limit = f"the limit is {settings.MAX_IMAGE_PIXELS:,} pixels"
        assert caught.value.detail in (f"30000x30000 pixels, {limit}", f"900,000,000 pixels, {limit}")

    def test_a_limit_above_pillows_default_lets_such_photos_in(self):
        assert PILImage.MAX_IMAGE_PIXELS == settings.MAX_IMAGE_PIXELS  # set when the app starts
        big = io.BytesIO()
        PILImage.new("RGB", (12000, 8000), "white").save(big, "JPEG", quality=50)  # 96 million pixels
        try:
            follow_pixel_limit(100_000_000)
            photo = load(big.getvalue(), max_pixels=100_000_000, draft_size=224)
        finally:
            follow_pixel_limit(settings.MAX_IMAGE_PIXELS)
        assert photo.size == (1500, 1000)  # decoded at an eighth of its size

    def test_it_names_heic_in_its_refusal(self):
        heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00" + b"\x00" * 64
        with pytest.raises(Rejection) as caught:
            load(heic)
        assert caught.value.reason == FailureReason.UNSUPPORTED_FORMAT
        assert "HEIC" in caught.value.detail

    def test_it_uses_the_first_frame_of_an_animated_webp(self):
        frames = [PILImage.new("RGB", (64, 64), color) for color in ((250, 0, 0), (0, 0, 250))]
        out = io.BytesIO()
        frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
        assert tuple(pixels(load(out.getvalue()))[10, 10]) == (250, 0, 0)

    def test_it_draft_decodes_big_jpegs_no_smaller_than_asked(self):
        out = io.BytesIO()
        PILImage.new("RGB", (1280, 960), (10, 200, 10)).save(out, format="JPEG")
        image = load(out.getvalue(), draft_size=256)
        assert min(image.size) >= 256 and image.size[0] < 1280

    def test_it_sniffs_the_three_formats(self):
        assert sniff_format((BAD_INPUTS / "png_with_jpg_extension.jpg").read_bytes()[:16]) == "PNG"
        assert sniff_format((BAD_INPUTS / "image.webp").read_bytes()[:16]) == "WEBP"
        assert sniff_format((BAD_INPUTS / "no_extension").read_bytes()[:16]) == "JPEG"
