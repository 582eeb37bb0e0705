"""INT8 artifacts: ONNX Runtime QDQ with the head in float, the naive baseline, TensorRT Q/DQ, OpenVINO/NNCF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from _quant_fixtures import IMGSZ, make_dataset, tiny_onnx, write_manifest
from onnx import numpy_helper

from deploy.errors import ConfigError, IntegrityError, StageError
from pipeline.quant import AdvancedOptions, QuantResult, quantize


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("quant")
    data = make_dataset(root / "data", n_train=4, n_val=2)
    images = sorted((data / "images" / "train").glob("*.jpg"))
    return {"root": root, "onnx": tiny_onnx(root / "model"), "images": images, "data": data}


@pytest.fixture(scope="module")
def ort_int8(setup: dict) -> QuantResult:
    return quantize(setup["onnx"], runtime="onnxruntime", calibration=setup["images"], out=setup["root"] / "ort")


def _index(model: onnx.ModelProto) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    producer = {t: n for n in model.graph.node for t in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    return producer, consumers


def _assert_head_in_float(model: onnx.ModelProto, head: tuple[str, ...]) -> None:
    """No head node reads a DequantizeLinear output or feeds a QuantizeLinear; the outputs are float ops."""
    producer, consumers = _index(model)
    nodes = {n.name: n for n in model.graph.node}
    assert head and set(head) <= set(nodes), "every head node survives quantization under its name"
    for name in head:
        node = nodes[name]
        for t in node.input:
            assert t not in producer or producer[t].op_type != "DequantizeLinear", f"{name} reads INT8 input {t}"
        for t in node.output:
            assert all(c.op_type != "QuantizeLinear" for c in consumers.get(t, [])), f"{name} output {t} is quantized"
    for out in ("boxes", "scores"):
        assert producer[out].op_type not in ("DequantizeLinear", "QuantizeLinear")


def test_ort_head_float_holds_qdq_and_keeps_head_float(ort_int8: QuantResult) -> None:
    model = onnx.load(str(ort_int8.path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50
    _assert_head_in_float(model, tuple(ort_int8.details["head_nodes"]))
    assert set(ort_int8.details["head_nodes"]) <= set(ort_int8.excluded)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["edgekd_format"] == "split-v1" and json.loads(props["imgsz"]) == [IMGSZ, IMGSZ]


def test_ort_weights_per_channel_and_activations_uint8(ort_int8: QuantResult) -> None:
    model = onnx.load(str(ort_int8.path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer, _ = _index(model)
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    conv_weights = [n for n in weight_dq if inits[n.input[0]].ndim == 4]
    assert conv_weights and all(inits[n.input[1]].size == inits[n.input[0]].shape[0] for n in conv_weights)
    act_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert {inits[n.input[2]].dtype for n in act_q} == {np.dtype(np.uint8)}


def test_ort_int8_runs_and_tracks_fp32(setup: dict, ort_int8: QuantResult) -> None:
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    ref = ort.InferenceSession(str(setup["onnx"]), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    got = ort.InferenceSession(str(ort_int8.path), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    assert [g.shape for g in got] == [r.shape for r in ref]
    assert np.all((got[1] >= 0) & (got[1] <= 1))
    assert np.corrcoef(ref[0].ravel(), got[0].ravel())[0, 1] > 0.9  # boxes still follow the FP32 model


def test_naive_shares_one_scale_over_boxes_and_scores(setup: dict) -> None:
    from deploy.detector import Detector

    res = quantize(
        setup["onnx"], runtime="onnxruntime", calibration=setup["images"], recipe="naive", out=setup["root"] / "naive"
    )
    model = onnx.load(str(res.path))
    assert [o.name for o in model.graph.output] == ["output0"] and res.excluded == ()
    producer, _ = _index(model)
    dq = producer["output0"]
    assert dq.op_type == "DequantizeLinear"
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits[dq.input[1]].size == 1  # one scale for box pixels and probabilities alike
    weight_scales = [
        inits[n.input[1]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
    ]
    assert weight_scales and all(s.size == 1 for s in weight_scales)  # per tensor
    assert {p.key: p.value for p in model.metadata_props}["edgekd_format"] == "ultralytics"
    det = Detector(res.path, conf=0.0)
    assert len(det.predict(np.full((80, 120, 3), 127, np.uint8))) >= 0  # the fused layout decodes


def test_tensorrt_qdq_is_symmetric_per_channel_with_float_weights(setup: dict) -> None:
    res = quantize(setup["onnx"], runtime="tensorrt", calibration=setup["images"], out=setup["root"] / "trt")
    assert res.path.name == "tensorrt_head_float.onnx"
    model = onnx.load(str(res.path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer, consumers = _index(model)
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert qs
    for n in qs:
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), f"{n.name}: zero point must be int8 0 for TensorRT"
    weight_qs = [n for n in qs if n.input[0] in inits]
    assert weight_qs and all(inits[n.input[0]].dtype == np.float32 for n in weight_qs)  # float weight + Q/DQ pair
    assert any(inits[n.input[1]].size > 1 for n in weight_qs)  # per-channel scales
    for n in model.graph.node:  # no quantized biases, no Q/DQ after a Conv's output
        if n.op_type == "Conv":
            if len(n.input) > 2:
                assert producer.get(n.input[2]) is None or producer[n.input[2]].op_type != "DequantizeLinear"
            assert all(c.op_type != "QuantizeLinear" for c in consumers.get(n.output[0], []))
    _assert_head_in_float(model, tuple(res.details["head_nodes"]))


def test_tensorrt_ignores_the_ort_reduce_range_option(setup: dict) -> None:
    """7-bit weights are an ONNX Runtime CPU workaround; TensorRT's Q/DQ model keeps full-range int8 weights."""
    from pipeline.quant import AdvancedOptions

    plain = quantize(setup["onnx"], runtime="tensorrt", calibration=setup["images"], out=setup["root"] / "trt_a")
    reduced = quantize(setup["onnx"], runtime="tensorrt", calibration=setup["images"], out=setup["root"] / "trt_b",
                       advanced=AdvancedOptions(reduce_range=True))  # fmt: skip
    assert reduced.path.read_bytes() == plain.path.read_bytes()


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods(setup: dict, method: str) -> None:
    res = quantize(
        setup["onnx"],
        runtime="onnxruntime",
        calibration=setup["images"][:2],
        method=method,
        out=setup["root"] / method,
        advanced=AdvancedOptions(percentile=99.9),
    )
    assert res.method.value == method and res.details["ops"]["QuantizeLinear"] > 0


