"""Executed-precision reporting: an INT8 (QDQ) model reports int8/mixed on ONNX Runtime and OpenVINO."""

from __future__ import annotations

import numpy as np
import pytest
from _models import IMGSZ, real_or_synthetic_frames, tiny_models

from deploy.backends import summarize_precision
from deploy.backends.onnxruntime import graph_precision_counts
from deploy.detector import Detector


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    models = tiny_models(tmp_path_factory.getbasetemp() / "edgekd-tiny-models")
    fp32 = Detector(models["onnx"], threads=1)
    frames, _ = real_or_synthetic_frames(2)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": fp32.preprocess(f)[0]} for f in frames])

        def get_next(self):
            return next(self.items, None)

    out = tmp_path_factory.mktemp("int8") / "tiny_int8.onnx"
    quantize_static(
        str(models["onnx"]),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],  # typical detector PTQ; keeps the float box/score decode
    )
    # quantize_static keeps metadata_props? make sure the contract metadata is there either way
    import onnx

    proto = onnx.load(str(out))
    if not any(p.key == "names" for p in proto.metadata_props):
        proto.metadata_props.extend(onnx.load(str(models["onnx"])).metadata_props)
        onnx.save(proto, str(out))
    return out


def test_summarize_precision():
    assert summarize_precision({"fp32": 10}, "fp32") == "fp32"
    assert summarize_precision({"int8": 10}, "fp32") == "int8"
    assert summarize_precision({"int8": 9, "fp32": 1}, "fp32") == "mixed"
    assert summarize_precision({"int8": 0, "fp32": 3}, "bf16") == "bf16"
    assert summarize_precision({}, "fp16") == "fp16"


def test_fp32_graph_counts():
    import onnx

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 4, 4])],
        [onnx.numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float16), "w")],
    )
    counts, float_precision = graph_precision_counts(onnx.helper.make_model(graph))
    assert counts == {"fp16": 1} and float_precision == "fp16"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_model_reports_int8(qdq_model, backend):
    det = Detector(qdq_model, backend=backend, threads=1)
    assert det.executed_precision in ("int8", "mixed")
    assert det.backend.precision_detail.get("int8", 0) > 0
    frames, _ = real_or_synthetic_frames(1)
    got = det.predict(frames[0])
    assert len(got) > 0 and det.imgsz == IMGSZ


def test_int8_model_refuses_a_float_precision_on_onnxruntime(qdq_model):
    from deploy.errors import InputError

    with pytest.raises(InputError, match="own precision"):
        Detector(qdq_model, precision="fp16")
    assert Detector(qdq_model, precision="int8").executed_precision in ("int8", "mixed")


def test_int8_model_refuses_fp32_on_onnxruntime(qdq_model):
    """A Q/DQ model holds FP32 scales, yet executes int8/mixed: precision="fp32" is compared with that, and refused."""
    from deploy.errors import InputError

    with pytest.raises(InputError, match=r"own precision \((int8|mixed)\), not 'fp32'"):
        Detector(qdq_model, backend="onnxruntime", precision="fp32")
