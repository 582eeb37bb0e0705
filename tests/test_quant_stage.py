"""The export + quantize stages through the Runner on a tiny run: artifacts, checksums, provenance, caching."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from _quant_fixtures import fake_upstream_stages, run_config


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory):
    from pipeline.runner import Runner
    from pipeline.stages.export import STAGES as EXPORT
    from pipeline.stages.quantize import STAGES as QUANTIZE

    runs = tmp_path_factory.mktemp("runs")
    cfg = run_config(
        runs,
        quantization={
            "runtimes": ["onnxruntime", "openvino", "tensorrt"],
            "naive": True,
            "fallback": True,
            "fallback_budget": 0.0,
            "advanced": {"fallback_max_layers": 1, "sensitivity_frames": 2, "latency_runs": 2, "holdout_max_images": 3},
        },
    )
    logs: list[str] = []
    runner = Runner(cfg, [*fake_upstream_stages(), *EXPORT, *QUANTIZE], log=logs.append)
    results = runner.run()
    return cfg, runner, results, logs


def test_every_artifact_is_listed_with_checksums(finished_run) -> None:
    _, runner, results, _ = finished_run
    assert [r.status for r in results] == ["ran"] * 5
    qdir = runner.run_dir / "quantize"
    listing = json.loads((qdir / "quantize.json").read_text())
    rows = listing["artifacts"]
    got = {(r["model"], r["runtime"], r["precision"], r["recipe"]) for r in rows}
    assert got >= {
        ("student", "onnxruntime", "int8", "head_float"),
        ("student", "onnxruntime", "int8", "naive"),
        ("student", "openvino", "fp32", "float"),
        ("student", "openvino", "fp16", "float"),
        ("student", "openvino", "int8", "head_float"),
        ("student", "tensorrt", "int8", "head_float"),
    }
    for row in rows:
        path = qdir / row["path"]
        assert path.is_file() and row["sha256"] == _sha(path)
        assert row["size"] == sum((qdir / f["path"]).stat().st_size for f in row["files"])
        assert (
            path.parent.name == "student"
            and path.stem == f"{row['runtime']}_{row['recipe'] if row['recipe'] != 'float' else row['precision']}"
        )


def test_sidecars_record_calibration_and_source(finished_run) -> None:
    _, runner, _, _ = finished_run
    qdir = runner.run_dir / "quantize" / "student"
    side = json.loads((qdir / "onnxruntime_head_float.json").read_text())
    manifest = runner.run_dir / side["calibration"]["manifest"]
    assert side["calibration"]["sha256"] == _sha(manifest) and side["calibration"]["n"] == 4
    assert side["source"] == {"path": "export/student.onnx", "sha256": _sha(runner.run_dir / "export" / "student.onnx")}
    assert side["method"] == "minmax" and side["excluded_nodes"] and "/model.22/dfl/conv/Conv" in side["excluded_nodes"]
    assert json.loads((qdir / "openvino_fp32.json").read_text())["calibration"] is None


def test_sensitivity_and_fallback_report(finished_run) -> None:
    _, runner, _, _ = finished_run
    sens = json.loads((runner.run_dir / "quantize" / "sensitivity.json").read_text())
    entry = sens["models"]["student"]
    assert sens["schema"] == "edgekd.sensitivity/v1" and entry["frames"] == 2
    assert entry["worst"] == entry["tensors"][: len(entry["worst"])]
    fb = entry["fallback"]
    assert fb["budget_points"] == 0.0 and fb["holdout_images"] == 3
    assert [t["k"] for t in fb["trials"]][0] == 0
    assert set(fb["latency_ms"]) >= {"fp32", "int8"} and all(v > 0 for v in fb["latency_ms"].values())
    rows = json.loads((runner.run_dir / "quantize" / "quantize.json").read_text())["artifacts"]
    has_artifact = any(r["recipe"] == "fallback" for r in rows)
    assert has_artifact == (fb["chosen"]["k"] > 0)


def test_rerun_is_cached(finished_run) -> None:
    from pipeline.runner import Runner
    from pipeline.stages.export import STAGES as EXPORT
    from pipeline.stages.quantize import STAGES as QUANTIZE

    cfg, _, _, _ = finished_run
    again = Runner(cfg, [*fake_upstream_stages(), *EXPORT, *QUANTIZE], log=lambda _m: None).run()
    assert [r.status for r in again] == ["cached"] * 5


def test_altered_export_is_refused(finished_run, tmp_path: Path) -> None:
    import shutil

    from deploy.errors import IntegrityError
    from pipeline.runner import StageContext
    from pipeline.stages.quantize import run_quantize

    cfg, runner, _, _ = finished_run
    fake = tmp_path / "run"
    for name in ("data", "calib", "export"):
        shutil.copytree(runner.run_dir / name, fake / name, symlinks=True)
    onnx_file = fake / "export" / "student.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    inputs = {n: fake / n for n in ("data", "calib", "export")}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError, match="student.onnx"):
        run_quantize(StageContext(cfg, "quantize", out, fake, inputs, log=lambda _m: None))
