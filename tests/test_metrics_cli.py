"""`edgekd metrics` and `edgekd eval` through pipeline.cli.main; predict_coco; bad input -> exit 2 naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.detections import Detections
from deploy.errors import InputError
from deploy.metrics.evaluate import category_map, predict_coco
from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("pedestrian", "cyclist", "car")


def write_dataset(tmp: Path, n: int = 3) -> tuple[Path, dict]:
    """A tiny dataset in the edgekd layout: data.yaml, images/val, annotations/val_coco.json + distractors."""
    rng = np.random.default_rng(0)
    (tmp / "images/val").mkdir(parents=True)
    (tmp / "annotations").mkdir()
    gt = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(NAMES)]}
    for i in range(1, n + 1):
        img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        cv2.rectangle(img, (20, 20), (50, 80), (0, 0, 255), -1)
        cv2.imwrite(str(tmp / f"images/val/{i:06d}.jpg"), img)
        gt["images"].append({"id": i, "file_name": f"images/val/{i:06d}.jpg", "width": 128, "height": 96,
                             "attributes": {"timeofday": "night" if i % 2 else "day"}})  # fmt: skip
        gt["annotations"].append({"id": i, "image_id": i, "category_id": 1, "bbox": [20, 20, 30, 60], "area": 1800.0,
                                  "iscrowd": 0, "ignore": 0})  # fmt: skip
    (tmp / "annotations/val_coco.json").write_text(json.dumps(gt))
    dis = {"kinds": ["pole"], "distractors": [{"id": 1, "image_id": 1, "bbox": [90, 0, 10, 90], "kind": "pole"}]}
    (tmp / "annotations/val_distractors.json").write_text(json.dumps(dis))
    (tmp / "data.yaml").write_text(
        "train: images/train\nval: images/val\nnc: 3\nnames: {0: pedestrian, 1: cyclist, 2: car}\n"
    )
    return tmp / "data.yaml", gt


def write_pair(tmp: Path, dets: list | str | None = None) -> tuple[Path, Path]:
    _, gt = write_dataset(tmp)
    if dets is None:
        dets = [
            {"image_id": 1, "category_id": 1, "bbox": [20, 20, 30, 60], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [21, 19, 30, 60], "score": 0.7},
            {"image_id": 2, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.6},
            {"image_id": 1, "category_id": 1, "bbox": [91, 5, 9, 40], "score": 0.8},
        ]
    dt = tmp / "dt.json"
    dt.write_text(dets if isinstance(dets, str) else json.dumps(dets))
    return tmp / "annotations/val_coco.json", dt


# ----------------------------------------------------------------------------------------------- edgekd metrics
def test_metrics_command_writes_json_and_table(tmp_path, capsys):
    gt, dt = write_pair(tmp_path)
    out = tmp_path / "m.json"
    dis = tmp_path / "annotations/val_distractors.json"
    code = main(["metrics", "--gt", str(gt), "--dt", str(dt), "--out", str(out), "--recall-target", "0.6",
                 "--fps", "10", "--distractors", str(dis)])  # fmt: skip
    assert code == 0
    res = json.loads(out.read_text())
    assert {"overall", "per_class", "curves", "calibration", "breakdown", "params"} <= set(res)
    keys = {"map50", "map50_95", "precision_at_op", "recall_at_op", "fppi_at_op", "lamr", "fa_per_hour", "dece",
            "op_threshold", "op_reached", "max_recall"}  # fmt: skip
    assert keys <= set(res["overall"]) and keys <= set(res["per_class"]["pedestrian"])
    ped = res["per_class"]["pedestrian"]
    assert ped["op_reached"] and ped["recall_at_op"] == pytest.approx(2 / 3) and ped["op_threshold"] == 0.7
    assert ped["fppi_at_op"] == pytest.approx(1 / 3) and ped["fa_per_hour"] == pytest.approx(1 / 3 * 10 * 3600)
    assert res["breakdown"]["distractors"]["per_kind"]["pole"]["fp_at_op"] == 1
    assert res["params"]["recall_target"] == 0.6
    printed = capsys.readouterr().out
    assert "overall" in printed and "pedestrian" in printed and "LAMR" in printed


def test_empty_detections_are_not_an_error(tmp_path):
    gt, dt = write_pair(tmp_path, [])
    out = tmp_path / "m.json"
    assert main(["metrics", "--gt", str(gt), "--dt", str(dt), "--out", str(out), "-q"]) == 0
    overall = json.loads(out.read_text())["overall"]
    assert overall["recall_at_op"] == 0.0 and overall["lamr"] == 1.0 and overall["map50"] == 0.0


@pytest.mark.parametrize(
    ("dets", "needle"),
    [
        ('[{"image_id": 1,', "not valid JSON"),
        ('{"foo": 1}', "expected a COCO results list"),
        ([{"image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], "image_id 42"),
        ([{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1], "score": 0.5}], "category_id 9"),
        ([{"image_id": 1, "category_id": 1, "score": 0.5}], "no 'bbox'"),
    ],
)
def test_bad_detections_exit_2_naming_the_file(tmp_path, capsys, dets, needle):
    gt, dt = write_pair(tmp_path, dets)
    assert main(["metrics", "--gt", str(gt), "--dt", str(dt)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "dt.json" in err and "Traceback" not in err


def test_bad_ground_truth_and_options_exit_2(tmp_path, capsys):
    gt, dt = write_pair(tmp_path)
    assert main(["metrics", "--gt", str(tmp_path / "nope.json"), "--dt", str(dt)]) == 2
    assert "nope.json" in capsys.readouterr().err
    broken = tmp_path / "gt_broken.json"
    broken.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    assert main(["metrics", "--gt", str(broken), "--dt", str(dt)]) == 2
    err = capsys.readouterr().err
    assert "gt_broken.json" in err and "categories" in err
    assert main(["metrics", "--gt", str(gt), "--dt", str(dt), "--recall-target", "1.5"]) == 2
    assert "recall target" in capsys.readouterr().err


def test_metrics_vs_prints_the_paired_difference(tmp_path, capsys):
    pytest.importorskip("pycocotools")
    gt, dt = write_pair(tmp_path)
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [20, 20, 30, 60], "score": 0.9}]))
    out = tmp_path / "m.json"
    args = ["metrics", "--gt", str(gt), "--dt", str(dt), "--vs", str(worse), "--out", str(out), "--resamples", "50"]
    assert main(args) == 0
    paired = json.loads(out.read_text())["paired"]
    assert paired["delta_map50_95"] > 0 and paired["resamples"] == 50 and paired["n_images"] == 3
    assert paired["ci_low"] <= paired["delta_map50_95"] <= paired["ci_high"] and paired["vs"] == str(worse)
    printed = capsys.readouterr().out
    assert f"mAP50-95 {dt} - {worse}: +" in printed and "95% CI [" in printed and "(3 images, 50 resamples)" in printed
    wrapped = tmp_path / "wrapped.json"  # a COCO object holding the results as annotations is accepted too
    wrapped.write_text(json.dumps({"annotations": json.loads(dt.read_text())}))
    assert main(["metrics", "--gt", str(gt), "--dt", str(dt), "--vs", str(wrapped), "-q", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["paired"]["verdict"] == "no detectable difference"


def test_metrics_vs_without_pycocotools_says_what_to_install(tmp_path, capsys, monkeypatch):
    gt, dt = write_pair(tmp_path)
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import fails, as on a base (runtime-only) install
    assert main(["metrics", "--gt", str(gt), "--dt", str(dt), "--vs", str(dt)]) != 0
    err = capsys.readouterr().err
    assert "--vs needs pycocotools: pip install 'edgekd[train]'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--resamples", "0"], "--resamples: got 0"),
        (["--confidence", "1"], "--confidence: got 1.0, expected a value in (0, 1)"),
    ],
)
def test_metrics_vs_bad_options_and_files_exit_2(tmp_path, capsys, extra, needle):
    gt, dt = write_pair(tmp_path)
    assert main(["metrics", "--gt", str(gt), "--dt", str(dt), "--vs", str(dt), *extra]) == 2
    assert needle in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"foo": 1}')
    assert main(["metrics", "--gt", str(gt), "--dt", str(dt), "--vs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "Traceback" not in err


def test_metrics_command_never_imports_torch(tmp_path):
    gt, dt = write_pair(tmp_path)
    code = (
        "import sys; from pipeline.cli import main; "
        f"rc = main(['metrics', '--gt', {str(gt)!r}, '--dt', {str(dt)!r}, '-q']); "
        "import deploy.corruptions, deploy.metrics; "
        "bad = [m for m in ('torch', 'ultralytics', 'torchvision') if m in sys.modules]; "
        "print(rc, bad); sys.exit(rc or len(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ predict_coco
class FakeDetector:
    """Detects a red-ish rectangle at a fixed place; records the images it was given."""

    def __init__(self, names):
        self.names = names
        self.seen: list[np.ndarray] = []

    def predict(self, img: np.ndarray) -> Detections:
        self.seen.append(img)
        return Detections(
            np.array([[20, 20, 50, 80], [0, 0, 5, 5]], np.float32), np.array([0.9, 0.2]), np.array([0, 5])
        )


def test_predict_coco_maps_classes_applies_corruption_and_reports_progress(tmp_path):
    _, gt = write_dataset(tmp_path)
    fake = FakeDetector(["car", "pedestrian", "x", "y", "z", "cyclist"])  # a superset, in another order
    calls = []

    def darken(img, image_id):
        return (img // 4).astype(np.uint8)

    res = predict_coco(fake, gt, tmp_path, corruption=darken, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert len(res) == 6 and {r["category_id"] for r in res} == {3, 2}  # index 0 = car (id 3), 5 = cyclist (id 2)
    assert res[0] == {"image_id": 1, "category_id": 3, "bbox": [20.0, 20.0, 30.0, 60.0], "score": 0.9}
    assert max(int(img.max()) for img in fake.seen) <= 255 // 4


def test_predict_coco_missing_image_is_named(tmp_path):
    _, gt = write_dataset(tmp_path)
    (tmp_path / "images/val/000002.jpg").unlink()
    with pytest.raises(InputError, match="000002.jpg"):
        predict_coco(FakeDetector(list(NAMES)), gt, tmp_path)


def test_category_map_by_name_position_or_error():
    gt = {"categories": [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "cyclist"}]}
    assert category_map(["cyclist", "pedestrian"], gt) == {0: 2, 1: 1}
    assert category_map({0: "person", 1: "bicycle"}, gt) == {0: 1, 1: 2}  # no name overlap, same count: by position
    with pytest.raises(InputError, match="do not match"):
        category_map(["person", "bicycle", "car"], gt)
    # one name shared, one not, same count: never by position (that would score the model's cyclist as pedestrian)
    with pytest.raises(InputError, match=r"model-only \['rider'\], ground-truth-only \['pedestrian'\]"):
        category_map(["cyclist", "rider"], gt)
    with pytest.raises(InputError, match="no 'categories'"):
        category_map(["cyclist"], {"categories": []})


# ------------------------------------------------------------------------------------------------- edgekd eval
@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    from _models import export_split_onnx, make_checkpoint

    d = tmp_path_factory.mktemp("model")
    return export_split_onnx(make_checkpoint(d / "tiny.pt"), d / "tiny.onnx", (64, 64))


def test_eval_command_runs_a_model_on_a_dataset(tmp_path, tiny_onnx, capsys):
    data, _ = write_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    code = main(["eval", "--model", str(tiny_onnx), "--data", str(data), "--out", str(out), "--conf", "0.01",
                 "--corruption", "fog", "--severity", "2"])  # fmt: skip
    assert code == 0
    dets = json.loads((out / "detections.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert dets and {d["image_id"] for d in dets} <= {1, 2, 3}
    assert {d["category_id"] for d in dets} <= {1, 2, 3} and min(d["score"] for d in dets) > 0.01
    assert metrics["params"]["n_detections"] == len(dets) and metrics["params"]["corruption"]["kind"] == "fog"
    assert metrics["breakdown"]["distractors"] is not None
    assert set(metrics["per_class"]) == set(NAMES)
    assert "overall" in capsys.readouterr().out
    # the same inputs give the same detections (deterministic corruption and inference)
    assert main(["eval", "--model", str(tiny_onnx), "--data", str(data), "--out", str(tmp_path / "again"), "-q",
                 "--conf", "0.01", "--corruption", "fog", "--severity", "2"]) == 0  # fmt: skip
    assert (tmp_path / "again/detections.json").read_text() == (out / "detections.json").read_text()


def test_eval_command_bad_inputs_exit_2(tmp_path, capsys):
    data, _ = write_dataset(tmp_path / "ds")
    assert main(["eval", "--model", str(tmp_path / "none.onnx"), "--data", str(data)]) == 2
    assert "none.onnx" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "none.onnx"), "--data", str(data), "--split", "test"]) == 2
    assert "test_coco.json" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "x.onnx"), "--data", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
