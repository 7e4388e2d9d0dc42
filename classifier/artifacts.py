"""The on-disk form of a model version: `config.json` + `weights.safetensors`.

config.json holds the architecture, the class names in output order, the head type,
the preprocessing and the SHA-256 of the weights file, which loading checks so that a
damaged or tampered copy is refused. Files for other serving runtimes (the int8 ONNX
network) sit beside them, listed with their digests under `runtimes`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = 1


class ArtifactError(Exception):
    """A model folder that is missing, unreadable, or does not match its digest."""


def save_model_dir(model: torch.nn.Module, config: dict, path: Path) -> dict:
    path.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE))
    config = {**config, "format": FORMAT, "weights_sha256": sha256_file(path / WEIGHTS_FILE)}
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    return config


def read_model_dir(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and the weights, after checking the weights against the recorded digest."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        weights = path / WEIGHTS_FILE
        digest = sha256_file(weights)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model folder {path} is unreadable: {exc}") from exc
    if digest != config.get("weights_sha256"):
        raise ArtifactError(f"model folder {path}: weights digest mismatch (damaged or tampered copy)")
    return config, load_file(str(weights))


def runtime_file(path: Path, config: dict, runtime: str) -> Path | None:
    """The file a serving runtime needs (None: the version has none), checked against its digest."""
    entry = config.get("runtimes", {}).get(runtime)
    if not entry:
        return None
    file = path / entry["file"]
    try:
        digest = sha256_file(file)
    except OSError as exc:
        raise ArtifactError(f"model folder {path}: {entry['file']} is unreadable: {exc}") from exc
    if digest != entry.get("sha256"):
        raise ArtifactError(f"model folder {path}: {entry['file']} digest mismatch (damaged or tampered copy)")
    return file


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
