"""The ``bench`` stage on a small run folder: what it times, the ids, the reference, skips with notes,
the report reading its output, and the defensive reading of export/quantize/peers JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _models import IMGSZ, real_or_synthetic_frames, tiny_models

from deploy.errors import IntegrityError, StageError
from deploy.hwfloor import measure_matmul
from pipeline.config import build_config
from pipeline.runner import StageContext
from pipeline.stages import bench as bench_stage

EXPECTED = {
    "student/onnxruntime/fp32/float",
    "student/openvino/fp32/float",
    "student/onnxruntime/int8/head_float",
    "student/onnxruntime/int8/naive",
    "student/onnxruntime/fp32/ultralytics",
}


def _quantize(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from deploy.preprocess import preprocess

    frames = [preprocess(f, IMGSZ)[0] for f in real_or_synthetic_frames(2)[0]]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": t} for t in frames])

        def get_next(self):
            return next(self.items, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)  # fmt: skip


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    models = tiny_models(tmp_path_factory.getbasetemp() / "bench_tiny_models")
    run = tmp_path_factory.mktemp("run")
    (run / "export").mkdir()
    shutil.copyfile(models["onnx"], run / "export/student.onnx")
    _write(run / "export/export.json", {"models": [{"model": "student", "onnx": {"path": "student.onnx"}}]})
    q = run / "quantize"
    _quantize(run / "export/student.onnx", q / "student/onnxruntime_head_float.onnx")
    shutil.copyfile(q / "student/onnxruntime_head_float.onnx", q / "student/onnxruntime_naive.onnx")
    shutil.copyfile(q / "student/onnxruntime_head_float.onnx", q / "student/tensorrt_head_float.onnx")
    arts = [
        {
            "model": "student",
            "runtime": rt,
            "precision": "int8",
            "recipe": recipe,
            "path": f"student/{rt}_{recipe}.onnx",
        }
        for rt, recipe in (("onnxruntime", "head_float"), ("onnxruntime", "naive"), ("tensorrt", "head_float"))
    ]
    _write(q / "quantize.json", {"artifacts": arts})
    peer = run / "peers/student/ultralytics_onnx_fp32/tiny.onnx"
    peer.parent.mkdir(parents=True)
    shutil.copyfile(models["onnx_ultralytics"], peer)
    _write(run / "peers/peers.json", {"artifacts": [{"model": "student", "variant": "ultralytics_onnx_fp32",
           "runtime": "onnxruntime", "precision": "fp32", "path": "student/ultralytics_onnx_fp32/tiny.onnx"}]})  # fmt: skip
    return run


@pytest.fixture
def fast_floor(monkeypatch):
    monkeypatch.setattr(
        "pipeline.bench.hardware_floor",
        lambda threads, seconds=2.0: {
            p: measure_matmul(p, size=256, threads=1, seconds=0.05) for p in ("int8", "fp32")
        },
    )


def _ctx(run: Path, out: Path, stages=("export", "quantize", "peers")) -> StageContext:
    cfg = build_config({"run": {"name": "t"}, "benchmark": {"runs": 3, "warmup": 1, "batch": 2, "threads": 1}})
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(cfg, "bench", out, run, {s: run / s for s in stages}, log=lambda m: None)


def test_stage_times_every_variant_interleaved(run_dir, tmp_path, fast_floor):
    bench_stage._bench(_ctx(run_dir, tmp_path / "out"))
    data = json.loads((tmp_path / "out/bench.json").read_text())
    assert set(data["variants"]) == EXPECTED
    assert data["reference"] == "student/onnxruntime/fp32/float"
    assert set(data["floor"]) == {"int8", "fp32"}
    notes = " ".join(data["notes"])
    assert "student/tensorrt/int8/head_float" in notes  # TensorRT: a Q/DQ ONNX needs an engine built on the device
    for vid, r in data["variants"].items():
        model, runtime, precision, recipe = vid.split("/")
        assert (r["model"], r["runtime"], r["precision"], r["recipe"]) == (model, runtime, precision, recipe)
        assert r["end_to_end"]["n"] == 3 and r["floor"]["macs_from"] == "student.onnx"
        assert not Path(r["artifact"]).is_absolute() and r["artifact"].split("/")[0] in ("export", "quantize", "peers")
        if precision == "int8":
            assert r["executed_precision"] in ("int8", "mixed") and r["floor"]["rate_precision"] == "int8"
        else:
            assert r["executed_precision"] == "fp32" and r["floor"]["rate_precision"] == "fp32"
    assert str(tmp_path) not in (tmp_path / "out/bench.json").read_text()  # no absolute stage paths


def test_report_reads_bench_json(run_dir, tmp_path, fast_floor):
    from pipeline.report.collect import Collected, read_bench

    bench_stage._bench(_ctx(run_dir, tmp_path / "bench"))
    got = Collected()
    read_bench(tmp_path / "bench", got)
    assert got.reference == "student/onnxruntime/fp32/float"
    ids = {"/".join(str(r[k]) for k in ("model", "runtime", "precision", "recipe")) for r in got.rows}
    assert ids == EXPECTED
    assert all(r["latency_p50_ms"] > 0 and r["executed_precision"] for r in got.rows)


def test_stage_without_export_writes_an_empty_result(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    bench_stage._bench(_ctx(run, tmp_path / "out", stages=()))
    data = json.loads((tmp_path / "out/bench.json").read_text())
    assert data["variants"] == {} and any("nothing to time" in n for n in data["notes"])


def test_stage_with_an_empty_export_fails_loudly(tmp_path):
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    with pytest.raises(StageError, match="no model file"):
        bench_stage._bench(_ctx(run, tmp_path / "out", stages=("export",)))


def test_corrupt_or_misshapen_listings_name_the_file(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export/student.onnx").write_bytes(b"x")
    _write(tmp_path / "export/export.json", {"models": [{"model": "student", "onnx": {"path": "student.onnx"}}]})
    (tmp_path / "quantize").mkdir()
    folders = {"export": tmp_path / "export", "quantize": tmp_path / "quantize"}
    (tmp_path / "quantize/quantize.json").write_text("{not json")
    with pytest.raises(StageError, match="quantize.json: unreadable"):
        bench_stage.collect(folders)
    _write(tmp_path / "quantize/quantize.json", [{"model": "student", "path": "m.onnx"}])  # a list, not a listing
    with pytest.raises(StageError, match="quantize.json: expected {'artifacts': \\[records\\]}"):
        bench_stage.collect(folders)


def test_a_listed_but_missing_file_is_an_integrity_error(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    listing = json.loads((run / "quantize/quantize.json").read_text())
    listing["artifacts"].append({"model": "student", "runtime": "onnxruntime", "precision": "int8",
                                 "recipe": "fallback", "path": "student/onnxruntime_fallback.onnx"})  # fmt: skip
    _write(run / "quantize/quantize.json", listing)
    with pytest.raises(IntegrityError, match="onnxruntime_fallback.onnx: listed artifact is missing"):
        bench_stage.collect({s: run / s for s in ("export", "quantize", "peers")})


def test_openvino_ir_from_quantize_replaces_the_onnx_row(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export/student.onnx").write_bytes(b"x")
    _write(tmp_path / "export/export.json", {"models": [{"model": "student", "onnx": {"path": "student.onnx"}}]})
    q = tmp_path / "quantize"
    (q / "student").mkdir(parents=True)
    (q / "student/openvino_fp32.xml").write_bytes(b"x")
    _write(q / "quantize.json", {"artifacts": [{"model": "student", "runtime": "openvino", "precision": "fp32",
                                                "recipe": "float", "path": "student/openvino_fp32.xml"}]})  # fmt: skip
    arts, _ = bench_stage.collect({"export": tmp_path / "export", "quantize": q})
    ov = [a for a in arts if a.runtime == "openvino"]
    assert [(a.id, a.rel) for a in ov] == [("student/openvino/fp32/float", "quantize/student/openvino_fp32.xml")]


def test_stage_registered_after_peers_and_before_report():
    from pipeline.stages import STAGE_MODULES

    mods = list(STAGE_MODULES)
    assert (
        mods.index("pipeline.stages.peers") < mods.index("pipeline.stages.bench") < mods.index("pipeline.stages.report")
    )
    (stage,) = bench_stage.STAGES
    assert stage.upstream == ("export", "quantize", "peers") and "benchmark.runs" in stage.params
