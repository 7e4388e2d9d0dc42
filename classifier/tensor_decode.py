"""Decoding a chunk of photos as tensors: nvjpeg on a CUDA device, batched, with the
resize done on the device too (INFERENCE_DECODE=torchvision; `auto` picks it on CUDA).

The same code runs on the CPU (libjpeg-turbo through torchvision), which is how the tests
check it on a machine without a GPU. Only plain photos take this path: a JPEG whose header
passes the size limits, whose colour is three-channel YCbCr, which needs no EXIF rotation and
whose data ends with the end-of-image marker. Everything else, and any JPEG the batched
decoder refuses, goes through the PIL path one photo at a time (`fallback`), which applies the
whole policy of `imaging` and gives a refused photo its reason. Photos are stored re-encoded
at registration (`imaging.clean_copy`), so nearly every stored photo is a plain JPEG.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision.io
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .imaging import Rejection, check_size, read_bytes, sniff_format

logger = logging.getLogger(__name__)

# torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they remain the
# documented batched nvjpeg entry point, and the warning would repeat in every worker's log.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")

# Photos decoded together at most (64 full-size 1280x960 photos: 240 MB), and resized together at
# most (16 such photos padded to 1280x1280 in float: 315 MB), so a chunk's memory stays bounded.
DECODE_GROUP = 64
RESIZE_GROUP = 16
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    min_side: int


def plain_jpeg(data: bytes, limits: Limits) -> bool:
    """Whether the batched decoder may take this file. Raises Rejection for a picture the
    size limits refuse (the same reasons as the PIL path, found from the header alone)."""
    if sniff_format(data[:16]) != "JPEG" or not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return False
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as header:
            check_size(header.size, limits.max_pixels, limits.min_side)
            return header.mode == "RGB" and header.getexif().get(_EXIF_ORIENTATION, 1) == 1
    except Rejection:
        raise
    except Exception:  # an unreadable header: the PIL path names the problem
        return False


def decode_chunk(
    sources: list,
    prep: dict,
    device: torch.device,
    limits: Limits,
    fallback: Callable[[object], object],
) -> list:
    """One item per source, in order: a uint8 CHW tensor of the model's input size on `device`,
    or whatever `fallback(source)` returns for a photo this path does not take (a tensor or a
    Rejection)."""
    results: list = [None] * len(sources)
    plain: list[tuple[int, bytes]] = []
    for index, source in enumerate(sources):
        try:
            data = read_bytes(source, limits.max_bytes)
            if plain_jpeg(data, limits):
                plain.append((index, data))
                continue
        except Rejection:
            pass  # the PIL path refuses it again and names the reason
    for start in range(0, len(plain), DECODE_GROUP):
        group = plain[start : start + DECODE_GROUP]
        decoded = _decode_jpegs([data for _, data in group], device)
        pictures = {index: picture for (index, _), picture in zip(group, decoded) if picture is not None}
        for index, tensor in _resize(pictures, prep):
            results[index] = tensor
    for index, source in enumerate(sources):
        if results[index] is None:
            item = fallback(source)
            results[index] = item.to(device) if isinstance(item, torch.Tensor) else item
    return results


def _decode_jpegs(datas: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """Decoded RGB pictures (uint8 CHW on `device`); None where the decoder refused one."""
    if not datas:
        return []
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    try:
        return list(torchvision.io.decode_jpeg(encoded, mode=torchvision.io.ImageReadMode.RGB, device=device))
    except RuntimeError as exc:
        # One bad photo fails the whole batched call: decode them one by one to find it.
        logger.info("batched JPEG decoding failed (%s); decoding one photo at a time", exc)
    pictures: list[torch.Tensor | None] = []
    for tensor in encoded:
        try:
            pictures.append(torchvision.io.decode_jpeg(tensor, mode=torchvision.io.ImageReadMode.RGB, device=device))
        except RuntimeError:
            pictures.append(None)
    return pictures


def _resize(pictures: dict[int, torch.Tensor], prep: dict):
    """(index, uint8 tensor of the input size): photos of one size are resized together."""
    by_shape: dict[tuple, list[int]] = {}
    for index, picture in pictures.items():
        by_shape.setdefault(tuple(picture.shape), []).append(index)
    for indices in by_shape.values():
        for start in range(0, len(indices), RESIZE_GROUP):
            group = indices[start : start + RESIZE_GROUP]
            batch = torch.stack([pictures[index] for index in group])
            yield from zip(group, square(batch, prep))


def square(batch: torch.Tensor, prep: dict) -> torch.Tensor:
    """uint8 NCHW photos of one size -> uint8 NCHW of the input size, as `backbones.square_transform`
    does with PIL: padded to a square with white and resized ("pad"), or short side resized and
    centre-cropped ("crop"), with an antialiased filter."""
    size = prep["input_size"][-1]
    interpolation = InterpolationMode(prep["interpolation"])
    height, width = batch.shape[-2:]
    x = batch.float()
    if prep.get("resize", "crop") == "pad":
        side = max(height, width)
        left, top = (side - width) // 2, (side - height) // 2
        if side != width or side != height:
            x = TF.pad(x, [left, top, side - width - left, side - height - top], fill=255.0)
        x = TF.resize(x, [size, size], interpolation=interpolation, antialias=True)
    else:
        x = TF.resize(x, int(size / prep["crop_pct"]), interpolation=interpolation, antialias=True)
        x = TF.center_crop(x, [size, size])
    return x.round_().clamp_(0, 255).to(torch.uint8)
