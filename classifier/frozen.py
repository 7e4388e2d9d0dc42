"""The frozen part of a network being trained: run once per photo and view, kept in memory.

On a 2-core CPU running the frozen stages is most of the work of training; with their outputs
cached (float16), an epoch only runs the trainable last stages (`SplitNetwork.suffix`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision import transforms

from . import backbones
from .augment import DeskScene
from .imaging import Rejection, open_photo

logger = logging.getLogger(__name__)

# Receives the progress events of training and scoring ({"stage": ..., ...}).
Progress = Callable[[dict], None]


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def _fast_autocast():
    """bf16 halves the time of the frozen part on CPUs that compute it in hardware, at no cost in
    accuracy (docs/model.md; the frozen activations are kept in float16 anyway). Elsewhere bf16 is
    emulated and about ten times slower than fp32 (AVX2: 2.3 against 26 img/s), so fp32 it is."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16())


def view_transforms(prep: dict, views: int, desk_scenes: bool = False) -> list[Callable]:
    """View 0 is what serving sees, view 1 its mirror image (or, with `desk_scenes`, a
    catalogue photo laid on a generated background: `augment.DeskScene`), the rest random crops."""
    plain = backbones.eval_transform(prep)
    second = DeskScene() if desk_scenes else transforms.RandomHorizontalFlip(p=1.0)
    second = transforms.Compose([second, plain])
    size = prep["input_size"][-1]
    whole = [backbones.Letterbox()] if prep.get("resize") == "pad" else []
    cropped = transforms.Compose(
        [
            *whole,
            transforms.RandomResizedCrop(size, scale=(0.6, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            backbones.to_tensor(prep),
        ]
    )
    return ([plain, second] + [cropped] * max(0, views - 2))[: max(1, views)]


class SplitNetwork:
    """`prefix` is frozen and run once per photo; `suffix` is what an epoch trains."""

    def __init__(self, model: torch.nn.Module, unfreeze: int):
        self.model = model
        self.cut = len(model.blocks) - unfreeze
        if not 0 <= unfreeze <= len(model.blocks):
            raise ValueError(f"unfreeze must be between 0 and {len(model.blocks)}")
        self.unfreeze = unfreeze

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.bn1(m.conv_stem(x))
        for stage in m.blocks[: self.cut]:
            x = stage(x)
        if self.unfreeze == 0:
            x = m.forward_head(m.bn2(m.conv_head(x)), pre_logits=True)
        return x

    def suffix(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit features (the pooled 1280-d vector) from a prefix output."""
        if self.unfreeze == 0:
            return x
        m = self.model
        for stage in m.blocks[self.cut :]:
            x = stage(x)
        return m.forward_head(m.bn2(m.conv_head(x)), pre_logits=True)

    def trainable_modules(self) -> list[torch.nn.Module]:
        m = self.model
        if self.unfreeze == 0:
            return [m.classifier]
        return [*m.blocks[self.cut :], m.conv_head, m.bn2, m.classifier]

    def set_training(self, training: bool) -> None:
        self.model.eval()
        for module in self.trainable_modules():
            module.train(training)


def cache_prefix(
    net: SplitNetwork,
    samples: list[tuple[Path, int]],
    views: list[Callable],
    batch_size: int,
    progress: Progress,
    part: str = "train",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prefix outputs for every (view, photo) as float16 [views, photos, ...], their labels and
    their positions in `samples`.

    Photos are decoded batch by batch (never all at once), so large photos cost time, not
    memory; a photo that cannot be decoded is left out with a warning.
    """
    outputs: list[list[torch.Tensor]] = [[] for _ in views]
    labels: list[int] = []
    kept: list[int] = []
    total = len(views) * len(samples)
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            photos = []
            for position, (path, label) in enumerate(samples[start : start + batch_size], start):
                try:
                    photos.append(open_photo(path))
                except Rejection as exc:
                    logger.warning("skipping training photo %s: %s", path, exc)
                    continue
                labels.append(label)
                kept.append(position)
            for v, transform in enumerate(views):
                if photos:
                    batch = torch.stack([transform(photo) for photo in photos])
                    batch = batch.contiguous(memory_format=torch.channels_last)
                    with _fast_autocast():
                        outputs[v].append(net.prefix(batch).to(torch.float16))
            progress(
                {
                    "stage": "features",
                    "part": part,
                    "done": min(start + batch_size, len(samples)) * len(views),
                    "total": total,
                }
            )
    return (
        torch.stack([torch.cat(chunks) for chunks in outputs]),
        torch.tensor(labels, dtype=torch.long),
        torch.tensor(kept, dtype=torch.long),
    )


def head_logits(net: SplitNetwork, cache: torch.Tensor, batch_size: int) -> torch.Tensor:
    features = pooled_features(net, cache, batch_size)
    with torch.inference_mode():
        return net.model.classifier(features).float()


def pooled_features(net: SplitNetwork, cache: torch.Tensor, batch_size: int) -> torch.Tensor:
    net.set_training(False)
    with torch.inference_mode():
        chunks = [net.suffix(cache[i : i + batch_size].float()) for i in range(0, len(cache), batch_size)]
    return torch.cat(chunks).clone()
