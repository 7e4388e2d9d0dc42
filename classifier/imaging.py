"""Opening untrusted photos: one function turns bytes into an 8-bit RGB picture or a Rejection.

Policy (see README: Accepted photos):
- Formats are recognised by their magic bytes, never by the file name: JPEG, PNG and WebP
  are accepted; anything else (GIF, HEIC, SVG, HTML, text...) is `unsupported_format`.
- The pixel count is checked from the header before any decoding (`too_many_pixels`);
  the whole picture is then decoded, so a truncated file is refused (`truncated`) rather
  than classified half-grey. Pictures with a side under MIN_IMAGE_SIDE are `too_small`.
- EXIF orientation is applied. CMYK is converted to RGB, 16-bit grey is scaled to 8 bits
  (divided by 257), transparency is composited onto white, grey and palette pictures are
  expanded to three channels, and animated pictures use their first frame.
- An accepted photo is stored as those pixels re-encoded (`clean_copy`): no metadata, no
  trailing bytes, nothing of the received file but the picture.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

from django.db import models
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False
# Above its limit Pillow only warns; `check_size` refuses such a photo right after, with its size.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def follow_pixel_limit(max_pixels: int) -> None:
    """Set Pillow's own decompression-bomb guard from MAX_IMAGE_PIXELS (called when the app starts).

    Pillow warns above its limit and refuses twice that inside `Image.open`, before our header
    check can run; left at its default (89 million) it would refuse photos a higher
    MAX_IMAGE_PIXELS allows. Following the setting, its refusal stays a second line of defence,
    and `check_size` names the photo's size against the configured limit.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels


class FailureReason(models.TextChoices):
    EMPTY_FILE = "empty_file", "Empty file"
    TOO_LARGE_BYTES = "too_large_bytes", "File too large"
    UNSUPPORTED_FORMAT = "unsupported_format", "Not a JPEG, PNG or WebP photo"
    TOO_MANY_PIXELS = "too_many_pixels", "Too many pixels"
    TOO_SMALL = "too_small", "Picture too small"
    TRUNCATED = "truncated", "Truncated file"
    CORRUPT = "corrupt", "Corrupt picture"
    FILE_MISSING = "file_missing", "Stored file missing"
    WORKER_CRASHED = "worker_crashed", "Crashed the worker repeatedly"


class Rejection(Exception):
    """A photo that cannot be classified: a reason code (a FailureReason value, or a code of the
    caller's such as `storage_full`) and a sentence for people.

    The one name of a refused photo: raised where a photo is opened, and returned in its place
    among a classifier's outcomes (`classifier.outcomes.Outcome`), so one bad photo never fails the
    others of its batch. A refused photo of a batch run is stored as a `FailedImage` row.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = str(reason)
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rejection) and (self.reason, self.detail) == (other.reason, other.detail)

    def __hash__(self) -> int:
        return hash((self.reason, self.detail))


ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")


def sniff_format(head: bytes) -> str | None:
    """The container format from the first bytes of a file, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_unsupported(head: bytes) -> str:
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"avif"):
        return "HEIC/HEIF/AVIF photos are not supported: export them as JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF is not accepted: send a JPEG, PNG or WebP photo"
    return "not a JPEG, PNG or WebP photo"


def read_bytes(source: str | os.PathLike | bytes, max_bytes: int) -> bytes:
    """The file's content, refusing empty and oversized files before reading them."""
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise Rejection(FailureReason.TOO_LARGE_BYTES, f"{size} bytes, the limit is {max_bytes}")
            data = path.read_bytes()
        except FileNotFoundError:
            raise Rejection(FailureReason.FILE_MISSING, "the stored file is missing") from None
    if not data:
        raise Rejection(FailureReason.EMPTY_FILE, "the file is empty")
    if len(data) > max_bytes:
        raise Rejection(FailureReason.TOO_LARGE_BYTES, f"{len(data)} bytes, the limit is {max_bytes}")
    return data


