"""The hardware floor: sustained int8/fp32 matmul throughput and a model's compute-bound latency.

Throughput is measured with ONNX Runtime itself (``MatMul`` in fp32, ``MatMulInteger``
u8 x s8 -> s32 for int8) at the same thread count as the benchmark, so the floor is
what this runtime could reach on this machine. A model's floor is its
multiply-accumulates divided by that rate; efficiency = floor / measured p50.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class MatmulRate:
    """A measured matmul rate: ``gmacs_per_s`` is the best window's, ``mean_gmacs_per_s`` the whole run's."""

    precision: str  # "fp32" | "int8"
    size: int
    gmacs_per_s: float
    threads: int
    mean_gmacs_per_s: float | None = None


def _matmul_model(size: int, int8: bool) -> bytes:
    from onnx import TensorProto, helper

    if int8:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])
        b = helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    else:
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])
        b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [size, size])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "matmul", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def measure_matmul(
    precision: str, *, size: int = 2048, threads: int = 2, seconds: float = 2.0, windows: int = 4
) -> MatmulRate:
    """Sustained GMAC/s of a ``size``-square matmul on ONNX Runtime's CPU provider.

    The ``seconds`` are split into ``windows`` windows (each at least 2 calls) and the best window's
    rate is the machine's: on a shared CPU another process can only slow a window down, never speed it up.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(_matmul_model(size, precision == "int8"), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray]
    if precision == "int8":
        feeds = {
            "a": rng.integers(0, 255, (size, size), dtype=np.uint8),
            "b": rng.integers(-127, 127, (size, size), dtype=np.int8),
        }
    else:
        feeds = {"a": rng.standard_normal((size, size), np.float32), "b": rng.standard_normal((size, size), np.float32)}
    sess.run(None, feeds)  # warm-up
    macs = size**3
    rates, total_n, total_t = [], 0, 0.0
    for _ in range(max(1, windows)):
        n, t0 = 0, time.perf_counter()
        while True:
            sess.run(None, feeds)
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds / max(1, windows) and n >= 2:
                break
        rates.append(macs * n / elapsed / 1e9)
        total_n, total_t = total_n + n, total_t + elapsed
    return MatmulRate(precision, size, max(rates), threads, macs * total_n / total_t / 1e9)


def count_macs(onnx_path: Path) -> int:
    """Multiply-accumulates of one forward pass of a float ONNX model (Conv, ConvTranspose, MatMul, Gemm).

    Uses ONNX shape inference; shapes must be static (batch 1 assumed for a dynamic batch).
    """
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    shapes: dict[str, list[int]] = {}
    for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in model.graph.node:
        total += _node_macs(node, shapes)
    return int(total)


def _node_macs(node, shapes: dict[str, list[int]]) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose") and out:
        w_name = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
        w = shapes.get(w_name)
        if not w:
            return 0
        if node.op_type == "ConvTranspose":
            x = shapes.get(node.input[0])
            return int(np.prod(x)) * int(np.prod(w[1:])) if x else 0
        return int(np.prod(out)) * int(np.prod(w[1:]))  # out elems x (Cin/groups * kh * kw)
    if node.op_type in ("MatMul", "Gemm", "MatMulInteger") and out:
        a = shapes.get(node.input[0])
        if not a:
            return 0
        k = a[-1] if not (node.op_type == "Gemm" and _attr(node, "transA")) else a[0]
        return int(np.prod(out)) * int(k)
    return 0


def _attr(node, name: str) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return 0


def floor_ms(macs: int, rate: MatmulRate) -> float:
    """Compute-bound latency floor in milliseconds."""
    return macs / (rate.gmacs_per_s * 1e9) * 1e3
