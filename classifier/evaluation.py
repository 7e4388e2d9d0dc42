"""Scoring a model on labelled photos: accuracy, per-class figures, calibration and routing.

Used by `evaluate`, `promote` (the release gate) and the benchmark on served classifiers, and by
training on held-out logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import calibration
from .datasets import list_image_folder
from .frozen import Progress


def routing_report(policy: calibration.RoutingPolicy, classes: list[str], logits: torch.Tensor, labels) -> dict:
    """Calibration and auto-accept figures for logits with known labels."""
    probs = policy.calibrate(logits)
    reasons = policy.reasons(classes, probs, policy.unknown(logits))
    figures = calibration.routing_figures(probs, logits.float().softmax(dim=1), torch.as_tensor(labels), reasons)
    return figures | {"temperature": policy.temperature}


# The five classes of the system this one replaced (it reported 96.5% among them).
SEED_CLASSES = ["casual_shoes", "handbags", "shirts", "tops", "watches"]


def evaluate(
    classifier,
    data_dir: Path,
    max_per_class: int | None = None,
    progress: Progress = lambda e: None,
    only: list[str] | None = None,
) -> dict:
    """Score a loaded classifier (the serving path itself) on a labelled folder: accuracy, per
    class figures, calibration (ECE before and after) and what the routing would accept.

    `only`: score the photos of these classes and leave the folder's others out (listed in
    `classes_left_out`); without it, a folder class the model does not know is an error."""
    folder_classes, samples = list_image_folder(data_dir, max_per_class)
    left_out = sorted(set(folder_classes) - set(only)) if only is not None else []
    unknown = sorted(set(folder_classes) - set(classifier.classes) - set(left_out))
    if unknown:
        raise ValueError(f"classes the model does not know: {', '.join(unknown)}")
    samples = [(path, label) for path, label in samples if folder_classes[label] not in left_out]
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
    reasons = [outcome.review_reason for outcome in classifier.classifications(logits)]
    raw = probs if classifier.config["head"] == "imagenet_mapping" else logits.softmax(dim=1)
    report = classification_report(classes, truth, probs.argmax(dim=1).tolist())
    report |= {"unreadable": skipped, "temperature": classifier.routing.temperature, "classes_left_out": left_out}
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
