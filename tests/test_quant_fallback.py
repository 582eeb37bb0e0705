"""Sensitivity analysis (per-tensor SQNR) and the fallback search, against slow obvious references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from _quant_fixtures import make_dataset, tiny_onnx

from pipeline.quant.fallback import nodes_for, schedule, search
from pipeline.quant.head import GraphNode, Op, decode_head
from pipeline.quant.sensitivity import TensorSensitivity, report, sqnr_db


def _layer(name: str, *nodes: str, sqnr: float = 10.0) -> TensorSensitivity:
    return TensorSensitivity(name, "activation", sqnr, None, tuple(nodes))


# ---------------------------------------------------------------- fallback search (pure)
def test_schedule() -> None:
    assert schedule(8, 100) == [0, 1, 2, 4, 8]
    assert schedule(5, 100) == [0, 1, 2, 4, 5]
    assert schedule(8, 3) == [0, 1, 2, 3]
    assert schedule(0, 10) == [0]
    assert schedule(8, 0) == [0]


def test_search_stops_at_first_k_within_budget() -> None:
    ranked = [_layer(f"t{i}", f"n{i}", "shared") for i in range(10)]
    calls: list[tuple[str, ...]] = []

    def evaluate(nodes: tuple[str, ...]) -> float:
        calls.append(nodes)
        return 0.50 - 0.02 / (1 + len(nodes))  # more float nodes, smaller drop

    res = search(ranked, evaluate, fp32_map=0.50, budget_points=0.6, max_layers=8)
    # drops in points: k=0 -> 2.0, k=1 (n0, shared) -> 0.667, k=2 (n0, shared, n1) -> 0.5 <= 0.6
    assert [t.k for t in res.trials] == [0, 1, 2]
    assert res.within_budget and res.chosen.k == 2
    assert res.chosen.layers == ("t0", "t1") and res.chosen.nodes == ("n0", "shared", "n1")
    assert calls == [(), ("n0", "shared"), ("n0", "shared", "n1")]
    assert res.as_dict()["chosen"]["drop_points"] == pytest.approx(0.5)


def test_search_returns_smallest_drop_when_budget_is_never_met() -> None:
    ranked = [_layer(f"t{i}", f"n{i}") for i in range(4)]
    values = {0: 0.40, 1: 0.44, 2: 0.43, 4: 0.41}
    res = search(ranked, lambda nodes: values[len(nodes)], fp32_map=0.50, budget_points=0.5, max_layers=8)
    assert [t.k for t in res.trials] == [0, 1, 2, 4]
    assert not res.within_budget and res.chosen.k == 1 and res.chosen.drop_points == pytest.approx(6.0)


def test_search_zero_layers_when_int8_already_fits() -> None:
    res = search([_layer("t0", "n0")], lambda nodes: 0.499, fp32_map=0.50, budget_points=0.5, max_layers=8)
    assert res.within_budget and res.chosen.k == 0 and res.chosen.nodes == () and len(res.trials) == 1


def test_nodes_for_keeps_first_seen_order() -> None:
    assert nodes_for([_layer("a", "x", "y"), _layer("b", "y", "z"), _layer("c")]) == ("x", "y", "z")


# ---------------------------------------------------------------- SQNR
def test_sqnr_matches_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    y = x + rng.normal(scale=0.01, size=1000)
    ref = 20 * math.log10(np.linalg.norm(x) / np.linalg.norm(x - y))
    assert sqnr_db(float(x @ x), float((x - y) @ (x - y))) == pytest.approx(ref, rel=1e-9)
    assert sqnr_db(1.0, 0.0) == math.inf
    assert sqnr_db(0.0, 1.0) < -60


def test_report_orders_and_cuts() -> None:
    rows = [_layer("a", "n", sqnr=5.0), _layer("b", "n", sqnr=math.inf), _layer("c", "n", sqnr=7.0)]
    out = report(rows, frames=3, top=2)
    assert [r["tensor"] for r in out["worst"]] == ["a", "b"] and out["frames"] == 3
    assert out["tensors"][1]["sqnr_db"] is None  # infinity is not JSON


# ---------------------------------------------------------------- head walk (pure)
def test_decode_head_on_a_hand_built_graph() -> None:
    g = {
        "stem": GraphNode("stem", Op.CONV, (None,)),
        "act": GraphNode("act", Op.OTHER, ("stem",)),
        "box_conv": GraphNode("box_conv", Op.CONV, ("act", None)),
        "cls_conv": GraphNode("cls_conv", Op.CONV, ("act", None)),
        "shape": GraphNode("shape", Op.SHAPE, ("box_conv",)),
        "reshape": GraphNode("reshape", Op.OTHER, ("box_conv", "shape")),
        "transpose": GraphNode("transpose", Op.OTHER, ("reshape",)),
        "softmax": GraphNode("softmax", Op.SOFTMAX, ("transpose",)),
        "dfl": GraphNode("dfl", Op.CONV, ("softmax", None)),
        "decode": GraphNode("decode", Op.OTHER, ("dfl",)),
        "sigmoid": GraphNode("sigmoid", Op.OTHER, ("cls_conv",)),
    }
    head = decode_head(g, ["decode", "sigmoid"])
    assert set(head.nodes) == {"shape", "reshape", "transpose", "softmax", "dfl", "decode", "sigmoid"}
    assert head.dfl == ("dfl",) and set(head.boundary) == {"box_conv", "cls_conv"}
    assert list(head.nodes) == [n for n in g if n in head.nodes]  # graph order


def test_decode_head_needs_a_convolution() -> None:
    from deploy.errors import StageError

    g = {"a": GraphNode("a", Op.OTHER, (None,)), "b": GraphNode("b", Op.OTHER, ("a",))}
    with pytest.raises(StageError, match="detection head"):
        decode_head(g, ["b"])


# ---------------------------------------------------------------- sensitivity on a real QDQ model
@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory):
    from pipeline.quant import quantize
    from pipeline.quant.calib_reader import CalibrationReader
    from pipeline.quant.ort import preprocess_model
    from pipeline.quant.sensitivity import analyze

    root = tmp_path_factory.mktemp("sens")
    data = make_dataset(root / "data", n_train=3, n_val=1)
    images = sorted((data / "images" / "train").glob("*.jpg"))
    onnx_path = tiny_onnx(root / "m")
    res = quantize(onnx_path, runtime="onnxruntime", calibration=images, out=root / "q")
    pre = preprocess_model(onnx_path, root / "pre.onnx")
    del pre
    reader = CalibrationReader.for_model(root / "pre.onnx", images)
    rows = analyze(root / "pre.onnx", res.path, reader, frames=2, excluded=set(res.excluded))
    return rows, res, root


def test_sensitivity_rows(analyzed) -> None:
    rows, res, _ = analyzed
    assert len(rows) > 50
    assert [r.sqnr_db for r in rows] == sorted(r.sqnr_db for r in rows)
    kinds = {r.kind for r in rows}
    assert kinds == {"activation", "weight"}
    assert all(r.nodes and not set(r.nodes) & set(res.excluded) for r in rows)
    acts = [r for r in rows if r.kind == "activation"]
    assert all(r.sqnr_db > 0 for r in acts)
    # tensors re-quantized on their input's grid (Slice, MaxPool outputs) add no noise: +inf, listed last
    assert sum(math.isfinite(r.sqnr_db) for r in acts) > 20 and math.isfinite(rows[0].sqnr_db)
    assert all(r.xmodel_sqnr_db is not None for r in acts)
    assert "images" in {r.tensor for r in acts}  # the input itself is quantized


def test_sensitivity_of_the_input_matches_a_direct_computation(analyzed) -> None:
    """The input's SQNR equals 10 log10(|x|^2 / |x - fq(x)|^2) with the model's own scale and zero point."""
    import onnx
    from onnx import numpy_helper

    from deploy.preprocess import decode_jpeg, preprocess

    rows, res, root = analyzed
    model = onnx.load(str(res.path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "images")
    scale, zp = float(inits[q.input[1]]), int(inits[q.input[2]])
    images = sorted((root / "data" / "images" / "train").glob("*.jpg"))[:2]
    sig = noise = 0.0
    for p in images:
        x = preprocess(decode_jpeg(p), (64, 64))[0].astype(np.float64)
        fq = (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale
        sig += float((x * x).sum())
        noise += float(((x - fq) ** 2).sum())
    got = next(r for r in rows if r.tensor == "images")
    assert got.sqnr_db == pytest.approx(10 * math.log10(sig / noise), abs=0.05)


def test_fallback_layers_really_leave_int8(analyzed, tmp_path: Path) -> None:
    """Keeping the worst activation's nodes in float removes the Q/DQ pair of that tensor."""
    import onnx

    from pipeline.quant import AdvancedOptions, quantize

    rows, res, root = analyzed
    worst = next(r for r in rows if r.kind == "activation" and r.tensor != "images")
    images = sorted((root / "data" / "images" / "train").glob("*.jpg"))
    fb = quantize(
        root / "m" / "model.onnx",
        runtime="onnxruntime",
        calibration=images,
        recipe="fallback",
        out=tmp_path,
        advanced=AdvancedOptions(keep_float=worst.nodes),
    )
    assert fb.path.name == "onnxruntime_fallback.onnx"
    quantized_inputs = {n.input[0] for n in onnx.load(str(fb.path)).graph.node if n.op_type == "QuantizeLinear"}
    assert worst.tensor not in quantized_inputs
    before = {n.input[0] for n in onnx.load(str(res.path)).graph.node if n.op_type == "QuantizeLinear"}
    assert worst.tensor in before
