"""OpenVINO backend (.xml IR, or .onnx read directly) on the CPU (or another OpenVINO device).

``INFERENCE_PRECISION_HINT`` is always set explicitly: ``f32`` unless another precision is
asked for. The precision reported is what the compiled model executes: the hint the plugin
settled on (asking f16 on a CPU without FP16 support gives bf16) and, per compute layer, the
``runtimePrecision`` of the runtime model (int8 for quantized layers).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from deploy.backends import Backend, Precision, summarize_precision
from deploy.errors import InputError

HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}  # int8 layers run int8 whatever the hint
HINT_NAMES = {"f32": "fp32", "float32": "fp32", "f16": "fp16", "float16": "fp16", "bf16": "bf16", "bfloat16": "bf16"}
COMPUTE_LAYERS = {"Convolution", "GroupConvolution", "Deconvolution", "MatMul", "FullyConnected"}
EDGEKD_RT_SECTION = "edgekd"  # rt_info section holding the export contract's metadata (see deploy.metadata)


def _any_to_py(value: Any) -> Any:
    """An OpenVINO ``OVAny`` (or nested dict of them) -> plain Python (str / dict)."""
    if isinstance(value, dict):
        return {k: _any_to_py(v) for k, v in value.items()}
    if hasattr(value, "astype"):
        for kind in (dict, str):
            try:
                return _any_to_py(value.astype(kind))
            except Exception:  # OVAny of another type: try the next one
                continue
        return getattr(value, "value", value)
    return value


def read_rt_metadata(model: Any) -> dict[str, Any]:
    """Model metadata from rt_info: the ``edgekd`` section, else ONNX metadata_props (``framework``) and
    ultralytics' ``model_info`` (labels).
    """
    out: dict[str, Any] = {}
    for section in ("model_info", "framework", EDGEKD_RT_SECTION):  # later sections win
        if model.has_rt_info([section]):
            value = _any_to_py(model.get_rt_info([section]))
            if isinstance(value, dict):
                out.update(value)
    if "names" not in out and isinstance(out.get("labels"), str):
        labels = out["labels"].split()
        out["names"] = {str(i): name for i, name in enumerate(labels)}
    return out


def runtime_precision_counts(compiled: Any, float_precision: str) -> dict[str, int]:
    """Count the compiled (runtime) model's compute layers as int8 (``runtimePrecision`` i8/u8) or floating point.

    Floating-point layers count as ``float_precision`` (the inference precision the plugin settled on): their
    ``runtimePrecision`` may name the storage type of compressed weights (f16 in an IR saved with
    ``compress_to_fp16``) while the arithmetic runs at the inference precision.
    """
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" not in info or info["layerType"].astype(str) not in COMPUTE_LAYERS:
            continue
        prec = info["runtimePrecision"].astype(str).lower() if "runtimePrecision" in info else ""
        counts[Precision.INT8.value if prec in ("i8", "u8", "i4", "u4") else float_precision] += 1
    return dict(counts)


class OpenVinoBackend(Backend):
    """An ``openvino.CompiledModel`` with one infer request."""

    name = "openvino"

    def __init__(
        self, path: Path, threads: int | None = None, precision: str | None = None, device: str = "CPU"
    ) -> None:
        import openvino as ov

        self.path = Path(path)
        if self.path.suffix.lower() == ".xml" and not self.path.with_suffix(".bin").is_file():
            raise InputError(
                f"OpenVINO IR {str(self.path)!r} has no weights file {self.path.with_suffix('.bin').name!r}"
            )
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with the parser's message
            raise InputError(f"OpenVINO cannot read {str(self.path)!r}: {str(exc).splitlines()[0]}") from None
        self.metadata = read_rt_metadata(model)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[precision or "fp32"],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:
            raise InputError(
                f"OpenVINO cannot compile {str(self.path)!r} for {device}: {str(exc).splitlines()[0]}"
            ) from None
        self.request = self.compiled.create_infer_request()
        inp = self.compiled.inputs[0]
        self.input_name = inp.get_any_name()
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in inp.get_partial_shape())
        self.input_dtype = np.dtype(inp.get_element_type().to_dtype())
        self._outputs = list(self.compiled.outputs)
        # ultralytics' INT8 IRs leave the output tensor unnamed: fall back to its ONNX-style name
        self.output_names = [o.get_any_name() if o.get_names() else f"output{i}" for i, o in enumerate(self._outputs)]
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.hint = HINT_NAMES.get(hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint), "fp32")
        self.precision_detail = runtime_precision_counts(self.compiled, self.hint)
        self.executed_precision = summarize_precision(self.precision_detail, self.hint)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        # share_inputs: OpenVINO reads the (contiguous) numpy buffer in place instead of copying it first
        results = self.request.infer({0: np.ascontiguousarray(self._cast_input(tensor))}, share_inputs=True)
        return {name: np.array(results[port]) for name, port in zip(self.output_names, self._outputs, strict=True)}


def load(path: Path, threads: int | None = None, precision: str | None = None, device: str = "CPU") -> OpenVinoBackend:
    """Compile an IR/ONNX model with an explicit ``INFERENCE_PRECISION_HINT`` (f32 unless ``precision`` says)."""
    return OpenVinoBackend(path, threads=threads, precision=precision, device=device)
