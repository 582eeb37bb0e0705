"""Deploy bundles: make from a (small, fake) finished run, verify checksums and parity, catch a flipped byte."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from _fake_run import CONFIG_DIGEST, cached_fake_run

from deploy.bundle import (
    SUMS,
    ParityParams,
    compare_records,
    parse_sums,
    verify_bundle,
    verify_checksums,
)
from deploy.bundle_make import BundleOptions, make_bundle
from deploy.errors import InputError, IntegrityError


@pytest.fixture(scope="module")
def run_dir(request, tmp_path_factory) -> Path:
    return cached_fake_run(request.config, tmp_path_factory)


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("b") / "bundle"
    make_bundle(run_dir, out, BundleOptions(n_images=4, seed=1), log=lambda s: None)
    return out


def fresh_copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_bundle_layout_and_manifest(bundle):
    m = json.loads((bundle / "bundle.json").read_text())
    assert m["schema"] == "edgekd.bundle/v1" and m["model"] == "distill"
    assert m["classes"] == ["pedestrian", "cyclist", "car"] and m["imgsz"] == [64, 64]
    assert m["preprocess"]["pad_value"] == 114 and m["preprocess"]["channel_order"] == "RGB"
    roles = {a["id"]: a["role"] for a in m["artifacts"]}
    assert roles == {
        "distill/onnxruntime/fp32": "fp32",
        "distill/onnxruntime/int8/qdq": "int8_qdq",
        "distill/tensorrt/int8/qdq": "trt_qdq",
    }
    for art in m["artifacts"]:
        assert (bundle / art["path"]).is_file() and not Path(art["path"]).is_absolute()
        assert m["files"][art["path"]]["sha256"] == art["sha256"]
    fp32 = m["artifacts"][0]
    assert fp32["params"] > 1_000_000 and fp32["gflops"] > 0
    gt = json.loads((bundle / "eval/annotations/val_coco.json").read_text())
    assert len(gt["images"]) == 4 == m["eval"]["images"]
    assert all((bundle / "eval" / im["file_name"]).is_file() for im in gt["images"])
    ids = {im["id"] for im in gt["images"]}
    assert gt["annotations"] and all(a["image_id"] in ids for a in gt["annotations"])
    dis = json.loads((bundle / "eval/annotations/val_distractors.json").read_text())
    assert {d["image_id"] for d in dis["distractors"]} <= ids
    assert set(m["thresholds"]["per_class"]) == {"pedestrian", "cyclist", "car"}
    assert "bundled evaluation set" in m["thresholds"]["source"]
    assert m["source"]["config_hash"] == CONFIG_DIGEST and m["calibration"]["n"] == 4
    assert m["validated"]["bundle_eval"]["overall"]["n_gt"] == len(gt["annotations"])
    text = (bundle / "bundle.json").read_text()
    assert str(bundle) not in text and "/tmp" not in text  # relative paths only


def test_sha256sums_covers_every_file_and_matches_coreutils(bundle):
    listed = parse_sums((bundle / SUMS).read_text(), SUMS)
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {SUMS}
    assert set(listed) == files and "bundle.json" in listed
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "-c", "--quiet", SUMS], cwd=bundle, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_verify_passes_with_parity(bundle):
    report = verify_bundle(bundle)
    assert report.checked_files == len(parse_sums((bundle / SUMS).read_text(), SUMS))
    assert report.parity["compared"] > 0 and report.parity["unmatched"] == 0
    assert report.parity["images"] == 4


@pytest.mark.parametrize(
    "rel",
    ["models/distill_fp32.onnx", "models/distill_tensorrt_int8_qdq.onnx", "eval/annotations/val_coco.json", "bundle.json"],
)
def test_a_flipped_byte_is_caught_and_named(bundle, tmp_path, rel):
    copy = fresh_copy(bundle, tmp_path)
    flip_byte(copy / rel)
    with pytest.raises(IntegrityError, match="checksum mismatch") as err:
        verify_bundle(copy, parity=False)
    assert rel in str(err.value)


def test_flipped_image_and_missing_file_via_cli(bundle, tmp_path, capsys):
    from pipeline.cli import main

    copy = fresh_copy(bundle, tmp_path)
    image = sorted((copy / "eval/images").iterdir())[0]
    flip_byte(image, offset=len(image.read_bytes()) - 3)
    assert main(["deploy", "verify", str(copy)]) == 1
    err = capsys.readouterr().err
    assert image.name in err and "checksum mismatch" in err and "Traceback" not in err
    shutil.copyfile(bundle / image.relative_to(copy), image)
    (copy / "eval/reference_detections.json").unlink()
    assert main(["deploy", "verify", str(copy), "--no-parity"]) == 1
    assert "reference_detections.json" in capsys.readouterr().err
    assert main(["deploy", "verify", str(bundle)]) == 0
    assert "OK" in capsys.readouterr().out


def test_sums_and_manifest_must_agree(bundle, tmp_path):
    copy = fresh_copy(bundle, tmp_path)
    (copy / SUMS).write_text((copy / SUMS).read_text().replace("  models/", "  models/x", 1))
    with pytest.raises(IntegrityError, match="missing from the bundle"):
        verify_checksums(copy)
    (copy / SUMS).write_text("not a checksum line\n")
    with pytest.raises(IntegrityError, match="line 1"):
        verify_checksums(copy)
    (copy / SUMS).unlink()
    with pytest.raises(IntegrityError, match="SHA256SUMS"):
        verify_checksums(copy)
    with pytest.raises(InputError, match="not a deploy bundle"):
        verify_checksums(tmp_path)


def test_parity_failure_is_reported(bundle, tmp_path):
    copy = fresh_copy(bundle, tmp_path)
    ref_path = copy / "eval/reference_detections.json"
    ref = json.loads(ref_path.read_text())
    first = next(k for k, v in ref.items() if v["scores"])
    ref[first]["scores"][0] = min(1.0, ref[first]["scores"][0] + 0.05)
    ref_path.write_text(json.dumps(ref))
    from deploy.bundle import write_sums
    from deploy.bundle_make import file_table

    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["files"] = file_table(copy)
    (copy / "bundle.json").write_text(json.dumps(manifest))
    write_sums(copy)  # a consistent bundle whose recorded detections are wrong
    with pytest.raises(IntegrityError, match="parity check failed"):
        verify_bundle(copy)


def test_compare_records_both_ways():
    p = ParityParams(keep_above=0.05, score_atol=0.002, min_iou=0.9)
    ref = {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "scores": [0.9, 0.5], "classes": [0, 1]}
    same = compare_records(ref, ref, p)
    assert same == {"compared": 4, "unmatched": 0, "max_score_diff": 0.0, "min_iou": 1.0}
    shifted = {"boxes": [[0, 0, 10, 10], [20.2, 20, 30.2, 30]], "scores": [0.9005, 0.5], "classes": [0, 1]}
    r = compare_records(ref, shifted, p)
    assert r["unmatched"] == 0 and r["max_score_diff"] == pytest.approx(0.0005) and r["min_iou"] < 1
    wrong_class = {**ref, "classes": [0, 2]}
    assert compare_records(ref, wrong_class, p)["unmatched"] == 2
    missing = {"boxes": [[0, 0, 10, 10]], "scores": [0.9], "classes": [0]}
    assert compare_records(ref, missing, p)["unmatched"] == 1
    # a box sitting on the recording threshold may appear on one side only
    edge = {"boxes": [[0, 0, 10, 10], [40, 40, 50, 50]], "scores": [0.9, 0.0515], "classes": [0, 0]}
    assert compare_records({"boxes": [[0, 0, 10, 10]], "scores": [0.9], "classes": [0]}, edge, p)["unmatched"] == 0
    empty = {"boxes": [], "scores": [], "classes": []}
    assert compare_records(empty, empty, p)["compared"] == 0


def test_thresholds_from_the_runs_evaluation(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    tables = {"per_class": [
        {"variant": "distill/onnxruntime/fp32", "class": "pedestrian", "op_threshold": 0.31},
        {"variant": "distill/onnxruntime/fp32", "class": "car", "op_threshold": 0.42},
        {"variant": "student/onnxruntime/fp32", "class": "car", "op_threshold": 0.9},
    ]}  # fmt: skip
    (run / "evaluate").mkdir()
    (run / "evaluate/tables.json").write_text(json.dumps(tables))
    rows = [{"model": "distill", "runtime": "onnxruntime", "precision": "fp32", "map50_95": 0.4},
            {"model": "student", "runtime": "onnxruntime", "precision": "fp32", "map50_95": 0.3}]  # fmt: skip
    (run / "evaluate/metrics_rows.json").write_text(json.dumps(rows))
    m = make_bundle(run, tmp_path / "b", BundleOptions(n_images=2, recipes=("none",)), log=lambda s: None)
    assert m["thresholds"] == {"source": "evaluate/tables.json (distill/onnxruntime/fp32)",
                               "per_class": {"pedestrian": 0.31, "car": 0.42}}  # fmt: skip
    assert m["validated"]["rows"] == rows[:1]
    assert [a["id"] for a in m["artifacts"]] == ["distill/onnxruntime/fp32"]  # --recipe filters quantized artifacts


def test_thresholds_from_metrics_rows_when_tables_have_none(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "evaluate").mkdir()
    rows = [
        {"model": "distill", "runtime": "onnxruntime", "precision": "int8", "recipe": "qdq", "thresholds": {"car": 0.9}},
        {"model": "distill", "runtime": "onnxruntime", "precision": "fp32",
         "per_class": {"pedestrian": {"op_threshold": 0.25}, "car": {"op_threshold": None}}},
    ]  # fmt: skip
    (run / "evaluate/metrics_rows.json").write_text(json.dumps({"rows": rows}))
    m = make_bundle(run, tmp_path / "b", BundleOptions(n_images=2), log=lambda s: None)
    assert m["thresholds"] == {
        "source": "evaluate/metrics_rows.json (distill/onnxruntime/fp32)",
        "per_class": {"pedestrian": 0.25},
    }
    assert len(m["validated"]["rows"]) == 2


def test_bad_inputs(run_dir, tmp_path, bundle):
    with pytest.raises(InputError, match="models exported in this run: distill"):
        make_bundle(run_dir, tmp_path / "x", BundleOptions(model="student"), log=lambda s: None)
    with pytest.raises(InputError, match="does not exist"):
        make_bundle(tmp_path / "nope", tmp_path / "x", log=lambda s: None)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file.txt").write_text("x")
    with pytest.raises(InputError, match="non-empty folder"):
        make_bundle(run_dir, tmp_path / "busy", log=lambda s: None)
    with pytest.raises(InputError, match="--force"):
        make_bundle(run_dir, bundle, log=lambda s: None)
    with pytest.raises(InputError, match="--images"):
        BundleOptions(n_images=0)
    assert not list(tmp_path.glob(".*partial"))  # failed bundles leave nothing behind


def test_tampered_run_artifact_is_refused(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    flip_byte(run / "quantize/distill/onnxruntime_qdq.onnx")
    with pytest.raises(IntegrityError, match="onnxruntime_qdq.onnx"):
        make_bundle(run, tmp_path / "b", log=lambda s: None)
    assert not (tmp_path / "b").exists()
