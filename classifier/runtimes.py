"""The serving runtimes a version may carry besides its PyTorch weights.

`onnx-int8`: the network statically quantised to int8 for ONNX Runtime (built at registration
by `classifier.int8`), stored in the version's folder next to the weights with its SHA-256 in
config.json under `runtimes["onnx-int8"]`. On this CPU (VNNI) it runs several times faster than
PyTorch eager fp32 for about 0.3-0.4 points of val accuracy (docs/performance.md).
`OnnxRunner` serves it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ONNX_INT8 = "onnx-int8"
ONNX_INT8_FILE = "model.int8.onnx"
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


class RuntimeUnavailable(Exception):
    """The runtime's artifact is missing or its runtime cannot start."""


class OnnxRunner:
    """An ONNX Runtime session on the CPU, taking and giving torch tensors."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The decoder threads share the cores: idle ONNX Runtime threads must sleep, not spin.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise RuntimeUnavailable(f"{path}: {exc}") from exc

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels})
        return torch.from_numpy(logits)


def onnxruntime_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