def open_image(
    source: str | os.PathLike | bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    min_side: int,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode a photo fully and return it as 8-bit RGB, upright; or raise Rejection.

    `draft_size` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, as
    long as both sides stay at least that large: big camera photos decode several
    times faster and the model never sees more pixels than it needs.
    """
    data = read_bytes(source, max_bytes)
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise Rejection(FailureReason.UNSUPPORTED_FORMAT, _describe_unsupported(data[:16]))
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
        check_size(image.size, max_pixels, min_side)
        if draft_size and fmt == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.seek(0)
        image.load()
    except Rejection:
        raise
    except Image.DecompressionBombError as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared[1]):,} pixels" if declared else "more pixels than Pillow opens"
        raise Rejection(FailureReason.TOO_MANY_PIXELS, f"{size}, the limit is {max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise Rejection(FailureReason.CORRUPT, f"the {fmt} data cannot be read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = FailureReason.TRUNCATED if "truncated" in str(exc).lower() else FailureReason.CORRUPT
        raise Rejection(reason, f"{fmt}: {exc}") from None
    return to_rgb(image)


def open_photo(source: str | os.PathLike | bytes, draft_size: int | None = None) -> Image.Image:
    """`open_image` with the configured limits (MAX_UPLOAD_BYTES, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE)."""
    from django.conf import settings

    return open_image(
        source,
        max_bytes=settings.MAX_UPLOAD_BYTES,
        max_pixels=settings.MAX_IMAGE_PIXELS,
        min_side=settings.MIN_IMAGE_SIDE,
        draft_size=draft_size,
    )


def check_size(size: tuple[int, int], max_pixels: int, min_side: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise Rejection(FailureReason.TOO_MANY_PIXELS, f"{width}x{height} pixels, the limit is {max_pixels:,} pixels")
    if min(width, height) < min_side:
        raise Rejection(FailureReason.TOO_SMALL, f"{width}x{height} pixels, each side needs at least {min_side}")


def to_rgb(image: Image.Image) -> Image.Image:
    """Normalise any decoded picture to upright 8-bit RGB (the policy in the module docstring)."""
    try:
        image = ImageOps.exif_transpose(image)
    except (ValueError, OSError, SyntaxError):
        pass  # an unreadable EXIF block is ignored; the pixels are fine
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: scale 0..65535 down to 0..255 instead of clipping everything to white.
        image = image.point(lambda value: value / 257).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def clean_copy(data: bytes, picture: Image.Image) -> bytes:
    """How an accepted photo is stored: `picture` (its decoded, policy-converted RGB pixels)
    re-encoded with no metadata and nothing after the image data. A JPEG keeps its own
    quantisation tables and chroma subsampling, so its pixels barely change; PNG and WebP
    photos are stored as PNG (lossless)."""
    out = io.BytesIO()
    if sniff_format(data[:16]) == "JPEG":
        try:
            with Image.open(io.BytesIO(data)) as original:
                tables = original.quantization
                sampling = JpegImagePlugin.get_sampling(original)
            if len(tables) < 2 or sampling == -1:  # a grey or unusual JPEG: plain high quality
                picture.save(out, format="JPEG", quality=95)
            else:
                picture.save(out, format="JPEG", qtables=tables, subsampling=sampling)
            return out.getvalue()
        except (OSError, ValueError, KeyError):
            out = io.BytesIO()
            picture.save(out, format="JPEG", quality=95)
            return out.getvalue()
    picture.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def reencode_jpeg(image: Image.Image, max_side: int, quality: int = 85) -> bytes:
    """A small JPEG of an already validated picture, with no metadata (for thumbnails)."""
    thumb = image.copy()
    thumb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def scaled_jpeg(image: Image.Image, height: int, max_width: int, quality: int = 88) -> bytes:
    """A JPEG of an already validated picture at `height` pixels (narrower when the width would pass
    `max_width`), up or down, with Lanczos resampling: a small photo shown large stays crisp."""
    scale = min(height / image.height, max_width / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    picture = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=quality)
    return out.getvalue()
