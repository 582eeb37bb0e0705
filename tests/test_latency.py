"""Latency harness pieces: percentiles, interleaving, the hardware floor's MAC count."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy.hwfloor import MatmulRate, count_macs, floor_ms, measure_matmul
from deploy.latency import STEPS, Samples, run_interleaved, summarize


def test_summarize_matches_numpy():
    rng = np.random.default_rng(1)
    s = rng.gamma(2.0, 5.0, 1000)
    out = summarize(s)
    assert out["p50_ms"] == pytest.approx(np.median(s))
    assert out["p90_ms"] == pytest.approx(np.percentile(s, 90))
    assert out["p99_ms"] == pytest.approx(np.percentile(s, 99))
    assert out["mean_ms"] == pytest.approx(s.mean())
    assert out["std_ms"] == pytest.approx(s.std(ddof=1))
    assert out["n"] == 1000


def test_summarize_empty_and_single():
    assert np.isnan(summarize(np.array([]))["p50_ms"])
    assert summarize(np.array([3.0]))["std_ms"] == 0.0


class _Fake:
    def __init__(self, name: str, order: list[str]):
        self.name, self.order = name, order

    def preprocess(self, image):
        return image[None].astype(np.float32), None

    def infer(self, tensor):
        self.order.append(self.name)
        return {"y": tensor}

    def postprocess(self, outputs, metas):
        return []


def test_interleaved_order_and_all_steps_timed():
    order: list[str] = []
    ok, jpeg = cv2.imencode(".jpg", np.full((72, 128, 3), 90, np.uint8))
    assert ok
    fakes = {name: _Fake(name, order) for name in "ABC"}
    res = run_interleaved(fakes, jpeg.tobytes(), runs=4, warmup=1)
    # warm-up A B C, then each round starts one variant later: no variant always follows the same neighbour
    assert "".join(order) == "ABC" + "ABC" + "BCA" + "CAB" + "ABC"
    for samples in res.values():
        summary = samples.summary()
        assert set(summary) == set(STEPS)
        assert summary["end_to_end"]["n"] == 4
        assert summary["end_to_end"]["p50_ms"] >= summary["inference"]["p50_ms"]


def test_samples_end_to_end_is_sum():
    s = Samples()
    s.add(1.0, 2.0, 3.0)
    assert s.steps["end_to_end"] == [6.0]


def _conv_model(path, cin=3, cout=8, k=3, hw=32, groups=1):
    w = numpy_helper.from_array(np.ones((cout, cin // groups, k, k), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    conv = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], group=groups)
    flat = helper.make_node("Flatten", ["c"], ["f"])
    m = numpy_helper.from_array(np.ones((cout * hw * hw, 10), np.float32), "m")
    mm = helper.make_node("MatMul", ["f", "m"], ["y"])
    graph = helper.make_graph([conv, flat, mm], "g", [x], [y], [w, m])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


def test_count_macs_reference(tmp_path):
    path = tmp_path / "m.onnx"
    _conv_model(path)
    conv = 8 * 32 * 32 * (3 * 3 * 3)
    matmul = 10 * (8 * 32 * 32)
    assert count_macs(path) == conv + matmul


def test_count_macs_grouped(tmp_path):
    path = tmp_path / "g.onnx"
    _conv_model(path, cin=8, cout=8, groups=8)
    assert count_macs(path) == 8 * 32 * 32 * (1 * 3 * 3) + 10 * 8 * 32 * 32


def test_floor_and_matmul_rate_positive():
    rate = measure_matmul("int8", size=256, threads=1, seconds=0.05)
    assert rate.gmacs_per_s > 0
    assert floor_ms(10**9, MatmulRate("int8", 256, 100.0, 1)) == pytest.approx(10.0)