def test_calibration_cache_is_reused(setup: dict, tmp_path: Path) -> None:
    cache = tmp_path / "ranges.json"
    adv = AdvancedOptions(calibration_cache=cache)
    first = quantize(
        setup["onnx"], runtime="onnxruntime", calibration=setup["images"], out=tmp_path / "a", advanced=adv
    )
    assert cache.is_file()
    # with the cache present, calibration is skipped: a reader over a missing image would fail otherwise
    second = quantize(
        setup["onnx"], runtime="onnxruntime", calibration=[tmp_path / "missing.jpg"], out=tmp_path / "b", advanced=adv
    )
    assert first.path.read_bytes() == second.path.read_bytes()


def test_openvino_int8_ir_holds_low_precision_ops(setup: dict) -> None:
    import openvino as ov

    from deploy.detector import Detector
    from pipeline.quant.openvino import count_low_precision

    res = quantize(setup["onnx"], runtime="openvino", calibration=setup["images"], out=setup["root"] / "ov")
    assert {p.suffix for p in res.files} == {".xml", ".bin"}
    model = ov.Core().read_model(str(res.path))
    counts = count_low_precision(model)
    assert counts["FakeQuantize"] > 10 and counts["i8_u8_constants"] > 10
    fq_fed = {
        t.get_node().get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() == "FakeQuantize"
        for t in op.output(0).get_target_inputs()
    }
    head = set(res.details["head_nodes"])
    assert head and not fq_fed & head, f"head nodes fed by FakeQuantize: {sorted(fq_fed & head)}"
    det = Detector(res.path)
    assert det.names == ["pedestrian", "cyclist", "car"] and det.imgsz == (IMGSZ, IMGSZ)


