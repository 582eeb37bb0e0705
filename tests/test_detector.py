"""deploy.Detector on ONNX Runtime and OpenVINO, against the PyTorch model (pipeline.reference)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from _models import IMGSZ, NAMES, assert_same_detections, real_or_synthetic_frames, tiny_models

from deploy.detections import Detections
from deploy.detector import Detector
from deploy.errors import InputError
from deploy.metadata import FORMAT_SPLIT, FORMAT_ULTRALYTICS


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.getbasetemp() / "edgekd-tiny-models")


@pytest.fixture(scope="module")
def frames():
    imgs, _ = real_or_synthetic_frames(3)
    return [*imgs, np.ascontiguousarray(imgs[0][:300, :200])]  # + a portrait crop


@pytest.fixture(scope="module")
def ort(models):
    return Detector(models["onnx"], threads=1)


@pytest.fixture(scope="module")
def reference(models, frames):
    from pipeline.reference import torch_reference

    return torch_reference(models["pt"], frames, IMGSZ, conf=0.001, iou=0.7, max_det=300)


def test_properties(ort):
    assert ort.names == list(NAMES)
    assert ort.imgsz == IMGSZ
    assert ort.backend_name == "onnxruntime"
    assert ort.executed_precision == "fp32"
    assert ort.meta.format == FORMAT_SPLIT
    assert (ort.conf, ort.iou, ort.max_det) == (0.001, 0.7, 300)
    assert "onnxruntime" in repr(ort)


def test_three_steps_equal_predict(ort, frames):
    tensor, meta = ort.preprocess(frames[0])
    assert tensor.shape == (1, 3, *IMGSZ) and tensor.dtype == np.float32
    outputs = ort.infer(tensor)
    assert outputs["boxes"].shape[:2] == (1, 4) and outputs["scores"].shape[:2] == (1, len(NAMES))
    (dets,) = ort.postprocess(outputs, [meta])
    again = ort.predict(frames[0])
    assert isinstance(dets, Detections) and len(dets) > 0
    np.testing.assert_array_equal(dets.xyxy, again.xyxy)
    np.testing.assert_array_equal(dets.confidence, again.confidence)


@pytest.mark.parametrize("key", ["onnx", "onnx_dyn", "onnx_b2"])
def test_predict_batch_equals_one_by_one(models, frames, key):
    det = Detector(models[key], threads=1)
    batch = det.predict_batch(frames[:3])
    assert len(batch) == 3
    for image, got in zip(frames[:3], batch, strict=True):
        assert_same_detections(det.predict(image), got, iou=0.999, score_tol=1e-4)
    assert det.predict_batch([]) == []


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_parity_with_pytorch(models, frames, reference, backend):
    det = Detector(models["onnx"], backend=backend, threads=1)
    assert det.executed_precision == "fp32"
    for ref, got in zip(reference, det.predict_batch(frames), strict=True):
        assert len(ref) > 0
        assert_same_detections(ref, got)


def test_ultralytics_own_export_is_supported(models, frames, ort):
    det = Detector(models["onnx_ultralytics"], threads=1)
    assert det.names == list(NAMES) and det.imgsz == IMGSZ  # parsed from Python-literal metadata
    assert det.meta.format == FORMAT_ULTRALYTICS
    assert list(det.infer(det.preprocess(frames[0])[0])) == ["output0"]
    assert_same_detections(ort.predict(frames[1]), det.predict(frames[1]))


def test_thresholds_are_applied(models, frames):
    det = Detector(models["onnx"], conf=0.5, iou=0.3, max_det=7, threads=1)
    got = det.predict(frames[0])
    assert 0 < len(got) <= 7 and (got.confidence > 0.5).all()
    h, w = frames[0].shape[:2]
    assert (got.xyxy >= 0).all() and (got.xyxy[:, [0, 2]] <= w).all() and (got.xyxy[:, [1, 3]] <= h).all()


def test_predict_file(ort, frames, tmp_path):
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), frames[1])
    got = ort.predict_file(path)
    want = ort.predict(cv2.imread(str(path)))
    np.testing.assert_array_equal(got.xyxy, want.xyxy)
    with pytest.raises(InputError, match="nope.jpg"):
        ort.predict_file(tmp_path / "nope.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.jpg"):
        ort.predict_file(tmp_path / "bad.jpg")


def _save_ir(onnx_path, xml_path, strip_metadata: bool = False):
    import onnx
    import openvino as ov

    src = onnx_path
    if strip_metadata:
        proto = onnx.load(str(onnx_path))
        del proto.metadata_props[:]
        src = xml_path.with_name("bare.onnx")
        onnx.save(proto, str(src))
    ov.save_model(ov.Core().read_model(str(src)), str(xml_path), compress_to_fp16=False)
    return xml_path


def test_openvino_ir_keeps_the_onnx_metadata(models, frames, ort, tmp_path):
    det = Detector(_save_ir(models["onnx"], tmp_path / "tiny.xml"), threads=1)
    assert det.backend_name == "openvino" and det.names == list(NAMES) and det.imgsz == IMGSZ
    assert det.executed_precision == "fp32"
    assert_same_detections(ort.predict(frames[0]), det.predict(frames[0]))


def test_sidecar_supplies_missing_metadata(models, tmp_path):
    xml = _save_ir(models["onnx"], tmp_path / "bare.xml", strip_metadata=True)
    with pytest.raises(InputError, match=r"no class names.*bare\.edgekd\.json"):
        Detector(xml)
    (tmp_path / "bare.edgekd.json").write_text(json.dumps({"names": ["a", "b", "c"], "imgsz": list(IMGSZ)}))
    det = Detector(xml)
    assert det.names == ["a", "b", "c"] and det.imgsz == IMGSZ


def test_metadata_disagreeing_with_the_model_is_rejected(models, tmp_path):
    onnx_path = tmp_path / "tiny.onnx"
    shutil.copy(models["onnx"], onnx_path)
    (tmp_path / "tiny.edgekd.json").write_text(json.dumps({"imgsz": [64, 64]}))
    with pytest.raises(InputError, match="disagrees"):
        Detector(onnx_path)
    (tmp_path / "tiny.edgekd.json").write_text(json.dumps({"names": ["only-one"]}))
    with pytest.raises(InputError, match="1 class name"):
        Detector(onnx_path).predict(np.zeros((50, 50, 3), np.uint8))
    (tmp_path / "tiny.edgekd.json").write_text("{not json")
    with pytest.raises(InputError, match="tiny.edgekd.json"):
        Detector(onnx_path)


def test_openvino_precision_hint_is_explicit_and_reported(models):
    det = Detector(models["onnx"], backend="openvino", precision="bf16", threads=1)
    assert det.backend.hint in ("bf16", "fp32")  # fp32 when the CPU has no bf16 support
    assert det.executed_precision == det.backend.hint
    assert Detector(models["onnx"], backend="openvino").backend.hint == "fp32"


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("model.pt", {}, r"unknown extension '\.pt'"),
        ("missing.onnx", {}, "missing.onnx.*does not exist"),
        ("tiny.onnx", {"backend": "tensorrt"}, "'tensorrt' loads .engine"),
        ("tiny.onnx", {"backend": "tflite"}, "unknown; expected one of"),
        ("tiny.onnx", {"threads": 0}, "threads=0"),
        ("tiny.onnx", {"precision": "fp8"}, "precision='fp8'"),
        ("tiny.onnx", {"precision": "fp16"}, "own precision"),
        ("tiny.onnx", {"conf": 2.0}, r"conf=2\.0"),
    ],
)
def test_bad_arguments(models, tmp_path, name, kwargs, match):
    path = models["onnx"] if name == "tiny.onnx" else tmp_path / name
    if name == "model.pt":
        path.write_bytes(b"x")
    with pytest.raises(InputError, match=match):
        Detector(path, **kwargs)


def test_corrupt_onnx_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(InputError, match="bad.onnx"):
        Detector(bad)


def test_reference_edge_cases(models, tmp_path):
    from pipeline.reference import torch_reference

    assert torch_reference(models["pt"], [], IMGSZ) == []
    with pytest.raises(InputError, match="missing.pt"):
        torch_reference(tmp_path / "missing.pt", [np.zeros((8, 8, 3), np.uint8)], IMGSZ)
    (empty,) = torch_reference(models["pt"], [np.zeros((64, 64, 3), np.uint8)], 64, conf=1.0)
    assert isinstance(empty, Detections) and len(empty) == 0
