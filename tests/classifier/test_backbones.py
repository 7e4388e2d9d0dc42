"""The pip-shipped ImageNet weights, mapped onto timm's network, recognise what ImageNet knows."""

import pytest
import torch
from timm.data import ImageNetInfo, create_transform, resolve_data_config

from classifier import backbones
from classifier.imaging import open_image
from tests.helpers import dev_photos

# Development-set classes that have a direct ImageNet counterpart.
EXPECTED = {
    "jeans": {608},  # jean, blue jean, denim
    "sunglasses": {836, 837},  # sunglass; sunglasses, dark glasses
    "sports_shoes": {770},  # running shoe
    "tshirts": {610},  # jersey, T-shirt
}


@pytest.fixture(scope="module")
def imagenet_network():
    return backbones.create_pretrained("lite0").eval()


def top5(network, paths) -> list[set[int]]:
    transform = create_transform(**resolve_data_config({}, model=network))
    batch = torch.stack([transform(open_image(p, max_bytes=1 << 24, max_pixels=10**8, min_side=1)) for p in paths])
    with torch.inference_mode():
        return [set(row) for row in network(batch).topk(5).indices.tolist()]


@pytest.mark.parametrize("category", sorted(EXPECTED))
def test_it_names_the_imagenet_class_of_dev_photos(imagenet_network, category):
    photos = [path for path, _ in dev_photos("val", per_class=10, classes=[category])]
    hits = sum(bool(found & EXPECTED[category]) for found in top5(imagenet_network, photos))
    assert hits >= 7, f"{category}: the ImageNet class is in the top 5 for only {hits} of 10 photos"


def test_the_class_names_come_with_timm():
    assert ImageNetInfo().index_to_description(608).startswith("jean")


def test_it_maps_every_checkpoint_key_for_each_size():
    for arch in backbones.ARCHES:
        network = backbones.create_pretrained(arch)  # strict loading: a key left over or missing raises
        assert network.classifier.out_features == 1000


def test_a_plausible_mapping_mistake_is_caught_by_the_photos():
    """The check above is not a formality: exchanging two same-shaped BatchNorms in every
    inverted-residual block (a classic key-mapping slip) loads cleanly and breaks recognition."""
    broken = backbones.create_pretrained("lite0").eval()
    state = broken.state_dict()
    swapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("blocks.") and parts[1] != "0" and parts[3] in ("bn1", "bn2"):
            parts[3] = "bn2" if parts[3] == "bn1" else "bn1"
        swapped[".".join(parts)] = value
    broken.load_state_dict(swapped)
    photos = [path for path, _ in dev_photos("val", per_class=10, classes=["jeans"])]
    hits = sum(bool(found & EXPECTED["jeans"]) for found in top5(broken, photos))
    assert hits <= 2
