"""benchmarks/bench_int8_heldout.py: finds a run's five models, names what is missing, reads cached detections and
prints the paired verdicts in the right direction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _bench_scripts import load_benchmark

pytest.importorskip("pycocotools", reason="the paired bootstrap runs pycocotools' per-image evaluation")


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_int8_heldout")


def _run(tmp_path: Path, model: str = "distill") -> Path:
    run = tmp_path / "run-seed0"
    for rel in (f"export/{model}.onnx", f"quantize/{model}/openvino_head_float.xml",
                f"quantize/{model}/onnxruntime_head_float.onnx",
                f"peers/{model}/ultralytics_openvino_int8/weights_int8_openvino_model/weights.xml",
                f"peers/{model}/ultralytics_onnx_int8/weights_int8.onnx"):  # fmt: skip
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(b"")
    return run


def _dets(boxes: list[list[float]], shift: float) -> list[dict]:
    return [{"image_id": i + 1, "category_id": 1, "bbox": [b[0] + shift, b[1], b[2], b[3]], "score": 0.9}
            for i, b in enumerate(boxes)]  # fmt: skip


def test_artifacts_found_and_missing_named(bench, tmp_path):
    run = _run(tmp_path)
    found = bench.artifacts(run, "distill")
    assert found["ul_ov"].name == "weights.xml" and all(p.is_file() for p in found.values())
    (run / "peers/distill/ultralytics_onnx_int8/weights_int8.onnx").unlink()
    with pytest.raises(SystemExit, match=r"ul_ort: .*weights_int8.onnx.*peer_models"):
        bench.artifacts(run, "distill")
    with pytest.raises(SystemExit, match="fp32: .*teacher.onnx"):
        bench.artifacts(run, "teacher")


def test_paired_table_from_cached_detections(bench, tmp_path, capsys):
    data = tmp_path / "heldout"
    (data / "annotations").mkdir(parents=True)
    (data / "data.yaml").write_text("path: .\nval: images/val\nnames: {0: pedestrian}\n")
    boxes = [[10.0 + i, 20.0, 30.0, 60.0] for i in range(40)]
    gt = {
        "images": [{"id": i + 1, "file_name": f"{i}.jpg", "width": 128, "height": 128} for i in range(40)],
        "annotations": [
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for i, b in enumerate(boxes)
        ],  # fmt: skip
        "categories": [{"id": 1, "name": "pedestrian"}],
    }
    (data / "annotations" / "val_coco.json").write_text(json.dumps(gt))
    run, out = _run(tmp_path), tmp_path / "evals"
    # ours exact on both runtimes, ultralytics' boxes 6 px off (IoU 0.67), FP32 exact: cached, so nothing is run
    for name, shift in (("fp32", 0), ("ours_ov", 0), ("ours_ort", 0), ("ul_ov", 6), ("ul_ort", 6)):
        (out / run.name / "distill" / name).mkdir(parents=True)
        (out / run.name / "distill" / name / "detections.json").write_text(json.dumps(_dets(boxes, shift)))
    assert bench.main(["--runs", str(run), "--data", str(data / "data.yaml"), "--out", str(out),
                       "--resamples", "50"]) == 0  # fmt: skip
    lines = {ln.split(" | ")[3]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| run-seed0")}
    assert set(lines) == {"ours_ov - ul_ov", "ours_ort - ul_ort", "ours_ov - fp32", "ours_ort - fp32"}
    assert "better" in lines["ours_ov - ul_ov"] and "better" in lines["ours_ort - ul_ort"]
    assert "+0.00 points" in lines["ours_ov - fp32"] and "no detectable difference" in lines["ours_ort - fp32"]
