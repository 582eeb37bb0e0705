"""The ``report`` stage under the real runner, fed by fake upstream stages writing the documented shapes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deploy.errors import StageError
from pipeline.cli import resolve_config
from pipeline.report.metrics_file import load_metrics
from pipeline.runner import Runner, Stage, StageContext
from pipeline.stages.report import STAGES as REPORT_STAGES

REPORT = REPORT_STAGES[0]
MODELS = {"teacher": 0.45, "student": 0.36}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def fake_evaluate(ctx: StageContext) -> None:
    rows, per_class, curves = [], [], {}
    for model, m in MODELS.items():
        for runtime, precision, recipe, drop in (
            ("onnxruntime", "fp32", "float", 0.0),
            ("onnxruntime", "int8", "head_float", 0.01),
        ):
            row = {
                "model": model,
                "runtime": runtime,
                "precision": precision,
                "recipe": recipe,
                "map50": m + 0.2 - drop,
                "map50_95": m - drop,
                "precision_at_op": 0.6,
                "recall_at_op": 0.9,
                "fppi_at_op": 0.3 + drop,
                "lamr": 0.4,
                "fa_per_hour": (0.3 + drop) * 108000,
                "dece": 0.05,
                "op_threshold": 0.3,
                "op_reached": True,
                "max_recall": 0.95,
                "n_gt": 40,
                "n_det": 300,
                "size_mb": 10.0,
                "executed_precision": precision,
            }
            vid = f"{model}/{runtime}/{precision}/{recipe}"
            rows.append(row)
            per_class.append({"variant": vid, "class": "pedestrian", "map50_95": m, "n_gt": 40, "op_threshold": 0.3})
            curves[vid] = {
                "mr_fppi": {"fppi": [0.01, 0.1, 1.0], "miss_rate": [0.8, 0.5, 0.2]},
                "pr": {"recall": [0.0, 0.5, 0.9], "precision": [1.0, 0.8, 0.4]},
                "reliability": {"confidence": [0.25, 0.75], "precision": [0.2, 0.7], "count": [10, 5]},
            }
    _write(ctx.out / "metrics_rows.json", {"rows": rows})
    _write(
        ctx.out / "tables.json",
        {
            "per_class": per_class,
            "per_condition": [],
            "robustness": [],
            "distractors": [],
            "curves": curves,
            "thresholds": {},
        },
    )


def fake_bench(ctx: StageContext) -> None:
    variants = {}
    for i, (model, precision, recipe) in enumerate(
        [
            ("teacher", "fp32", "edgekd"),
            ("teacher", "int8", "edgekd"),
            ("student", "fp32", "edgekd"),
            ("student", "int8", "edgekd"),
            ("student", "fp32", "ultralytics"),
        ]
    ):
        ms = (40.0 if model == "teacher" else 12.0) * (0.6 if precision == "int8" else 1.0) + i * 0.1
        vid = f"{model}/onnxruntime/{precision}/{recipe}"
        variants[vid] = {
            "id": vid,
            "model": model,
            "runtime": "onnxruntime",
            "backend": "onnxruntime",
            "precision": precision,
            "recipe": recipe,
            "size_mb": 9.5,
            "end_to_end": {"p50_ms": ms, "p90_ms": ms * 1.1, "p99_ms": ms * 1.3, "mean_ms": ms, "std_ms": 1.0, "n": 5},
            "samples_ms": {"inference": [ms] * 5, "end_to_end": [ms * f for f in (0.95, 1.0, 1.0, 1.05, 1.3)]},
        }
    _write(
        ctx.out / "bench.json",
        {
            "schema": "edgekd.bench/v1",
            "reference": "student/onnxruntime/fp32/float",
            "variants": variants,
            "notes": [],
        },
    )


def fake_quantize(ctx: StageContext) -> None:
    tensors = [
        {"tensor": f"t{i}", "kind": "activation", "sqnr_db": 30.0 - i, "xmodel_sqnr_db": None, "nodes": [f"n{i}"]}
        for i in range(60)
    ]
    fallback = {
        "budget_points": 0.5,
        "fp32_map50_95": 0.36,
        "within_budget": True,
        "chosen": {"k": 1, "layers": ["t59"], "nodes": ["n59"], "map50_95": 0.358, "drop_points": 0.2},
        "trials": [{"k": 0, "layers": [], "nodes": [], "map50_95": 0.35, "drop_points": 1.0}],
        "latency_ms": {"fp32": 10.0, "int8": 7.0, "fallback": 7.2},
    }
    _write(
        ctx.out / "sensitivity.json",
        {
            "schema": "edgekd.sensitivity/v1",
            "metric": "sqnr_db",
            "models": {
                "student": {
                    "runtime": "onnxruntime",
                    "recipe": "head_float",
                    "frames": 4,
                    "tensors": tensors,
                    "worst": tensors[:20],
                    "fallback": fallback,
                }
            },
        },
    )


def fake_train(ctx: StageContext) -> None:
    params = 43_600_000 if ctx.name == "teacher" else 11_100_000
    _write(
        ctx.out / "summary.json",
        {
            "model": ctx.name,
            "params": params,
            "gflops": 8.1,
            "train_seconds": 12.5,
            "final": {"map50": 0.6, "map50_95": MODELS[ctx.name]},
        },
    )


def stages() -> list[Stage]:
    return [
        Stage("teacher", fake_train),
        Stage("student", fake_train),
        Stage("quantize", fake_quantize),
        Stage("evaluate", fake_evaluate),
        Stage("bench", fake_bench),
        REPORT,
    ]


def config(tmp_path: Path, *extra: str):
    return resolve_config("smoke", [f"run.runs_dir={tmp_path / 'runs'}", *extra])


def test_report_stage_end_to_end(tmp_path):
    cfg = config(tmp_path)
    results = Runner(cfg, stages(), log=lambda m: None).run()
    assert [r.status for r in results] == ["ran"] * 6
    out = cfg.run_dir / "report"
    metrics = load_metrics(out / "metrics.json")
    ids = [f"{r['model']}/{r['runtime']}/{r['precision']}/{r['recipe']}" for r in metrics["rows"]]
    # bench's "edgekd" recipe joined onto evaluate's float/head_float rows; the peer is a latency-only row
    assert ids == [
        "teacher/onnxruntime/fp32/float",
        "teacher/onnxruntime/int8/head_float",
        "student/onnxruntime/fp32/float",
        "student/onnxruntime/fp32/ultralytics",
        "student/onnxruntime/int8/head_float",
    ]
    assert metrics["reference"] == "student/onnxruntime/fp32/float"
    rows = {i: r for i, r in zip(ids, metrics["rows"], strict=True)}
    assert rows["student/onnxruntime/fp32/float"]["latency_p50_ms"] == pytest.approx(12.2)
    assert rows["student/onnxruntime/fp32/ultralytics"]["map50_95"] is None
    assert rows["teacher/onnxruntime/fp32/float"]["params"] == 43_600_000  # from the teacher's summary.json
    assert rows["student/onnxruntime/int8/head_float"]["delta_map50_95_vs_fp32"] == pytest.approx(-0.01)
    assert len(metrics["latency"]["student/onnxruntime/fp32/float"]["samples_ms"]) == 5
    sens = metrics["sensitivity"]
    assert len(sens) == 50 and sens[0]["layer"] == "t59" and sens[0]["kept_float"] is True and sens[0]["rank"] == 1
    assert metrics["extra"]["fallback"]["student"]["chosen"]["k"] == 1
    assert [t["model"] for t in metrics["training"]] == ["teacher", "student"]
    assert metrics["provenance"]["config_hash"] == cfg.digest()
    html = (out / "report.html").read_text()
    assert "Fallback search" in html and html.count("data:image/png") >= 5
    assert "No baseline given" in (out / "summary.md").read_text()
    assert not (out / "junit.xml").exists()
    sidecar = json.loads((out / "provenance.json").read_text())
    assert "generated_at" in sidecar and "generated_at" not in (out / "metrics.json").read_text()
    for path in out.iterdir():  # the temporary stage folder never leaks into the outputs
        assert ".tmp" not in path.read_text()

    # unchanged inputs: cached, even though provenance.json (volatile) holds a time
    again = Runner(cfg, stages(), log=lambda m: None).run()
    assert again[-1].status == "cached"

    # against a baseline (this run itself): junit.xml, all within tolerance
    baseline = tmp_path / "baseline.json"
    baseline.write_text((out / "metrics.json").read_text())
    cfg2 = config(tmp_path, f"report.baseline={baseline}")
    assert Runner(cfg2, stages(), log=lambda m: None).run()[-1].status == "ran"
    suite = ET.parse(cfg2.run_dir / "report" / "junit.xml").getroot().find("testsuite")
    assert int(suite.get("failures")) == 0 and int(suite.get("tests")) > 20
    assert "✅ within tolerance" in (cfg2.run_dir / "report" / "summary.md").read_text()


def test_report_stage_without_upstream_still_reports(tmp_path):
    cfg = config(tmp_path)
    Runner(cfg, [REPORT], log=lambda m: None).run()
    metrics = load_metrics(cfg.run_dir / "report" / "metrics.json")
    assert metrics["rows"] == [] and any("no evaluate stage" in n for n in metrics["notes"])
    assert "No rows" in (cfg.run_dir / "report" / "report.html").read_text()


def test_malformed_upstream_output_names_the_file(tmp_path):
    def bad_evaluate(ctx: StageContext) -> None:
        _write(ctx.out / "metrics_rows.json", {"rowz": []})

    cfg = config(tmp_path)
    with pytest.raises(StageError, match=r"metrics_rows.json: got a dict with keys \['rowz'\], expected a list"):
        Runner(cfg, [Stage("evaluate", bad_evaluate), REPORT], log=lambda m: None).run()


def test_report_is_registered_last():
    from pipeline.stages import STAGE_MODULES

    assert STAGE_MODULES[-1] == "pipeline.stages.report"
    assert REPORT.name == "report" and {"evaluate", "bench", "quantize", "teacher"} <= set(REPORT.upstream)
