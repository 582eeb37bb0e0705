"""`edgekd device bench` on a bundle: the ONNX Runtime CPU path end to end without torch, valid metrics.json rows,
TensorRT reported absent, power/energy through a stand-in tegrastats, engine planning and building."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from _fake_run import CONFIG_DIGEST, cached_fake_run

from deploy.bundle_eval import at_thresholds
from deploy.bundle_make import BundleOptions, make_bundle
from deploy.device_bench import (
    DeviceBenchOptions,
    Plan,
    build_engines,
    plan_variants,
    run_device_bench,
)
from deploy.errors import InputError, IntegrityError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "tegrastats"
NO_TORCH = """
import importlib.abc, sys
BLOCKED = {"torch", "torchvision", "ultralytics"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the deploy side must run without torch")
sys.meta_path.insert(0, Block())
from pipeline.cli import main
rc = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
if loaded:
    sys.exit(f"imported {loaded}")
sys.exit(rc)
"""


@pytest.fixture(scope="module")
def bundle(request, tmp_path_factory) -> Path:
    run = cached_fake_run(request.config, tmp_path_factory)
    out = tmp_path_factory.mktemp("dev") / "bundle"
    make_bundle(run, out, BundleOptions(n_images=4), log=lambda s: None)
    return out


def test_cli_end_to_end_without_torch(bundle, tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "COLUMNS": "160"}
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "device", "bench", "--bundle", str(bundle), "--out", str(out),
         "--runs", "4", "--warmup", "1", "--power", "auto"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TensorRT is absent" in done.stderr and "power not measured" in done.stderr
    from pipeline.report.metrics_file import load_metrics, variant_id

    metrics = load_metrics(out / "metrics.json")  # schema-valid
    ids = [variant_id(r) for r in metrics["rows"]]
    assert ids == ["distill/onnxruntime/fp32", "distill/onnxruntime/int8/qdq"]
    assert metrics["reference"] == "distill/onnxruntime/fp32"
    assert metrics["provenance"]["config_hash"] == CONFIG_DIGEST and metrics["provenance"]["run"] == "fake"
    for row in metrics["rows"]:
        assert row["latency_p50_ms"] > 0 and row["latency_p99_ms"] >= row["latency_p50_ms"]
        assert row["map50_95"] is not None and row["fppi_at_op"] is not None and row["lamr"] is not None
        assert row["energy_mj_per_frame"] is None and row["power_w"] is None
        assert row["providers"] == "CPUExecutionProvider" and row["params"] > 0
    assert {r["executed_precision"] for r in metrics["rows"]} == {"fp32", "int8"}
    assert any("TensorRT is absent" in n for n in metrics["notes"])
    assert any(n.startswith("power not measured") for n in metrics["notes"])
    assert {e["variant"] for e in metrics["per_class"]} == set(ids)
    assert {e["attribute"] for e in metrics["per_condition"]} >= {"timeofday"}
    device = json.loads((out / "device.json").read_text())["device"]
    assert device["tensorrt"] is None and device["power"]["source"] is None
    assert (out / "detections" / "distill_onnxruntime_fp32.json").is_file()
    compare = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "compare", str(out / "metrics.json"), str(out / "metrics.json")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stdout + compare.stderr


def _fake_tegrastats(tmp_path: Path, fixture: str) -> Path:
    lines = [ln for ln in (FIXTURES / f"{fixture}.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    script = tmp_path / "bin" / "tegrastats"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\nimport sys, time\nlines = {lines!r}\n"
        "for i in range(100000):\n    print(lines[i % len(lines)], flush=True)\n    time.sleep(int(sys.argv[2]) / 1000)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script.parent


def test_power_and_energy_from_tegrastats(bundle, tmp_path, monkeypatch):
    """A stand-in tegrastats prints recorded AGX Orin lines: energy per frame = integrated power / frames."""
    monkeypatch.setenv("PATH", f"{_fake_tegrastats(tmp_path, 'agx_orin')}{os.pathsep}{os.environ['PATH']}")
    warnings: list[str] = []
    options = DeviceBenchOptions(
        runs=3, warmup=0, min_seconds=0.4, runtimes=("onnxruntime",), power="tegrastats",
        power_interval_ms=20, idle_seconds=0.2, temp_limit_c=75.0,
    )  # fmt: skip
    result = run_device_bench(bundle, tmp_path / "out", options, log=lambda s: None, warn=warnings.append)
    totals_w = [t / 1000 for t in (23521, 8968, 7798, 9110)]  # board totals of the four recorded lines
    for row in result.rows:
        assert min(totals_w) <= row["power_w"] <= max(totals_w)
        frames = result.details[
            f"{row['model']}/{row['runtime']}/{row['precision']}" + (f"/{row['recipe']}" if row["recipe"] else "")
        ]["steps"]["end_to_end"]["n"]
        assert frames >= 3
        assert row["energy_mj_per_frame"] > 0
    power = result.device["power"]
    assert power["source"].startswith("tegrastats") and power["total_rail"] == "sum of rails"
    assert power["samples"] > 5 and min(totals_w) <= power["idle_w"] <= max(totals_w)
    assert power["throttle"]["throttled"] and power["throttle"]["max_temp_c"] == pytest.approx(77.281)
    assert any("thermal throttling" in w for w in warnings)
    assert any("thermal throttling" in n for n in result.notes)


def test_plan_variants_with_and_without_tensorrt(bundle):
    manifest = json.loads((bundle / "bundle.json").read_text())
    with_trt, notes = plan_variants(manifest, ("tensorrt", "onnxruntime"), {"tensorrt": True, "onnxruntime": True})
    assert [(p.id, p.build) for p in with_trt] == [
        ("distill/tensorrt/fp16", "fp16"),
        ("distill/onnxruntime/fp32", None),
        ("distill/onnxruntime/int8/qdq", None),
        ("distill/tensorrt/int8/qdq", "int8"),
    ]
    assert notes == []
    plain, _ = plan_variants(manifest, ("tensorrt", "onnxruntime"), {"tensorrt": False, "onnxruntime": True})
    assert [p.id for p in plain] == ["distill/onnxruntime/fp32", "distill/onnxruntime/int8/qdq"]
    trt_only, _ = plan_variants(manifest, ("tensorrt",), {"tensorrt": True})
    assert [p.build for p in trt_only] == ["fp16", "int8"]
    no_qdq = {**manifest, "artifacts": manifest["artifacts"][:1]}
    _, notes = plan_variants(no_qdq, ("tensorrt",), {"tensorrt": True})
    assert "no TensorRT Q/DQ ONNX" in notes[0]


def test_build_engines_with_a_stand_in_builder(bundle, tmp_path):
    manifest = json.loads((bundle / "bundle.json").read_text())
    plans, _ = plan_variants(manifest, ("tensorrt", "onnxruntime"), {"tensorrt": True, "onnxruntime": True})
    calls = []

    def builder(onnx_path, out_path, *, precision, timing_cache, workspace_mb):
        calls.append((Path(onnx_path).name, precision, Path(timing_cache).name, workspace_mb))
        Path(out_path).write_bytes(b"engine:" + precision.encode())

    built, records = build_engines(plans, bundle, tmp_path, manifest, builder, 512, log=lambda s: None)
    assert calls == [
        ("distill_fp32.onnx", "fp16", "timing.cache", 512),
        ("distill_tensorrt_int8_qdq.onnx", "int8", "timing.cache", 512),
    ]
    engines = [p for p in built if p.runtime == "tensorrt"]
    assert all(Path(p.path).is_file() and p.build is None for p in engines)
    sidecar = json.loads((tmp_path / "engines" / "distill_tensorrt_int8_qdq.edgekd.json").read_text())
    assert (
        sidecar["precision"] == "int8"
        and sidecar["names"] == ["pedestrian", "cyclist", "car"]
        and sidecar["imgsz"] == [64, 64]
    )
    assert [r["variant"] for r in records] == ["distill/tensorrt/fp16", "distill/tensorrt/int8/qdq"]
    assert [p.id for p in built] == [p.id for p in plans]


def test_at_thresholds_by_hand():
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
                   {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 40], "area": 800, "iscrowd": 0},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 40], "area": 800, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "car"}],
    }  # fmt: skip
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 40], "score": 0.9},  # TP
        {"image_id": 1, "category_id": 1, "bbox": [60, 0, 20, 40], "score": 0.7},  # FP kept
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 40], "score": 0.4},  # TP below threshold
        {"image_id": 2, "category_id": 1, "bbox": [0, 60, 20, 30], "score": 0.2},  # FP below threshold
    ]
    r = at_thresholds(gt, dets, {"pedestrian": 0.5, "car": 0.5}, fps=10.0)
    assert r["recall_at_bundle_op"] == pytest.approx(0.5)
    assert r["precision_at_bundle_op"] == pytest.approx(0.5)
    assert r["fppi_at_bundle_op"] == pytest.approx(0.5)  # 1 FP over 2 images
    assert r["fa_per_hour_at_bundle_op"] == pytest.approx(0.5 * 10 * 3600)
    low = at_thresholds(gt, dets, {"pedestrian": 0.1}, fps=10.0)
    assert low["recall_at_bundle_op"] == 1.0 and low["fppi_at_bundle_op"] == 1.0
    none = at_thresholds(gt, dets, {"pedestrian": None}, fps=10.0)
    assert none["recall_at_bundle_op"] is None and none["fa_per_hour_at_bundle_op"] is None


def test_bad_options_and_a_tampered_bundle(bundle, tmp_path):
    with pytest.raises(InputError, match="--runs"):
        DeviceBenchOptions(runs=0)
    with pytest.raises(InputError, match="--runtimes"):
        DeviceBenchOptions(runtimes=("tflite",))
    with pytest.raises(InputError, match="--power"):
        DeviceBenchOptions(power="rapl")
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    model = copy / "models" / "distill_fp32.onnx"
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="distill_fp32.onnx"):
        run_device_bench(copy, tmp_path / "out", DeviceBenchOptions(runs=1), log=lambda s: None, warn=lambda s: None)
    with pytest.raises(InputError, match="nothing to benchmark"):
        run_device_bench(
            bundle,
            tmp_path / "out2",
            DeviceBenchOptions(runtimes=("openvino",)),
            log=lambda s: None,
            warn=lambda s: None,
        )
    assert Plan("m", "tensorrt", "int8", "qdq", "x").id == "m/tensorrt/int8/qdq"
