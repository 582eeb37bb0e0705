"""A deploy bundle's accuracy on its bundled evaluation set, per variant (for ``edgekd device bench``).

At the variant's own operating point (:func:`deploy.metrics.evaluate.evaluate`) and at the bundle's fixed per-class
thresholds (:func:`at_thresholds`: what a deployed system would use). Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy.bundle import read_json
from deploy.metrics.evaluate import ROW_KEYS
from deploy.metrics.fppi import fa_per_hour


def at_thresholds(
    gt_coco: dict[str, Any], results: list[dict[str, Any]], thresholds: dict[str, Any], fps: float
) -> dict[str, Any]:
    """Recall, precision, FPPI and false alarms per hour with the bundle's fixed per-class thresholds.

    Mean over classes with ground truth and a threshold (Caltech matching of :mod:`deploy.metrics.matching`).
    """
    from deploy.metrics.cocoio import parse_detections, parse_ground_truth
    from deploy.metrics.matching import FP, TP, match_dataset

    gt = parse_ground_truth(gt_coco, "bundled ground truth")
    matches = match_dataset(gt, parse_detections(results, gt, "detections"))
    recall, precision, fppi = [], [], []
    for cid, m in matches.items():
        thr = thresholds.get(gt.categories[cid])
        if m.n_pos == 0 or thr is None:
            continue
        keep = m.score >= thr
        tp, fp = int(((m.status == TP) & keep).sum()), int(((m.status == FP) & keep).sum())
        recall.append(tp / m.n_pos)
        fppi.append(fp / max(m.n_images, 1))
        if tp + fp:
            precision.append(tp / (tp + fp))

    def mean(v: list[float]) -> float | None:
        return float(np.mean(v)) if v else None

    f = mean(fppi)
    return {
        "recall_at_bundle_op": mean(recall),
        "precision_at_bundle_op": mean(precision),
        "fppi_at_bundle_op": f,
        "fa_per_hour_at_bundle_op": fa_per_hour(f, fps),
    }


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is None or isinstance(v, (bool, int, float, str))}


def evaluate_variant(
    det: Any, vid: str, root: Path, manifest: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(row metrics, tables {per_class, per_condition}, COCO results) of one detector on the bundled set."""
    from deploy.metrics.evaluate import EvalOptions, evaluate, predict_coco

    gt = read_json(root / manifest["eval"]["annotations"], "bundled ground truth")
    dis_rel = manifest["eval"].get("distractors")
    distractors = read_json(root / dis_rel, "bundled distractors") if dis_rel else None
    validated = manifest.get("validated", {})
    fps = float(validated.get("fps", 30.0))
    options = EvalOptions(recall_target=float(validated.get("recall_target", 0.9)), fps=fps)
    results = predict_coco(det, gt, root / "eval")
    metrics = evaluate(gt, results, options, distractors)
    row = {k: metrics["overall"].get(k) for k in ROW_KEYS}
    row["op_reached"] = metrics["overall"].get("op_reached")
    row.update(at_thresholds(gt, results, manifest.get("thresholds", {}).get("per_class", {}), fps))
    per_class = [{"variant": vid, "class": name, **_scalars(v)} for name, v in metrics["per_class"].items()]
    per_condition = [
        {"variant": vid, "attribute": attr, "value": str(value), **_scalars(v)}
        for attr, values in (metrics["breakdown"].get("conditions") or {}).items()
        for value, v in values.items()
    ]
    return row, {"per_class": per_class, "per_condition": per_condition}, results
