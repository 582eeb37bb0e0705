"""ONNX export in the edgekd contract: outputs, metadata, parity with PyTorch, the decode head, the stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _quant_fixtures import IMGSZ, fake_upstream_stages, run_config, tiny_onnx

from deploy.errors import IntegrityError, StageError

ANCHORS = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))  # 64 + 16 + 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("export"))


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {t: n for n in model.graph.node for t in n.output}


def test_outputs_shapes_and_opset(exported: Path) -> None:
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*model.graph.input, *model.graph.output)
    }
    assert dims == {"images": [1, 3, IMGSZ, IMGSZ], "boxes": [1, 4, ANCHORS], "scores": [1, 3, ANCHORS]}
    # boxes and scores are computed apart: neither is a slice of a shared concatenation
    prod = _producers(model)
    assert prod["boxes"].op_type == "Mul" and prod["scores"].op_type == "Sigmoid"


def test_contract_metadata(exported: Path) -> None:
    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(props["names"]) == {"0": "pedestrian", "1": "cyclist", "2": "car"}
    assert json.loads(props["imgsz"]) == [IMGSZ, IMGSZ]
    assert props["stride"] == "32"
    assert props["edgekd_format"] == "split-v1"
    assert json.loads(props["preprocess"]) == {
        "letterbox": True,
        "pad_value": 114,
        "scale": 1 / 255,
        "channel_order": "RGB",
        "layout": "NCHW",
        "center": True,
    }


def test_scores_are_probabilities_and_boxes_in_pixels(exported: Path) -> None:
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    boxes, scores = sess.run(["boxes", "scores"], {"images": x})
    assert scores.min() >= 0 and scores.max() <= 1
    assert np.all(boxes[:, 2:] >= 0) and np.abs(boxes[:, :2]).max() < 4 * IMGSZ


def test_parity_with_pytorch(exported: Path, tmp_path: Path) -> None:
    from _models import real_or_synthetic_frames

    from deploy.preprocess import preprocess
    from pipeline.export import load_detection_model
    from pipeline.export_parity import check_parity

    frames, _ = real_or_synthetic_frames(3)
    tensors = np.concatenate([preprocess(f, (IMGSZ, IMGSZ))[0] for f in frames])
    model = load_detection_model(exported.with_suffix(".pt"))
    parity = check_parity(model, exported, tensors, atol=1e-3)
    assert parity.passed and parity.frames == 3
    assert parity.scores_max_abs < 1e-3 and parity.boxes_max_rel < 1e-3
    strict = check_parity(model, exported, tensors, atol=1e-12)
    assert not strict.passed and strict.as_dict()["max_error"] == parity.max_error


def test_parity_output_shape_mismatch_is_a_stage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import export_parity

    monkeypatch.setattr(export_parity, "torch_outputs", lambda m, t: (np.zeros((1, 4, 8)), np.zeros((1, 3, 8))))
    monkeypatch.setattr(export_parity, "onnx_outputs", lambda p, t: (np.zeros((1, 4, 6)), np.zeros((1, 3, 6))))
    with pytest.raises(StageError, match=r"m\.onnx: output shapes boxes \(1, 4, 6\)"):
        export_parity.check_parity(None, Path("m.onnx"), np.zeros((1, 3, 8, 8), np.float32), atol=1e-3)


def test_dynamic_batch(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path, dynamic_batch=True, simplify=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((2, 3, IMGSZ, IMGSZ), dtype=np.float32)
    boxes, scores = sess.run(["boxes", "scores"], {"images": x})
    assert boxes.shape == (2, 4, ANCHORS) and scores.shape == (2, 3, ANCHORS)
    single = sess.run(["scores"], {"images": x[1:]})[0]
    np.testing.assert_allclose(scores[1:], single, atol=1e-5)


def test_bad_spec_is_rejected() -> None:
    from pipeline.export import ExportSpec

    with pytest.raises(StageError, match="opset"):
        ExportSpec(imgsz=(64, 64), opset=13)
    with pytest.raises(StageError, match="multiples of the stride"):
        ExportSpec(imgsz=(64, 70))


def test_detector_runs_the_export(exported: Path) -> None:
    from _models import synthetic_frames

    from deploy.detector import Detector

    det = Detector(exported, conf=0.0)
    assert det.names == ["pedestrian", "cyclist", "car"] and det.imgsz == (IMGSZ, IMGSZ)
    dets = det.predict(synthetic_frames(1)[0])
    assert len(dets) > 0 and dets.xyxy.shape[1] == 4


def test_decode_head_is_found(exported: Path) -> None:
    from pipeline.quant.head import onnx_head

    head = onnx_head(onnx.load(str(exported)))
    kinds = {n.name: n.op_type for n in onnx.load(str(exported)).graph.node}
    assert [kinds[n] for n in head.dfl] == ["Conv"]
    assert len(head.boundary) == 6 and all(kinds[n] == "Conv" for n in head.boundary)  # 3 levels x (box, cls)
    ops = {kinds[n] for n in head.nodes}
    assert {"Softmax", "Sigmoid", "Concat", "Reshape"} <= ops
    assert not set(head.boundary) & set(head.nodes)


# ---------------------------------------------------------------- the stage
@pytest.fixture()
def run_with_student(tmp_path: Path):
    from pipeline.runner import Runner

    cfg = run_config(tmp_path / "runs")
    runner = Runner(cfg, fake_upstream_stages(), log=lambda _m: None)
    runner.run()
    return cfg, runner


def _ctx(cfg, runner, out: Path):
    from pipeline.runner import StageContext

    inputs = {n: runner.run_dir / n for n in ("data", "student")}
    return StageContext(cfg, "export", out, runner.run_dir, inputs, log=lambda _m: None)


def test_stage_writes_exports_and_summary(run_with_student, tmp_path: Path) -> None:
    from pipeline.stages.export import run_export

    cfg, runner = run_with_student
    out = tmp_path / "out"
    out.mkdir()
    run_export(_ctx(cfg, runner, out))
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "student.json", "student.onnx"]
    summary = json.loads((out / "export.json").read_text())
    (record,) = summary["models"]
    assert record["model"] == "student" and record["parity"]["passed"] and record["parity"]["frames"] == 2
    assert record["params"] > 1_000_000 and record["gflops"] > 0
    assert record["weights"]["path"] == "student/weights/best.pt"
    import hashlib

    assert record["onnx"]["sha256"] == hashlib.sha256((out / "student.onnx").read_bytes()).hexdigest()


def test_stage_fails_loudly_on_parity(run_with_student, tmp_path: Path) -> None:
    from pipeline.stages.export import run_export

    cfg, runner = run_with_student
    strict = cfg.model_copy(update={"export": cfg.export.model_copy(update={"parity_atol": 1e-12})})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(StageError, match=r"export of 'student'.*parity_atol=1e-12"):
        run_export(_ctx(strict, runner, out))


def test_stage_refuses_altered_weights_before_loading(run_with_student, tmp_path: Path, monkeypatch) -> None:
    import pipeline.export
    from pipeline.stages.export import run_export

    cfg, runner = run_with_student
    weights = runner.run_dir / "student" / "weights" / "best.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")

    def must_not_load(path):  # pragma: no cover - reaching it is the failure
        raise AssertionError(f"unpickled {path} before checking its checksum")

    monkeypatch.setattr(pipeline.export, "load_detection_model", must_not_load)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError, match="best.pt"):
        run_export(_ctx(cfg, runner, out))


def test_checkpoint_is_not_a_detection_model(tmp_path: Path) -> None:
    import torch

    from pipeline.export import load_detection_model

    path = tmp_path / "bad.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(StageError, match="expected an ultralytics DetectionModel"):
        load_detection_model(path)


def test_parity_frames_come_from_the_annotations_wherever_the_images_live(tmp_path: Path) -> None:
    """A ``yolo`` source keeps its images where the user has them: the COCO file_name is absolute."""
    import cv2

    from deploy.errors import DataError
    from pipeline.export_parity import val_images

    elsewhere = tmp_path / "user_images"
    elsewhere.mkdir()
    for name in ("b.jpg", "a.jpg"):
        cv2.imwrite(str(elsewhere / name), np.zeros((8, 8, 3), np.uint8))
    data = tmp_path / "data"
    (data / "annotations").mkdir(parents=True)
    listing = {"images": [{"id": i, "file_name": str(elsewhere / n)} for i, n in enumerate(("b.jpg", "a.jpg"))]}
    (data / "annotations/val_coco.json").write_text(json.dumps(listing))
    assert val_images(data, 5) == [elsewhere / "a.jpg", elsewhere / "b.jpg"]  # no data/images/val needed
    (elsewhere / "a.jpg").unlink()
    with pytest.raises(DataError, match="a.jpg, which does not exist"):
        val_images(data, 5)
