"""Building a version's int8 ONNX network (the CPU serving path, `runtimes.OnnxRunner`).

`export_int8` turns a trained network into a statically quantised ONNX file: QDQ format, int8
weights per channel, uint8 activations calibrated on training photos; the stem convolution and
the classifier stay in float. `build_int8` checks it against the fp32 network and refits the
routing policy on its own outputs.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import backbones
from .frozen import Progress
from .imaging import Rejection, open_photo
from .runtimes import INPUT_NAME, ONNX_INT8_FILE, OUTPUT_NAME, OnnxRunner

logger = logging.getLogger(__name__)

CALIBRATION_BATCH = 32


def export_int8(
    model: torch.nn.Module, calibration: list[torch.Tensor], target_dir: Path, progress: Progress | None = None
) -> dict:
    """Write model.int8.onnx into target_dir; returns its config entry (file, digest, calibration)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .artifacts import sha256_file

    if not calibration:
        raise ValueError("int8 calibration needs at least one photo")
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    sample = torch.stack(calibration[: min(2, len(calibration))])
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, _quiet_quantiser():
        if progress:
            progress({"stage": "note", "text": "int8: exporting the network to ONNX (about 30 s)"})
        fp32 = Path(tmp) / "model.onnx"
        prepared = Path(tmp) / "model.pre.onnx"
        torch.onnx.export(
            model,
            (sample,),
            str(fp32),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            dynamo=True,
            verbose=False,
        )
        quant_pre_process(str(fp32), str(prepared))
        kept_float = _first_and_last_layers(prepared)
        quantize_static(
            str(prepared),
            str(target_dir / ONNX_INT8_FILE),
            _CalibrationReader(calibration, progress),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept_float,
        )
    model.to(memory_format=torch.channels_last)
    return {
        "file": ONNX_INT8_FILE,
        "sha256": sha256_file(target_dir / ONNX_INT8_FILE),
        "format": "QDQ",
        "weights": "int8 per channel",
        "activations": "uint8",
        "calibration_method": "MinMax",
        "calibration_photos": len(calibration),
        "float_layers": "stem convolution and classifier",
    }


def _first_and_last_layers(path: Path) -> list[str]:
    """The stem convolution and the classifier stay in float: quantising them cost 0.3 points of
    val accuracy for next to no speed (docs/performance.md)."""
    import onnx

    layers = [node.name for node in onnx.load(str(path)).graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    return [layers[0], layers[-1]] if len(layers) > 1 else []


def _preprocessed(
    config: dict, photos: list[Path], progress: Progress | None = None, step: str = ""
) -> list[torch.Tensor | None]:
    """Photos decoded and preprocessed as when serving, in order (None for an unreadable one)."""
    transform = backbones.eval_transform(config["preprocessing"])
    tensors: list[torch.Tensor | None] = []
    for number, photo in enumerate(photos, 1):
        try:
            tensors.append(transform(open_photo(photo)))
        except Rejection:
            tensors.append(None)
        _report(progress, step, number, len(photos), "img")
    return tensors


def _report(progress: Progress | None, step: str, done: int, total: int, unit: str) -> None:
    if progress and step:
        progress({"stage": "step", "name": step, "done": done, "total": total, "unit": unit})


class _CalibrationReader:
    """Feeds the calibration photos to the quantiser in batches (onnxruntime's reader protocol)."""

    def __init__(self, tensors: list[torch.Tensor], progress: Progress | None = None):
        starts = range(0, len(tensors), CALIBRATION_BATCH)
        self._batches: Iterator[dict] = (
            {INPUT_NAME: torch.stack(tensors[start : start + CALIBRATION_BATCH]).numpy()} for start in starts
        )
        self._done, self._total, self._progress = 0, len(starts), progress

    def get_next(self) -> dict | None:
        # The quantiser asks for the next batch once it has run the previous one.
        _report(self._progress, "calibrating the int8 ranges", self._done, self._total, "batch")
        batch = next(self._batches, None)
        if batch is not None:
            self._done += 1
        return batch


class _quiet_quantiser:
    """The exporter and quantiser log a line per tensor at INFO; keep the command output readable."""

    NAMES = ("root", "onnxruntime", "torch.onnx", "onnxscript")

    def __enter__(self):
        self.levels = {name: logging.getLogger(None if name == "root" else name).level for name in self.NAMES}
        for name in self.NAMES:
            logging.getLogger(None if name == "root" else name).setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc) -> None:
        for name, level in self.levels.items():
            logging.getLogger(None if name == "root" else name).setLevel(level)


# A quantised network whose top-1 differs from the fp32 one on more than this share of the
# calibration photos is not stored: the version is then served by PyTorch.
MIN_INT8_AGREEMENT = 0.97


def build_int8(
    model: torch.nn.Module,
    config: dict,
    photos: list[Path],
    target_dir: Path,
    routing: tuple[list[tuple[Path, int]], Callable] | None = None,
    progress: Progress | None = None,
) -> dict | None:
    """Quantise `model` with `photos` (training photos, preprocessed as when serving) into
    target_dir; returns the config entry, or None when int8 disagrees too often with fp32.

    `routing` = (held-out photos with their class index, fit(logits, labels, positions) -> policy,
    positions being the indices of the photos that decoded): the
    routing policy is fitted again on the int8 network's own outputs for those photos, so that
    what it accepts automatically reaches the target precision as served. `progress` receives
    {"stage": "step", "name", "done", "total", "unit"} for each step and {"stage": "note", "text"}.
    """
    decoded = _preprocessed(config, photos, progress, "int8: reading the calibration photos")
    tensors = [tensor for tensor in decoded if tensor is not None]
    entry = export_int8(model, tensors, target_dir, progress)
    runner = OnnxRunner(target_dir / entry["file"], torch.get_num_threads())
    with torch.inference_mode():
        quantised = _batched(runner, tensors, progress, "int8: comparing with the float network (int8)")
        same = quantised.argmax(dim=1) == _batched(model, tensors, progress, "int8: comparing (float)").argmax(dim=1)
    agreement = float(same.float().mean())
    entry["top1_agreement_with_fp32"] = round(agreement, 4)
    if agreement < MIN_INT8_AGREEMENT:
        logger.warning(
            "int8 network agrees with fp32 on only %.1f%% of %d calibration photos; not stored",
            100 * agreement,
            len(tensors),
        )
        (target_dir / entry["file"]).unlink()
        return None
    if routing and routing[0]:
        held_out, fit = routing
        decoded = _preprocessed(config, [path for path, _ in held_out], progress, "int8: reading held-out photos")
        kept = [i for i, tensor in enumerate(decoded) if tensor is not None]
        logits = _batched(runner, [decoded[i] for i in kept], progress, "int8: routing on held-out photos")
        entry["routing"] = fit(logits, torch.tensor([held_out[i][1] for i in kept]), kept)
    return entry


def _batched(
    network: Callable[[torch.Tensor], torch.Tensor],
    tensors: list[torch.Tensor],
    progress: Progress | None = None,
    step: str = "",
) -> torch.Tensor:
    """The outputs of a network for preprocessed photos, CALIBRATION_BATCH at a time."""
    outputs = []
    for start in range(0, len(tensors), CALIBRATION_BATCH):
        outputs.append(network(torch.stack(tensors[start : start + CALIBRATION_BATCH])))
        _report(progress, step, min(start + CALIBRATION_BATCH, len(tensors)), len(tensors), "img")
    return torch.cat(outputs)
