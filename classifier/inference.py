"""Serving: load a registered model once per process and classify photos in batches.

Takes photo files (paths or bytes) and returns plain outcomes (`classifier.outcomes`); never
touches the ORM. Preprocessing comes from the model's own data config (timm), the network runs
under eval() and torch.inference_mode(). Photos are decoded ahead of the forward passes in a
thread pool (`decoding`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from django.conf import settings
from prometheus_client import Gauge

from . import artifacts, backbones, calibration, registry, runtimes
from .decoding import Decoded, Decoding, PhotoDecoder, Source
from .outcomes import Classification, Outcome

logger = logging.getLogger(__name__)

# Photos per forward pass when INFERENCE_BATCH is 0 (auto). On the CPU small batches are
# both faster and lighter (docs/performance.md: 16 gives 55 img/s and a 1.3 GB peak, 64 gives
# 40 img/s and 1.9 GB); a GPU wants large ones.
AUTO_FORWARD_BATCH = {"cpu": 16, "cuda": 128}

# "livemax": with several processes, 1 as soon as one live process holds a model.
MODEL_LOADED = Gauge("model_loaded", "1 when a model is loaded in a serving process", multiprocess_mode="livemax")
# 1 while a live process serves the last known good copy because the registry did not answer.
MODEL_FROM_CACHE = Gauge(
    "model_served_from_cache",
    "1 when a process serves the last known good copy: the registry did not answer",
    multiprocess_mode="livemax",
)


# 1 for the version a live process serves (the dashboard's "serving model version").
MODEL_SERVING = Gauge(
    "model_serving_info", "The model version a process serves", ["version", "runtime"], multiprocess_mode="livemax"
)


class ModelUnavailable(Exception):
    """No model can be loaded: the registry has none and no local copy exists, or it is damaged."""


class InferenceError(Exception):
    """The forward pass itself failed (not one photo's fault)."""


@dataclass
class Classifier:
    """`model` maps a batch of preprocessed photos to logits: the PyTorch network, or an
    ONNX Runtime session (`runtime` says which)."""

    version: str
    config: dict
    model: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    source: str = "registry"  # or "cache": served from the last known good copy
    runtime: str = "torch"
    decoder: str = "pil"  # or "torchvision": a chunk at a time, on the device (INFERENCE_DECODE)
    classes: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.classes = list(self.config["classes"])
        self.photos = PhotoDecoder(self.config["preprocessing"], self.device, self.decoder)
        self.routing = calibration.RoutingPolicy.from_config(
            self.config, default_threshold=settings.REVIEW_CONFIDENCE_THRESHOLD, runtime=self.runtime
        )
        if self.config["head"] == "imagenet_mapping":
            groups = [self.config["imagenet_mapping"][name] for name in self.classes]
            self._mapping = torch.zeros(1000, len(self.classes))
            for column, indices in enumerate(groups):
                self._mapping[indices, column] = 1.0

    @property
    def demo(self) -> bool:
        return bool(self.config.get("demo"))

    def classify_files(self, sources: list[Source]) -> list[Outcome]:
        """One outcome per source, in order: a Classification, or the photo's Rejection."""
        return self.classify_decoding(self.start_decoding(sources))

    def start_decoding(self, sources: list[Source]) -> Decoding:
        """Queue the photos for decoding in the thread pool (see classify_decoding)."""
        return self.photos.start(sources)

    def classify_decoding(self, decoding: Decoding) -> list[Outcome]:
        """Outcomes of photos being decoded, in order. The forward passes start once the whole
        chunk is decoded: decoder threads running beside ONNX Runtime's threads on the same cores
        slow both down (docs/performance.md); the batch path decodes the next chunk while this
        one's results are written instead."""
        decoded = decoding.results()
        tensors = [item for item in decoded if isinstance(item, torch.Tensor)]
        classifications = iter(self.classify_tensors(tensors))
        return [next(classifications) if isinstance(item, torch.Tensor) else item for item in decoded]

    def decode_many(self, sources: list[Source]) -> list[Decoded]:
        """Preprocessed tensors (or Rejections), decoded in the thread pool, in order."""
        return self.photos.decode_many(sources)

    @property
    def forward_batch(self) -> int:
        return settings.INFERENCE_BATCH or AUTO_FORWARD_BATCH.get(self.device.type, 16)

    def classify_tensors(self, tensors: list[torch.Tensor]) -> list[Classification]:
        results: list[Classification] = []
        for logits in self.logits(tensors):
            results.extend(self.classifications(logits))
        return results

    def logits(self, tensors: list[torch.Tensor]):
        """Raw network outputs (N x outputs), one forward batch at a time."""
        size = self.forward_batch
        for start in range(0, len(tensors), size):
            batch = torch.stack(tensors[start : start + size])
            try:
                batch = backbones.normalise(batch.to(self.device), self.config["preprocessing"])
                if self.runtime == "torch":
                    batch = batch.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), self._autocast():
                    logits = self.model(batch).float().cpu()
            except Exception as exc:  # RuntimeError from torch, onnxruntime's own types
                raise InferenceError(f"{type(exc).__name__}: {exc}") from exc
            yield logits

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        if self.config["head"] == "imagenet_mapping":
            probs = logits.softmax(dim=1) @ self._mapping
            return probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return self.routing.calibrate(logits)

    def classifications(self, logits: torch.Tensor) -> list[Classification]:
        """Classifications with their routing decision from raw outputs."""
        probs = self.calibrated(logits)
        unknown = self.routing.unknown(logits) if self.config["head"] != "imagenet_mapping" else None
        reasons = self.routing.reasons(self.classes, probs, unknown)
        confidences, indices = probs.max(dim=1)
        return [
            Classification(
                predicted_class=self.classes[index],
                confidence=round(confidence, 6),
                probabilities={name: round(p, 6) for name, p in zip(self.classes, row)},
                review_reason=reason,
                threshold=round(self.routing.threshold(self.classes[index]), 6),
            )
            for index, confidence, row, reason in zip(indices.tolist(), confidences.tolist(), probs.tolist(), reasons)
        ]

    def synchronise(self) -> None:
        """Wait for the work queued on the device (GPU decoding and forward passes are asynchronous)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def describe(self) -> dict:
        """The serving configuration, as benchmarks and reports print it."""
        if self.runtime == runtimes.ONNX_INT8:
            runtime = f"{runtimes.onnxruntime_version()} int8 (static QDQ)"
        else:
            runtime = "pytorch eager fp32" if self.device.type == "cpu" else "pytorch eager bf16 channels_last"
        gpu = {"gpu": torch.cuda.get_device_name(self.device)} if self.device.type == "cuda" else {}
        return {
            "arch": self.config["arch"],
            "input_size": self.config["preprocessing"]["input_size"],
            "model_version": self.version,
            "runtime": runtime,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "decoder": self.decoder,
            **gpu,
            "forward_batch": self.forward_batch,
        }

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


# --- Loading ------------------------------------------------------------------------

_lock = threading.Lock()
_classifiers: dict[tuple[str, str, str, str], Classifier] = {}  # (model name, version, runtime, decode setting)
_production: dict[tuple[str, str], tuple[str, str, float]] = {}  # (name, alias) -> (version, source, checked at)
PRODUCTION_RECHECK_SECONDS = 60


def get_classifier(version: str | None = None) -> Classifier:
    """The classifier for a version (default: the production alias), loaded once per process.

    The production alias is resolved at most once a minute, so promotions reach running
    processes without a restart; if the registry does not answer, the version it last
    resolved to is served from the local copy.
    """
    with _lock:
        source = "registry"
        if version is None:
            version, source = _production_version()
        key = (settings.MODEL_NAME, version, settings.INFERENCE_RUNTIME, settings.INFERENCE_DECODE)
        if key not in _classifiers:
            _classifiers.clear()  # keep one model in memory
            _classifiers[key] = load_model_dir(_local_copy(version), version, source)
            MODEL_LOADED.set(1)
        classifier = _classifiers[key]
        classifier.source = source
        MODEL_FROM_CACHE.set(1 if source == "cache" else 0)
        _set_serving_info(classifier)
        return classifier


def resolve_production() -> tuple[str, str]:
    """(version, source) of the production alias, without loading the model."""
    with _lock:
        return _production_version()


def loaded_state() -> dict:
    """What this process has loaded, for /health; never triggers a load."""
    classifier = next(iter(_classifiers.values()), None)
    if classifier is None:
        return {"loaded": False, "version": None, "demo": None, "source": None, "runtime": None, "decoder": None}
    return {
        "loaded": True,
        "version": classifier.version,
        "demo": classifier.demo,
        "source": classifier.source,
        "runtime": classifier.runtime,
        "decoder": classifier.decoder,
    }


def refresh_model_gauge() -> None:
    """Set `model_loaded` from what this process holds (never loads a model)."""
    classifier = next(iter(_classifiers.values()), None)
    MODEL_LOADED.set(1 if classifier else 0)
    MODEL_FROM_CACHE.set(1 if classifier and classifier.source == "cache" else 0)
    _set_serving_info(classifier)


_serving_labels: tuple[str, str] | None = None


def _set_serving_info(classifier: Classifier | None) -> None:
    """Point `model_serving_info` at what this process serves now (0 for what it served before)."""
    global _serving_labels
    labels = (classifier.version, classifier.runtime) if classifier else None
    if _serving_labels and _serving_labels != labels:
        MODEL_SERVING.labels(*_serving_labels).set(0)
    if labels:
        MODEL_SERVING.labels(*labels).set(1)
    _serving_labels = labels


def forget_loaded() -> None:
    """Drop every loaded model and alias answer (tests and reloads)."""
    with _lock:
        _classifiers.clear()
        _production.clear()


def _production_version() -> tuple[str, str]:
    alias = settings.MODEL_ALIAS
    known = _production.get((settings.MODEL_NAME, alias))
    if known and time.monotonic() - known[2] < PRODUCTION_RECHECK_SECONDS:
        return known[0], known[1]
    try:
        version, source = registry.alias_version(alias), "registry"
    except registry.RegistryUnavailable as exc:
        version, source = registry.remembered_alias(alias), "cache"
        logger.warning("model registry unavailable (%s); last known good version: %s", exc, version)
    if version is None:
        raise ModelUnavailable(f"no version of {settings.MODEL_NAME!r} has the alias {alias!r}")
    _production[(settings.MODEL_NAME, alias)] = (version, source, time.monotonic())
    return version, source


def _local_copy(version: str) -> Path:
    try:
        return registry.fetch_version(version)
    except registry.RegistryUnavailable as exc:
        raise ModelUnavailable(str(exc)) from exc


def load_model_dir(path: Path, version: str, source: str = "registry") -> Classifier:
    """Build the network from a model folder, refusing weights whose digest does not match."""
    try:
        config, state = artifacts.read_model_dir(path)
    except artifacts.ArtifactError as exc:
        raise ModelUnavailable(f"model version {version}: {exc}") from exc
    _configure_threads()
    device = pick_device()
    runtime = pick_runtime(config, device, version)
    if runtime == runtimes.ONNX_INT8:
        try:
            onnx_file = artifacts.runtime_file(path, config, runtime)
            model = runtimes.OnnxRunner(onnx_file, torch.get_num_threads())
        except (artifacts.ArtifactError, runtimes.RuntimeUnavailable) as exc:
            raise ModelUnavailable(f"model version {version}: {exc}") from exc
    else:
        num_classes = 1000 if config["head"] == "imagenet_mapping" else len(config["classes"])
        model = backbones.create_model(config["arch"], num_classes)
        model.load_state_dict(state, strict=True)
        model = model.eval().to(device).to(memory_format=torch.channels_last)
    del state
    logger.info(
        "loaded model %s version %s (%s, %s) on %s", settings.MODEL_NAME, version, config["arch"], runtime, device
    )
    return Classifier(
        version=version,
        config=config,
        model=model,
        device=device,
        source=source,
        runtime=runtime,
        decoder=pick_decoder(device),
    )


def pick_runtime(config: dict, device: torch.device, version: str) -> str:
    """INFERENCE_RUNTIME: `auto` serves the int8 ONNX network on the CPU when the version has
    one, PyTorch otherwise; `torch` always PyTorch; `onnx-int8` insists on the int8 network."""
    wanted = settings.INFERENCE_RUNTIME
    has_int8 = runtimes.ONNX_INT8 in config.get("runtimes", {})
    if wanted == runtimes.ONNX_INT8:
        if device.type != "cpu":
            raise ModelUnavailable("INFERENCE_RUNTIME=onnx-int8 runs on the CPU only (set INFERENCE_DEVICE=cpu)")
        if not has_int8:
            raise ModelUnavailable(f"model version {version} has no int8 ONNX network (INFERENCE_RUNTIME=onnx-int8)")
        return runtimes.ONNX_INT8
    if wanted == "auto" and device.type == "cpu" and has_int8:
        return runtimes.ONNX_INT8
    return "torch"


def pick_decoder(device: torch.device) -> str:
    """INFERENCE_DECODE: `auto` decodes a chunk at a time with nvjpeg on a CUDA device and photo by
    photo with PIL on the CPU (PIL's reduced-scale JPEG decoding is faster there for big photos)."""
    wanted = settings.INFERENCE_DECODE
    if wanted == "auto":
        return "torchvision" if device.type == "cuda" else "pil"
    return wanted


def pick_device() -> torch.device:
    wanted = settings.INFERENCE_DEVICE
    if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ModelUnavailable("INFERENCE_DEVICE=cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def _configure_threads() -> None:
    threads = settings.INFERENCE_THREADS or os.cpu_count() or 1
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
