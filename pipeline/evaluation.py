"""From one variant's :func:`deploy.metrics.evaluate.evaluate` result to metrics rows and report tables.

Pure functions over dicts; the ``evaluate`` stage (:mod:`pipeline.stages.evaluate`) runs the models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deploy.metrics.evaluate import ROW_KEYS as ROW_METRICS  # the metrics every row carries

EXTRA_KEYS = ("op_threshold", "op_reached", "max_recall", "n_gt", "n_det")


def metric_row(key: Mapping[str, str], result: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """One ``metrics.json`` row (without latency) from an evaluate result."""
    overall = result["overall"]
    row = {**key, **{k: overall.get(k) for k in ROW_METRICS}, **{k: overall.get(k) for k in EXTRA_KEYS}}
    row.update(extra)
    return row


def _with_variant(vid: str, entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"variant": vid, **e} for e in entries]


def per_class_entries(vid: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, m in result["per_class"].items():
        entry = {
            "class": name,
            **{k: m.get(k) for k in ROW_METRICS},
            "n_gt": m.get("n_gt"),
            "op_threshold": m.get("op_threshold"),
        }
        out.append(entry)
    return _with_variant(vid, out)


def per_condition_entries(vid: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for attribute, values in (result["breakdown"].get("conditions") or {}).items():
        for value, m in values.items():
            out.append(
                {
                    "attribute": attribute,
                    "value": value,
                    "n_images": m.get("n_images"),
                    "n_gt": m.get("n_gt"),
                    "recall_at_op": m.get("recall_at_op"),
                    "fppi_at_op": m.get("fppi_at_op"),
                    "fa_per_hour": m.get("fa_per_hour"),
                }
            )
    return _with_variant(vid, out)


def distractor_entries(vid: str, result: Mapping[str, Any], n_images: int) -> list[dict[str, Any]]:
    dis = result["breakdown"].get("distractors")
    if not dis:
        return []
    out = []
    for kind, m in dis["per_kind"].items():
        out.append(
            {
                "kind": kind,
                "n_distractors": m["n_distractors"],
                "false_alarms": int(m["fp_at_op"]),
                "rate": m["fp_at_op"] / n_images if n_images else None,
            }
        )
    return _with_variant(vid, out)


def curve_set(result: Mapping[str, Any]) -> dict[str, Any]:
    """Pooled miss-rate/FPPI and precision/recall curves and the reliability diagram of one variant.

    ``reliability`` keeps every confidence bin, in order (bin ``i`` of ``n`` covers ``[i / n, (i + 1) / n)``, as
    in :func:`deploy.metrics.calibration.reliability`), empty bins included with count 0 and null confidence and
    precision: the bin of an entry is its index, which the reliability diagram needs to place its bars.
    """
    pooled = result["curves"]["pooled"]
    n_images = result["params"]["n_images"] or 1
    n_gt = sum(m.get("n_gt") or 0 for m in result["per_class"].values())
    fppi, miss = list(pooled.get("fppi", [])), list(pooled.get("miss_rate", []))
    recall = [1.0 - m for m in miss]
    precision = []
    for f, r in zip(fppi, recall, strict=True):
        tp, fp = r * n_gt, f * n_images
        precision.append(tp / (tp + fp) if tp + fp > 0 else 1.0)
    rel = result["calibration"]["overall"]
    return {
        "mr_fppi": {"fppi": fppi, "miss_rate": [min(max(m, 0.0), 1.0) for m in miss]},
        "pr": {"recall": [min(max(r, 0.0), 1.0) for r in recall], "precision": precision},
        "reliability": {
            "confidence": list(rel["mean_confidence"]),
            "precision": list(rel["precision"]),
            "count": list(rel["count"]),
        },
    }


def subset_coco(gt: Mapping[str, Any], n_images: int) -> dict[str, Any]:
    """The first ``n_images`` images (by id) of a COCO dict, with their annotations."""
    images = sorted(gt["images"], key=lambda im: im["id"])[:n_images]
    ids = {im["id"] for im in images}
    return {**gt, "images": images, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}


def subset_distractors(dis: Mapping[str, Any] | None, gt: Mapping[str, Any]) -> dict[str, Any] | None:
    if dis is None:
        return None
    ids = {im["id"] for im in gt["images"]}
    return {**dis, "distractors": [d for d in dis["distractors"] if d["image_id"] in ids]}


def paired_tests(ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(kind, a, b): the mAP50-95 differences a - b the report tests, among the variants ``ids`` present.

    * ``edgekd_vs_ultralytics``: edgekd's INT8 (head_float) against ultralytics' INT8 export of the same weights and
      calibration frames, per runtime;
    * ``int8_vs_fp32``: each head_float INT8 against the same model's ONNX Runtime FP32 (the drop targets);
    * ``distillation``: the distilled student against the directly trained one and against ultralytics-style
      distillation, at ONNX Runtime FP32 and INT8.
    """
    out = []
    for vid in ids:
        model, runtime, precision, recipe = vid.split("/")
        if precision == "int8" and recipe == "ultralytics":
            out.append(("edgekd_vs_ultralytics", f"{model}/{runtime}/int8/head_float", vid))
        elif precision == "int8" and recipe == "head_float":
            out.append(("int8_vs_fp32", vid, f"{model}/onnxruntime/fp32/float"))
    for variant in ("onnxruntime/fp32/float", "onnxruntime/int8/head_float"):
        out += [
            ("distillation", f"distill/{variant}", f"{other}/{variant}") for other in ("student", "distill_ultralytics")
        ]
    present = set(ids)
    return [t for t in out if t[1] in present and t[2] in present]


def paired_entries(
    gt: Mapping[str, Any], detections: Mapping[str, list], *, resamples: int, confidence: float, seed: int
) -> list[dict[str, Any]]:
    """One paired-bootstrap entry per :func:`paired_tests` pair of the ``detections`` (variant id -> COCO results)."""
    from pipeline.significance import image_matches, paired_bootstrap

    matches: dict[str, Any] = {}
    entries = []
    for kind, a, b in paired_tests(list(detections)):
        for vid in (a, b):
            if vid not in matches:
                matches[vid] = image_matches(gt, detections[vid])
        d = paired_bootstrap(matches[a], matches[b], resamples=resamples, confidence=confidence, seed=seed)
        if d is not None:
            entries.append({"kind": kind, "a": a, "b": b, **d.as_dict()})
    return entries
