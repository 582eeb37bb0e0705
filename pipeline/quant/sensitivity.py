"""Per-tensor INT8 sensitivity of a QDQ model against its FP32 original, on calibration frames.

For every activation tensor the QDQ model quantizes, ONNX Runtime's QDQ debugging tools
(``onnxruntime.quantization.qdq_loss_debug``) expose three versions: ``float`` (the FP32 model), ``pre_qdq`` (the
QDQ model just before QuantizeLinear) and ``post_qdq`` (after DequantizeLinear). We accumulate, frame by frame
(so memory stays at one frame), the signal-to-quantization-noise ratio

    SQNR = 10 log10( sum ||pre||^2 / sum ||pre - post||^2 )   [dB]

(the local error this tensor's INT8 grid adds; higher is better) and ``xmodel_sqnr_db`` = the same with
``float`` vs ``post_qdq`` (the error accumulated up to this tensor). Weights get their SQNR from
``create_weight_matching``. Each entry names the ``nodes`` to keep in float to take that tensor out of INT8:
its producer and its consumers (minus nodes already excluded, such as the decode head).

``sensitivity.json`` (written by the quantize stage)::

    {"schema": "edgekd.sensitivity/v1", "metric": "sqnr_db", "models": {<model>: {
        "runtime": "onnxruntime", "recipe": "head_float", "frames": N,
        "tensors": [{"tensor", "kind": "activation"|"weight", "sqnr_db", "xmodel_sqnr_db", "nodes": [...]}, ...],
        "worst": [the first ``top`` entries of "tensors"],
        "fallback": {...} | null}}}   # see pipeline.quant.fallback

``tensors`` is sorted worst (lowest SQNR) first.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.quant.calib_reader import CalibrationReader

SCHEMA = "edgekd.sensitivity/v1"


@dataclass(frozen=True)
class TensorSensitivity:
    tensor: str
    kind: str  # "activation" | "weight"
    sqnr_db: float
    xmodel_sqnr_db: float | None
    nodes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nodes"] = list(self.nodes)
        return d


def sqnr_db(signal_sq: float, noise_sq: float) -> float:
    """10 log10(signal / noise) in dB; +inf for a noiseless tensor (a zero signal counts as float32 eps)."""
    eps = float(np.finfo(np.float32).eps)
    if noise_sq <= 0.0:
        return math.inf
    return 10.0 * math.log10(max(signal_sq, eps) / noise_sq)


class _Accumulator:
    """Running sums of squared signal and noise per tensor."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])

    def add(self, name: str, pre: np.ndarray, post: np.ndarray, flt: np.ndarray | None) -> None:
        s = self.sums[name]
        pre64, post64 = pre.astype(np.float64).ravel(), post.astype(np.float64).ravel()
        s[0] += float(pre64 @ pre64)
        s[1] += float((pre64 - post64) @ (pre64 - post64))
        if flt is not None and flt.size == post.size:
            f64 = flt.astype(np.float64).ravel()
            s[2] += float(f64 @ f64)
            s[3] += float((f64 - post64) @ (f64 - post64))

    def result(self, name: str) -> tuple[float, float | None]:
        s = self.sums[name]
        return sqnr_db(s[0], s[1]), (sqnr_db(s[2], s[3]) if s[2] > 0 else None)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(level)


def _augmented_session(model_path: Path, tmp: Path, tag: str) -> Any:
    import onnxruntime as ort
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

    augmented = tmp / f"{tag}.augmented.onnx"
    modify_model_output_intermediate_tensors(str(model_path), str(augmented))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(augmented), opts, providers=["CPUExecutionProvider"])


def _run_saved(session: Any, feed: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """One frame through an augmented session -> {tensor name: [value]} (the shape collect_activations gives)."""
    from onnxruntime.quantization.qdq_loss_debug import _TENSOR_SAVE_POSTFIX

    names = [o.name for o in session.get_outputs()]
    values = session.run(None, feed)
    return {
        n[: -len(_TENSOR_SAVE_POSTFIX)]: [v]
        for n, v in zip(names, values, strict=True)
        if n.endswith(_TENSOR_SAVE_POSTFIX)
    }


def tensor_nodes(model: Any, excluded: set[str]) -> dict[str, tuple[str, ...]]:
    """{tensor name: (producer, *consumers)} of every tensor of an ONNX graph, minus ``excluded`` nodes."""
    out: dict[str, list[str]] = defaultdict(list)
    for n in model.graph.node:
        for t in n.output:
            if n.name not in excluded:
                out[t].insert(0, n.name)
        for t in n.input:
            if t and n.name not in excluded and n.name not in out[t]:
                out[t].append(n.name)
    return {k: tuple(v) for k, v in out.items()}


def analyze(
    float_model: Path, qdq_model: Path, reader: CalibrationReader, *, frames: int, excluded: set[str]
) -> list[TensorSensitivity]:
    """Sensitivity of every quantized tensor of ``qdq_model`` (built from the pre-processed ``float_model``, so
    tensor names agree), over the first ``frames`` frames of ``reader``; worst first."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_weight_error,
        create_activation_matching,
        create_weight_matching,
    )

    acc = _Accumulator()
    sub = reader.subset(max(1, frames))
    with tempfile.TemporaryDirectory(prefix="edgekd-sens-") as tmp:
        fsess = _augmented_session(float_model, Path(tmp), "float")
        qsess = _augmented_session(qdq_model, Path(tmp), "qdq")
        for feed in sub:
            matched = create_activation_matching(_run_saved(qsess, feed), _run_saved(fsess, feed))
            for name, m in matched.items():
                flt = m.get("float")
                acc.add(
                    name,
                    np.asarray(m["pre_qdq"][0]),
                    np.asarray(m["post_qdq"][0]),
                    None if not flt else np.asarray(flt[0]),
                )
        with _quiet_root_logger():  # ORT logs an error per int32 bias it cannot match to a float weight
            weights = compute_weight_error(create_weight_matching(str(float_model), str(qdq_model)))
    nodes = tensor_nodes(onnx.load(str(float_model), load_external_data=False), excluded)
    rows = []
    for name in acc.sums:
        local, xmodel = acc.result(name)
        rows.append(TensorSensitivity(name, "activation", local, xmodel, nodes.get(name, ())))
    for name, value in weights.items():
        rows.append(TensorSensitivity(name, "weight", float(value), None, nodes.get(name, ())))
    rows = [r for r in rows if r.nodes]
    return sorted(rows, key=lambda r: (r.sqnr_db, r.tensor))


def report(rows: list[TensorSensitivity], *, frames: int, top: int = 20) -> dict[str, Any]:
    """The per-model entry of ``sensitivity.json`` (infinite SQNR written as null)."""
    listed = [_finite(r.as_dict()) for r in rows]
    return {
        "runtime": "onnxruntime",
        "recipe": "head_float",
        "frames": frames,
        "tensors": listed,
        "worst": listed[:top],
    }


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    for key in ("sqnr_db", "xmodel_sqnr_db"):
        v = d.get(key)
        d[key] = None if v is None or not math.isfinite(v) else round(float(v), 3)
    return d
