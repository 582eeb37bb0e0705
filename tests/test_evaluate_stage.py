"""The evaluate stage reads the artifacts of its enabled upstream stages only (``ctx.inputs``), never a folder left in
the run directory by a stage that is now disabled."""

from __future__ import annotations

import hashlib
import json
import shutil

from _fake_run import cached_fake_run
from _quant_fixtures import run_config

from pipeline.runner import StageContext
from pipeline.stages.evaluate import run_evaluate


def _ids(rows_file) -> set[str]:
    rows = json.loads(rows_file.read_text())["rows"]
    return {"/".join([r["model"], r["runtime"], r["precision"], r["recipe"]]) for r in rows}


def test_disabled_peers_folder_is_not_evaluated(request, tmp_path_factory, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cached_fake_run(request.config, tmp_path_factory), run)
    onnx = run / "export" / "distill.onnx"
    sha = hashlib.sha256(onnx.read_bytes()).hexdigest()
    (run / "export" / "export.json").write_text(
        json.dumps({"models": [{"model": "distill", "onnx": {"path": "distill.onnx", "sha256": sha}}]})
    )
    stale = run / "peers" / "distill" / "ultralytics_onnx" / "weights.onnx"  # from a run with peers enabled
    stale.parent.mkdir(parents=True)
    shutil.copyfile(onnx, stale)
    (run / "peers" / "peers.json").write_text(json.dumps({"artifacts": [
        {"model": "distill", "runtime": "onnxruntime", "precision": "fp32", "path": "distill/ultralytics_onnx/weights.onnx"}
    ]}))  # fmt: skip
    cfg = run_config(tmp_path, evaluation={"bootstrap_resamples": 0, "robustness_images": 0})
    enabled = {stage: run / stage for stage in ("data", "export", "quantize")}

    run_evaluate(StageContext(cfg, "evaluate", tmp_path / "without", run, enabled))
    assert _ids(tmp_path / "without" / "metrics_rows.json") == {
        "distill/onnxruntime/fp32/float", "distill/onnxruntime/int8/qdq"
    }  # fmt: skip
    run_evaluate(StageContext(cfg, "evaluate", tmp_path / "with", run, {**enabled, "peers": run / "peers"}))
    assert "distill/onnxruntime/fp32/ultralytics" in _ids(tmp_path / "with" / "metrics_rows.json")
