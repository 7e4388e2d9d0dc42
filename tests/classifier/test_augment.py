"""Desk scenes: catalogue packshots laid on generated backgrounds, real photos left alone."""

import random

import numpy as np
from PIL import Image, ImageOps

from classifier.augment import DeskScene, white_background
from tests.helpers import DATASET, REAL_DATASET


def border_white_share(picture: Image.Image) -> float:
    pixels = np.asarray(picture.convert("RGB"))
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return float((border.min(axis=1) > 225).mean())


def test_a_packshot_is_laid_on_a_background_and_keeps_its_size():
    random.seed(0)
    photos = sorted((DATASET / "train" / "shirts").glob("*.jpg"))[:20]
    for path in photos:
        packshot = Image.open(path).convert("RGB")
        assert white_background(packshot) is not None
        scene = DeskScene()(packshot)
        assert scene.size == packshot.size
        # No longer on white: the border is the generated surface.
        assert border_white_share(scene) < 0.5, path


def test_the_same_seed_gives_the_same_scene_and_another_seed_another():
    packshot = Image.open(sorted((DATASET / "train" / "watches").glob("*.jpg"))[0]).convert("RGB")
    scenes = []
    for seed in (5, 5, 6):
        random.seed(seed)
        scenes.append(np.asarray(DeskScene()(packshot)))
    assert np.array_equal(scenes[0], scenes[1]) and not np.array_equal(scenes[0], scenes[2])


def test_a_real_photo_is_only_mirrored():
    photo = Image.open(sorted((REAL_DATASET / "train" / "tshirts").glob("*.jpg"))[0]).convert("RGB")
    assert white_background(photo) is None
    assert np.array_equal(np.asarray(DeskScene()(photo)), np.asarray(ImageOps.mirror(photo)))