def test_openvino_float_irs(setup: dict) -> None:
    import openvino as ov

    from pipeline.quant import Precision
    from pipeline.quant.openvino import export_float

    xml32, bin32 = export_float(setup["onnx"], setup["root"] / "ovf", Precision.FP32)
    xml16, bin16 = export_float(setup["onnx"], setup["root"] / "ovf", Precision.FP16)
    assert bin16.stat().st_size < 0.6 * bin32.stat().st_size
    types = {
        op.get_output_element_type(0).get_type_name()
        for op in ov.Core().read_model(str(xml16)).get_ops()
        if op.get_type_name() == "Constant"
    }
    assert "f16" in types


def test_facade_rejects_bad_choices(setup: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="runtime: got 'tflite'"):
        quantize(setup["onnx"], runtime="tflite", calibration=setup["images"], out=tmp_path)
    with pytest.raises(ConfigError, match="recipe: got 'naive' for runtime 'openvino'"):
        quantize(setup["onnx"], runtime="openvino", calibration=setup["images"], recipe="naive", out=tmp_path)
    with pytest.raises(ConfigError, match="method: got 'kl'"):
        quantize(setup["onnx"], runtime="onnxruntime", calibration=setup["images"], method="kl", out=tmp_path)
    with pytest.raises(ConfigError, match="no images"):
        quantize(setup["onnx"], runtime="onnxruntime", calibration=[], out=tmp_path)


# ---------------------------------------------------------------- calibration frames
def test_reader_matches_deploy_preprocess(setup: dict) -> None:
    from deploy.preprocess import decode_jpeg, preprocess
    from pipeline.quant.calib_reader import CalibrationReader

    reader = CalibrationReader.for_model(setup["onnx"], setup["images"])
    assert len(reader) == 4 and reader.imgsz == (IMGSZ, IMGSZ)
    samples = list(reader)
    expected = preprocess(decode_jpeg(setup["images"][2]), (IMGSZ, IMGSZ))[0]
    np.testing.assert_array_equal(samples[2]["images"], expected)
    reader.set_range(1, 3)
    got = []
    while (item := reader.get_next()) is not None:
        got.append(item["images"])
    assert len(got) == 2 and np.array_equal(got[0], samples[1]["images"])
    reader.rewind()
    assert np.array_equal(reader.get_next()["images"], samples[1]["images"])


def test_manifest_loading_verifies_checksums(setup: dict, tmp_path: Path) -> None:
    import shutil

    from pipeline.quant.calib_reader import load_calibration

    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    manifest = write_manifest(data, tmp_path / "calib.json", n=3)
    assert load_calibration(manifest) == sorted((data / "images" / "train").glob("*.jpg"))[:3]
    victim = sorted((data / "images" / "train").glob("*.jpg"))[1]
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match=victim.name):
        load_calibration(manifest)


def test_openvino_accuracy_control(setup: dict) -> None:
    from pipeline.quant.accuracy import holdout

    evalset = holdout(setup["data"], fraction=1.0, seed=0)
    adv = AdvancedOptions(accuracy_control=True, max_drop=0.01, validation=evalset)
    res = quantize(
        setup["onnx"], runtime="openvino", calibration=setup["images"], out=setup["root"] / "ovac", advanced=adv
    )
    assert res.details["accuracy_control"] and res.details["validation_images"] == 2
    assert res.details["ops"]["FakeQuantize"] > 0
    with pytest.raises(StageError, match="needs a validation set"):
        quantize(
            setup["onnx"],
            runtime="openvino",
            calibration=setup["images"],
            out=setup["root"] / "ovac2",
            advanced=AdvancedOptions(accuracy_control=True),
        )


def test_calibration_runs_in_small_chunks() -> None:
    from pipeline.quant.ort import calib_stride

    for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 300, 301):
        s = calib_stride(n)
        assert 1 <= s <= 4 and n % s == 0
        assert all(n % d for d in range(s + 1, min(4, n) + 1))  # the largest such divisor
