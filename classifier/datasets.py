"""Labelled photo folders: ImageFolder listing, the manifest of what a version was trained on,
and the held-out split.

An ImageFolder has one sub-folder per class, named after the class (`photos/shirts/*.jpg`, ...).
Folders whose names start with `.` or `_` are not classes (`export_reviews` keeps the photos
reviewers found to be none of our categories, or unusable, in `_none_of_our_categories/` and
`_unusable/` beside the classes).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def list_image_folder(root: Path, max_per_class: int | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted folder names) and (path, class index) for every photo."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if not classes:
        raise ValueError(f"{root} has no class folders")
    samples = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        samples.extend((path, index) for path in files[:max_per_class])
    return classes, samples


def list_image_folders(
    roots: list[Path], max_per_class: int | None = None
) -> tuple[list[str], list[tuple[Path, list[tuple[Path, int]]]]]:
    """Several labelled folders (catalogue photos, real photos of some of the classes, ...):
    the classes of all of them together (sorted), and each folder's (path, class index) pairs
    indexed by those classes."""
    listed = [(Path(root), *list_image_folder(root, max_per_class)) for root in roots]
    classes = sorted({name for _, names, _ in listed for name in names})
    folders = []
    for root, names, samples in listed:
        index = [classes.index(name) for name in names]
        folders.append((root, [(path, index[label]) for path, label in samples]))
    return classes, folders


def folder_label(root: Path) -> str:
    """A short name for a labelled folder in metrics and reports: `refund-items-real/val` is
    "refund-items-real" (a folder named train, val or test is named after its parent)."""
    root = Path(root)
    name = root.name if root.name else root.resolve().name
    if name in ("train", "val", "test") and root.parent.name:
        name = root.parent.name
    return name


def folder_labels(roots: list[Path]) -> list[str]:
    """Distinct labels for several folders (a repeated label gets its position appended)."""
    labels = [folder_label(root) for root in roots]
    return [label if labels.count(label) == 1 else f"{label}-{i + 1}" for i, label in enumerate(labels)]


def labelled_samples(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """The photos of a labelled folder whose class is one of `classes`, indexed like them."""
    folder_classes, samples = list_image_folder(root)
    index = {name: classes.index(name) for name in folder_classes if name in classes}
    return [(path, index[folder_classes[label]]) for path, label in samples if folder_classes[label] in index]


def dataset_manifest(samples: list[tuple[Path, int]], classes: list[str], root: Path, folder: str = "") -> list[dict]:
    """One row per training photo (folder, class, path, SHA-256): what a version was trained on."""
    rows = []
    for path, label in samples:
        try:
            relative = str(Path(path).relative_to(root))
        except ValueError:
            relative = str(path)
        rows.append(
            {
                "folder": folder,
                "class": classes[label],
                "file": relative,
                "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            }
        )
    return rows


def manifest_csv(rows: list[dict]) -> str:
    """The manifest as CSV (folder, class, file, sha256), sorted by folder and file: the same
    photos, the same text."""
    lines = ["folder,class,file,sha256"] + [
        f"{row['folder']},{row['class']},{row['file']},{row['sha256']}"
        for row in sorted(rows, key=lambda r: (r["folder"], r["file"]))
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


def spread_sample(items: list, count: int) -> list:
    """`count` items taken at even steps through the list (every class of a class-ordered list)."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(index * step)] for index in range(count)]
