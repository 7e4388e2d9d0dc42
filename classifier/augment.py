"""Catalogue photos made to look like photos taken at a returns desk (a training view).

A catalogue packshot is an item on white: the white that touches the photo's border is cut away
and the item is laid on a background generated here (plain, a light gradient, stripes or weave,
blotches, sensor noise), turned a little, lit differently, and the result is softened and
re-compressed as a phone photo would be. A photo whose border is not white (a real photo) is
only mirrored, as the plain mirror view would be.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# A pixel is background white when all its channels are above this.
WHITE = 225
# A photo is a packshot when at least this share of its border is white.
PACKSHOT_BORDER = 0.85


def white_background(picture: Image.Image) -> np.ndarray | None:
    """The mask of the white that touches the border (True: background), or None when the
    photo is not a packshot on white."""
    pixels = np.asarray(picture.convert("RGB"))
    white = pixels.min(axis=2) > WHITE
    border = np.concatenate([white[0], white[-1], white[:, 0], white[:, -1]])
    if border.mean() < PACKSHOT_BORDER:
        return None
    background = np.zeros_like(white)
    background[0], background[-1], background[:, 0], background[:, -1] = white[0], white[-1], white[:, 0], white[:, -1]
    while True:  # grow from the border through white pixels (a flood fill, one step per row of pixels)
        grown = background.copy()
        grown[1:] |= background[:-1]
        grown[:-1] |= background[1:]
        grown[:, 1:] |= background[:, :-1]
        grown[:, :-1] |= background[:, 1:]
        grown &= white
        if np.array_equal(grown, background):
            return background
        background = grown


def generated_background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A surface an item may lie on: a colour with a gradient, stripes, blotches, and noise."""
    width, height = size
    image = np.broadcast_to(rng.uniform(30, 235, 3).astype(np.float32), (height, width, 3)).copy()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.random()
    if kind < 0.35:  # light falling off across a table or a bed
        dx, dy = rng.normal(0, 1, 2)
        image += ((xx * dx / width + yy * dy / height) * rng.uniform(10, 60))[..., None]
    elif kind < 0.6:  # wood grain, stripes, a weave
        period, angle = rng.uniform(3, 20), rng.uniform(0, np.pi)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)[..., None]
        image += wave * rng.uniform(5, 35) * rng.uniform(0.5, 1.5, 3)
    elif kind < 0.8:  # a patterned cover: coarse blotches
        coarse = rng.normal(0, 40, (max(2, height // 10), max(2, width // 10), 3)) + 128
        blotches = Image.fromarray(coarse.clip(0, 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
        image += np.asarray(blotches, np.float32) - 128
    image += rng.normal(0, rng.uniform(1, 12), (height, width, 1))
    return Image.fromarray(image.clip(0, 255).astype(np.uint8))


class DeskScene:
    """PIL transform: a packshot on a generated background (see the module's docstring); any
    other photo mirrored. Random, seeded from Python's `random` (training seeds it)."""

    def __call__(self, picture: Image.Image) -> Image.Image:
        picture = picture.convert("RGB")
        background = white_background(picture)
        if background is None:
            return picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        rng = np.random.default_rng(random.getrandbits(32))
        mask = Image.fromarray(np.where(background, 0, 255).astype(np.uint8))
        # Drop the light fringe anti-aliasing left around the item, then soften the edge.
        mask = mask.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.GaussianBlur(0.6))
        width, height = picture.size
        scale = rng.uniform(1.0, 1.35)  # some floor around the item
        canvas = generated_background(rng, (int(width * scale), int(height * scale)))
        angle = rng.uniform(-20, 20)
        item = picture.rotate(angle, Image.BICUBIC, expand=True, fillcolor=(255, 255, 255))
        mask = mask.rotate(angle, Image.BICUBIC, expand=True)
        item = ImageEnhance.Brightness(item).enhance(rng.uniform(0.7, 1.15))
        item = ImageEnhance.Color(item).enhance(rng.uniform(0.7, 1.2))
        fit = min(canvas.width / item.width, canvas.height / item.height, 1.0)
        if fit < 1:
            size = (max(1, int(item.width * fit)), max(1, int(item.height * fit)))
            item, mask = item.resize(size, Image.BICUBIC), mask.resize(size, Image.BILINEAR)
        left = int(rng.integers(0, canvas.width - item.width + 1))
        top = int(rng.integers(0, canvas.height - item.height + 1))
        canvas.paste(item, (left, top), mask)
        scene = canvas.resize((width, height), Image.BICUBIC)
        if rng.random() < 0.5:
            scene = scene.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
        if rng.random() < 0.5:
            scene = scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        encoded = io.BytesIO()
        scene.save(encoded, "JPEG", quality=int(rng.integers(40, 91)))
        return Image.open(io.BytesIO(encoded.getvalue())).convert("RGB")

    def __repr__(self) -> str:
        return "DeskScene()"
