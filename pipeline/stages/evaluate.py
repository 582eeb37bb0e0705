"""Stage ``evaluate``: every model x runtime x precision on the validation split, identically.

Each artifact of :func:`pipeline.artifacts.list_artifacts_in` runs through :class:`deploy.detector.Detector`
(same letterbox, decode and NMS for all) and :func:`deploy.metrics.evaluate.evaluate`. Outputs::

    metrics_rows.json   {"rows": [...]}  one row per variant (no latency; the report joins bench.json)
    tables.json         {"per_class", "per_condition", "robustness", "distractors", "curves", "thresholds", "paired"}
                        ("paired": mAP50-95 differences with paired-bootstrap intervals, :mod:`pipeline.significance`)
    variants/<id>.json  the full evaluate result of each variant (id with '/' -> '__')
    detections/<id>.json  its COCO detections (``edgekd metrics`` reproduces the numbers from them)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.runner import Stage, StageContext


def _options(cfg: Any) -> Any:
    from deploy.metrics.evaluate import EvalOptions

    ev = cfg.evaluation
    return EvalOptions(recall_target=ev.recall_target, fps=ev.fps, dece_bins=ev.dece_bins)


def _load_gt(data: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    gt = json.loads((data / "annotations" / "val_coco.json").read_text())
    dis_path = data / "annotations" / "val_distractors.json"
    return gt, json.loads(dis_path.read_text()) if dis_path.is_file() else None


def _write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _model_stats(export_dir: Path) -> dict[str, dict[str, Any]]:
    records = json.loads((export_dir / "export.json").read_text())["models"]
    return {r["model"]: {"params": r.get("params"), "gflops": r.get("gflops")} for r in records}


def _robustness(ctx: StageContext, det: Any, vid: str, gt: dict, dis: dict | None, opts: Any) -> list[dict[str, Any]]:
    from deploy.corruptions import CorruptionSpec
    from deploy.metrics.evaluate import evaluate, predict_coco
    from pipeline.evaluation import ROW_METRICS, subset_coco, subset_distractors

    ev = ctx.cfg.evaluation
    sub = subset_coco(gt, ev.robustness_images)
    sub_dis = subset_distractors(dis, sub)
    data = ctx.upstream("data")
    clean = evaluate(sub, predict_coco(det, sub, data), opts, sub_dis)["overall"]
    out = []
    for kind in ev.corruptions:
        spec = CorruptionSpec(kind, ev.robustness_severity, ctx.cfg.run.seed)
        m = evaluate(sub, predict_coco(det, sub, data, corruption=spec), opts, sub_dis)["overall"]
        delta = None if m["map50_95"] is None or clean["map50_95"] is None else m["map50_95"] - clean["map50_95"]
        out.append(
            {
                "variant": vid,
                "corruption": kind,
                "severity": ev.robustness_severity,
                **{k: m.get(k) for k in ROW_METRICS},
                "n_images": len(sub["images"]),
                "delta_map50_95_vs_clean": delta,
            }
        )
    return out


def run_evaluate(ctx: StageContext) -> None:
    from deploy.detector import Detector
    from deploy.latency import file_size_mb
    from deploy.metrics.evaluate import evaluate, predict_coco
    from pipeline import evaluation as E
    from pipeline.artifacts import list_artifacts_in
    from pipeline.report.metrics_file import add_deltas

    cfg, ev = ctx.cfg, ctx.cfg.evaluation
    data = ctx.upstream("data")
    gt, dis = _load_gt(data)
    opts = _options(cfg)
    stats = _model_stats(ctx.upstream("export"))
    rows: list[dict[str, Any]] = []
    tables: dict[str, Any] = {
        "per_class": [],
        "per_condition": [],
        "robustness": [],
        "distractors": [],
        "curves": {},
        "thresholds": {},
        "paired": [],
    }
    detections: dict[str, list] = {}
    artifacts = list_artifacts_in(ctx.inputs)  # enabled upstream stages only: a disabled one's old folder is not read
    for i, art in enumerate(ctx.track(artifacts, "[evaluate] variants", len(artifacts)), 1):
        det = Detector(
            art.path, conf=ev.conf_threshold, iou=ev.nms_iou, max_det=ev.max_det, threads=cfg.benchmark.threads
        )
        dets = predict_coco(det, gt, data)
        result = evaluate(gt, dets, opts, dis, sources=(str(data / "annotations/val_coco.json"), art.id, "distractors"))
        safe = art.id.replace("/", "__")
        _write(ctx.out / "variants" / f"{safe}.json", result)
        _write(ctx.out / "detections" / f"{safe}.json", dets)
        detections[art.id] = dets
        extra = {
            **stats.get(art.model, {}),
            "size_mb": file_size_mb(art.path),
            "executed_precision": det.executed_precision,
        }
        rows.append(E.metric_row(art.row_key(), result, extra))
        tables["per_class"] += E.per_class_entries(art.id, result)
        tables["per_condition"] += E.per_condition_entries(art.id, result)
        tables["distractors"] += E.distractor_entries(art.id, result, len(gt["images"]))
        tables["curves"][art.id] = E.curve_set(result)
        tables["thresholds"][art.id] = result["thresholds"]
        if ev.robustness_images and art.recipe in ev.robustness_recipes and art.runtime == "onnxruntime":
            tables["robustness"] += _robustness(ctx, det, art.id, gt, dis, opts)
        ctx.log(
            f"[evaluate] {i}/{len(artifacts)} {art.id}: mAP50-95 {_fmt(rows[-1]['map50_95'])} "
            f"FPPI@op {_fmt(rows[-1]['fppi_at_op'])} LAMR {_fmt(rows[-1]['lamr'])}"
        )
    add_deltas(rows)
    if ev.bootstrap_resamples:
        tables["paired"] = E.paired_entries(
            gt, detections, resamples=ev.bootstrap_resamples, confidence=ev.bootstrap_confidence, seed=cfg.run.seed
        )
        from pipeline.significance import describe

        for p in tables["paired"]:
            ctx.log(f"[evaluate] mAP50-95 {p['a']} - {p['b']}: {describe(p)}")
    _write(ctx.out / "metrics_rows.json", {"rows": rows})
    _write(ctx.out / "tables.json", tables)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


STAGES = [
    Stage(
        "evaluate",
        run_evaluate,
        version="3",
        params=("evaluation", "benchmark.threads", "run.seed"),
        upstream=("data", "export", "quantize", "peers"),
        tools=("onnxruntime", "openvino", "faster-coco-eval", "pycocotools", "opencv-python-headless", "numpy"),
        description="false alarms, accuracy, calibration and robustness of every variant",
    )
]
