"""Inference backends: a registry of name -> lazily imported loader.

Every backend module exposes ``load(path, threads=None, precision=None, **options) -> Backend``.
A :class:`Backend` runs one preprocessed float tensor and returns the raw outputs by name;
decoding and NMS live in :mod:`deploy.postprocess`. Runtimes are imported only when their
backend is loaded, so ``import deploy.backends`` works on a machine with none installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import BackendUnavailableError, InputError


class Precision(str, Enum):
    """The numeric precision a backend actually executes (compute layers, not I/O)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    MIXED = "mixed"  # some compute layers int8, some floating point
    UNKNOWN = "unknown"  # the runtime does not say (e.g. a TensorRT engine built without layer info)


# name -> (module, runtime distribution to import, file extensions it accepts)
BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "onnxruntime": ("deploy.backends.onnxruntime", "onnxruntime", (".onnx",)),
    "openvino": ("deploy.backends.openvino", "openvino", (".xml", ".onnx")),
    "tensorrt": ("deploy.backends.tensorrt", "tensorrt", (".engine", ".plan")),
}
# file extension -> default backend
EXTENSIONS: dict[str, str] = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}


class Backend(ABC):
    """One loaded model on one runtime.

    Attributes:
        name: registry name ("onnxruntime", "openvino", "tensorrt").
        path: the model file.
        input_name: name of the single image input.
        input_shape: (B, 3, H, W); dynamic dimensions are ``None``.
        input_dtype: numpy dtype the runtime wants (float32, or float16 for FP16 I/O).
        output_names: output tensor names, in model order.
        executed_precision: a :class:`Precision` value, as the runtime reports it executes the model.
        precision_detail: compute-layer counts per precision (e.g. {"int8": 60, "fp32": 4}).
        metadata: raw key -> value strings stored in the model (ONNX metadata_props, IR rt_info, engine header).
    """

    name: str = ""
    path: Path
    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: np.dtype
    output_names: list[str]
    executed_precision: str = Precision.UNKNOWN.value
    precision_detail: dict[str, int]
    metadata: dict[str, Any]

    @abstractmethod
    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run a (B, 3, H, W) tensor; returns {output name: array}."""

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model was built for, or None when the batch dimension is dynamic."""
        b = self.input_shape[0] if self.input_shape else None
        return int(b) if isinstance(b, (int, np.integer)) and b > 0 else None

    def _cast_input(self, tensor: np.ndarray) -> np.ndarray:
        tensor = np.asarray(tensor)
        if tensor.ndim != 4:
            raise InputError(f"{self.name}: input tensor shape {tensor.shape}, expected (B, 3, H, W)")
        if tensor.dtype != self.input_dtype:
            tensor = tensor.astype(self.input_dtype)
        return np.ascontiguousarray(tensor)


def summarize_precision(counts: Mapping[str, int], float_precision: str) -> str:
    """Compute-layer precision counts -> one :class:`Precision` value.

    Args:
        counts: {"int8": n, "fp32"/"fp16"/"bf16": m, ...} over compute layers (Conv, MatMul, ...).
        float_precision: what the floating-point layers execute in ("fp32", "fp16", "bf16").
    """
    counter = Counter({k: v for k, v in counts.items() if v > 0})
    n_int8 = counter.pop(Precision.INT8.value, 0)
    n_float = sum(counter.values())
    if n_int8 and n_float:
        return Precision.MIXED.value
    if n_int8:
        return Precision.INT8.value
    return Precision(float_precision).value


def backend_for(path: Path, backend: str | None = None) -> str:
    """The backend name to use for ``path``: ``backend`` if given (validated), else from the file extension."""
    suffix = Path(path).suffix.lower()
    if backend is None:
        if suffix not in EXTENSIONS:
            raise InputError(
                f"model {str(path)!r}: unknown extension {suffix!r}; expected one of "
                f"{', '.join(sorted(EXTENSIONS))} (or pass backend=one of {', '.join(BACKENDS)})"
            )
        return EXTENSIONS[suffix]
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: unknown; expected one of {', '.join(BACKENDS)}")
    accepted = BACKENDS[backend][2]
    if suffix not in accepted:
        raise InputError(
            f"model {str(path)!r}: backend {backend!r} loads {', '.join(accepted)} files, not {suffix!r}; "
            f"drop backend= to choose from the extension"
        )
    return backend


def is_available(backend: str) -> bool:
    """Whether the runtime behind ``backend`` can be imported here (does not import it)."""
    if backend not in BACKENDS:
        return False
    try:
        return importlib.util.find_spec(BACKENDS[backend][1]) is not None
    except (ImportError, ValueError):
        return False


def load_backend(
    path: str | Path,
    backend: str | None = None,
    *,
    threads: int | None = None,
    precision: str | None = None,
    **options: Any,
) -> Backend:
    """Load ``path`` on ``backend`` (default: from the file extension).

    Raises:
        InputError: missing file, unknown extension/backend, bad threads/precision.
        BackendUnavailableError: the runtime is not installed.
    """
    path = Path(path)
    name = backend_for(path, backend)
    if not path.is_file():
        raise InputError(f"model {str(path)!r} does not exist (or is not a file)")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads={threads!r}: expected a positive integer or None (runtime default)")
    if precision is not None and precision not in {p.value for p in Precision} - {"mixed", "unknown"}:
        raise InputError(f"precision={precision!r}: expected one of fp32, fp16, bf16, int8 or None (the model's own)")
    module = importlib.import_module(BACKENDS[name][0])
    try:
        return module.load(path, threads=threads, precision=precision, **options)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root in {BACKENDS[name][1], "cuda", "openvino", "onnxruntime", "tensorrt"}:
            raise BackendUnavailableError(
                f"backend {name!r} needs the Python package {exc.name!r}, which is not installed here; "
                f"install it (e.g. `pip install edgekd[openvino]`, or TensorRT from JetPack) or choose another backend"
            ) from None
        raise
