"""ONNX Runtime backend (.onnx): CPU, or CUDA / TensorRT execution providers when installed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.backends import Backend, Precision, summarize_precision
from deploy.errors import InputError

# Preference order when the caller does not name providers; the TensorRT EP is opt-in (it builds engines).
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
QUANT_COMPUTE_OPS = {"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger"}
FLOAT_COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
INT8_EXECUTED = (Precision.INT8.value, Precision.MIXED.value)  # what precision="int8" accepts (Q/DQ: mixed)
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def graph_precision_counts(model: Any) -> tuple[dict[str, int], str]:
    """Compute-layer precision counts of an ONNX model, and its floating-point precision.

    A Conv/MatMul/Gemm whose weight comes from a DequantizeLinear node (QDQ format) counts as
    int8 (ONNX Runtime fuses it into an integer kernel), as do QLinearConv/ConvInteger/... nodes.

    Args:
        model: an ``onnx.ModelProto`` (graph only; external weights need not be loaded).

    Returns:
        ({"int8": n, "fp32"|"fp16": m}, "fp32"|"fp16").
    """
    import onnx

    graph = model.graph
    fp16_inits = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    half_float = bool(fp16_inits) and not any(t.data_type == onnx.TensorProto.FLOAT for t in graph.initializer)
    float_name = Precision.FP16.value if half_float else Precision.FP32.value
    counts: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type in QUANT_COMPUTE_OPS:
            counts[Precision.INT8.value] += 1
        elif node.op_type in FLOAT_COMPUTE_OPS:
            weight = node.input[1] if len(node.input) > 1 else ""
            if weight in dq_outputs:
                counts[Precision.INT8.value] += 1
            else:
                counts[Precision.FP16.value if weight in fp16_inits else Precision.FP32.value] += 1
    return dict(counts), float_name


def choose_providers(requested: Sequence[str] | None) -> list[str]:
    """The execution providers to use: ``requested`` (each must be available) or the preferred available ones."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested is None:
        return [p for p in DEFAULT_PROVIDERS if p in available] or ["CPUExecutionProvider"]
    missing = [p for p in requested if p not in available]
    if missing:
        raise InputError(f"onnxruntime providers {missing} are not available here; available: {available}")
    return list(requested)


class OrtBackend(Backend):
    """An ``onnxruntime.InferenceSession`` over one .onnx file."""

    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        precision: str | None = None,
        providers: Sequence[str] | None = None,
        allow_spinning: bool = True,
    ) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError / ValueError / OSError variants
            raise InputError(f"model {str(self.path)!r} is not a readable ONNX file: {exc}") from None
        self.metadata = {p.key: p.value for p in proto.metadata_props}
        self.precision_detail, float_precision = graph_precision_counts(proto)
        del proto
        self.providers = choose_providers(providers)
        # compare with what executes, not the float precision: a Q/DQ model holds FP32 scales but runs int8/mixed
        self.executed_precision = summarize_precision(self.precision_detail, float_precision)
        int8_model = precision == Precision.INT8.value and self.executed_precision in INT8_EXECUTED
        if precision not in (None, self.executed_precision) and not int8_model:
            raise InputError(
                f"onnxruntime runs {self.path.name} in its own precision ({self.executed_precision}), not "
                f"{precision!r}; export/quantize a {precision} model, or use the openvino/tensorrt backend to pick a "
                "precision"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # spinning intra-op threads keep a core busy after each run: off when several sessions share few cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise InputError(f"onnxruntime cannot load {str(self.path)!r}: {exc}") from None
        self.providers = self.session.get_providers()
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inp.shape)
        self.input_dtype = np.dtype(_ORT_TYPES.get(inp.type, np.float32))
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, {self.input_name: self._cast_input(tensor)})
        return dict(zip(self.output_names, outs, strict=True))


def load(
    path: Path,
    threads: int | None = None,
    precision: str | None = None,
    providers: Sequence[str] | None = None,
    allow_spinning: bool = True,
) -> OrtBackend:
    """Load an .onnx file on ONNX Runtime (graph optimisation ALL, ``threads`` intra-op threads)."""
    return OrtBackend(path, threads=threads, precision=precision, providers=providers, allow_spinning=allow_spinning)
