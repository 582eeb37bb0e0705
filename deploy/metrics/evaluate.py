"""One entry point: COCO ground truth + COCO detections + options -> the metrics dict (overall + per class).

Output (JSON-able; None where a value is undefined)::

    {"schema": "edgekd.eval/v1", "params": {...},
     "overall": {map50, map50_95, precision_at_op, recall_at_op, fppi_at_op, lamr, fa_per_hour, dece,
                 op_threshold, op_reached, max_recall, n_gt, n_ignore, n_det, tp_at_op, fp_at_op},
     "per_class": {name: {same keys + category_id}},
     "thresholds": {name: operating-point score threshold},
     "curves": {"reference_fppi": [...], "per_class": {name: {fppi, miss_rate, threshold, miss_rate_at_ref}},
                "pooled": {..., lamr, op}},
     "calibration": {"overall": reliability, "per_class": {name: reliability}},
     "breakdown": {"height": ..., "conditions": ..., "distractors": ... | None}}

Definitions: per class, see :mod:`deploy.metrics.fppi` (operating point, FPPI, LAMR, false alarms per hour),
:mod:`deploy.metrics.calibration` (D-ECE) and :mod:`deploy.metrics.coco` (mAP). ``overall``:

- ``map50``, ``map50_95``: COCO's mean over classes with ground truth (pycocotools' ``stats[1]``, ``stats[0]``);
- ``precision_at_op``, ``recall_at_op``, ``fppi_at_op``, ``max_recall``, ``lamr``: the mean over the classes that
  have at least one non-ignore ground-truth box, each class at its own operating point;
  ``fa_per_hour = fppi_at_op * fps * 3600``; ``op_reached`` is True when every such class reached the target;
  ``op_threshold`` is None (thresholds are per class);
- ``dece``: D-ECE of all classes' detections pooled;
- the all-class pooled curve (every class's detections under one common threshold) is in ``curves.pooled``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import InputError
from deploy.metrics import breakdown as bd
from deploy.metrics.calibration import reliability
from deploy.metrics.coco import coco_map
from deploy.metrics.cocoio import parse_detections, parse_distractors, parse_ground_truth
from deploy.metrics.fppi import (
    REFERENCE_FPPI,
    build_curve,
    fa_per_hour,
    lamr,
    miss_rate_curve,
    operating_point,
    recall_at_fppi,
)
from deploy.metrics.matching import IGNORED, TP, ClassMatches, match_dataset

SCHEMA = "edgekd.eval/v1"
ROW_KEYS = ("map50", "map50_95", "precision_at_op", "recall_at_op", "fppi_at_op", "lamr", "fa_per_hour", "dece")


@dataclass(frozen=True)
class EvalOptions:
    """Evaluation settings (defaults follow ``evaluation`` in the config)."""

    recall_target: float = 0.9
    fps: float = 30.0
    dece_bins: int = 10
    iou_threshold: float = 0.5
    height_bins: tuple[float, ...] = bd.DEFAULT_HEIGHT_BINS
    curve_points: int = 200

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.recall_target <= 1:
            problems.append(f"recall target: got {self.recall_target!r}, expected a number in (0, 1], e.g. 0.9")
        if not self.fps > 0:
            problems.append(f"fps: got {self.fps!r}, expected a positive frame rate, e.g. 30")
        if isinstance(self.dece_bins, bool) or not isinstance(self.dece_bins, int) or self.dece_bins < 1:
            problems.append(f"D-ECE bins: got {self.dece_bins!r}, expected a positive integer, e.g. 10")
        if not 0 < self.iou_threshold < 1:
            problems.append(f"IoU threshold: got {self.iou_threshold!r}, expected a number in (0, 1), e.g. 0.5")
        if list(self.height_bins) != sorted(set(self.height_bins)) or any(b <= 0 for b in self.height_bins):
            problems.append(f"height bins: got {list(self.height_bins)!r}, expected increasing positive pixel heights")
        if problems:
            raise InputError("; ".join(problems))


def evaluate(
    gt_coco: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    options: EvalOptions = EvalOptions(),
    distractors: Mapping[str, Any] | None = None,
    *,
    sources: tuple[str, str, str] = ("ground truth", "detections", "distractors"),
) -> dict[str, Any]:
    """Every metric of ``detections`` (COCO results) against ``gt_coco`` (a COCO dict); see the module docstring.

    ``sources`` names the three inputs in error messages (give file paths). Bad input raises InputError.
    """
    gt = parse_ground_truth(gt_coco, sources[0])
    dets = parse_detections(detections, gt, sources[1])
    dis = parse_distractors(distractors, gt, sources[2]) if distractors is not None else None
    matches = match_dataset(gt, dets, options.iou_threshold)
    maps = coco_map(gt.coco, dets.records)
    per_class, thresholds, curves, calib = {}, {}, {}, {}
    for cid, m in matches.items():
        name = gt.categories[cid]
        row, curve_dict, rel = _class_metrics(m, options)
        n_ignore = int((gt.ignore & (gt.category == cid)).sum())
        per_class[name] = {
            "category_id": cid,
            "map50": maps["per_class"][cid]["map50"],
            "map50_95": maps["per_class"][cid]["map50_95"],
            **row,
            "n_gt": m.n_pos,
            "n_ignore": n_ignore,
            "n_det": int(m.score.size),
        }
        thresholds[cid] = row["op_threshold"]
        curves[name] = curve_dict
        calib[name] = rel
    pooled = _pooled(matches, options)
    overall = _overall(per_class, maps, pooled["dece"], options)
    return jsonable(
        {
            "schema": SCHEMA,
            "params": {
                "recall_target": options.recall_target,
                "fps": options.fps,
                "iou_threshold": options.iou_threshold,
                "dece_bins": options.dece_bins,
                "height_bins_px": list(options.height_bins),
                "n_images": gt.n_images,
                "n_detections": len(dets),
                "overall": "mean over classes with ground truth (map: COCO; dece: pooled detections)",
            },
            "overall": overall,
            "per_class": per_class,
            "thresholds": {gt.categories[c]: t for c, t in thresholds.items()},
            "curves": {"reference_fppi": REFERENCE_FPPI.tolist(), "per_class": curves, "pooled": pooled["curve"]},
            "calibration": {"overall": pooled["reliability"], "per_class": calib},
            "breakdown": {
                "height": bd.height_breakdown(gt, matches, thresholds, options.height_bins),
                "conditions": bd.condition_breakdown(gt, matches, thresholds, options.fps),
                "distractors": None if dis is None else bd.distractor_breakdown(gt, dets, matches, thresholds, dis),
            },
        }
    )


def jsonable(obj: Any) -> Any:
    """Plain JSON types all the way down: numpy scalars -> Python numbers, non-finite floats -> None."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _class_metrics(m: ClassMatches, options: EvalOptions) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    scores, is_tp = m.counted()
    curve = build_curve(scores, is_tp, m.n_pos, m.n_images)
    op = operating_point(curve, options.recall_target)
    rel = reliability(scores, is_tp, options.dece_bins)
    row = {
        "precision_at_op": op.precision,
        "recall_at_op": op.recall,
        "fppi_at_op": op.fppi,
        "lamr": lamr(curve),
        "fa_per_hour": fa_per_hour(op.fppi, options.fps),
        "dece": rel.dece,
        "op_threshold": op.threshold,
        "op_reached": op.reached,
        "max_recall": op.max_recall,
        "tp_at_op": op.tp,
        "fp_at_op": op.fp,
    }
    curve_dict: dict[str, Any] = dict(miss_rate_curve(curve, options.curve_points))
    curve_dict["miss_rate_at_ref"] = (1.0 - recall_at_fppi(curve)).tolist() if m.n_pos else None
    return row, curve_dict, rel.as_dict()


def _pooled(matches: Mapping[int, ClassMatches], options: EvalOptions) -> dict[str, Any]:
    """All classes' counted detections under one common threshold: curve, LAMR, operating point, D-ECE."""
    ms = list(matches.values())
    keep = [m.status != IGNORED for m in ms]
    scores = np.concatenate([m.score[k] for m, k in zip(ms, keep, strict=True)]) if ms else np.zeros(0)
    is_tp = np.concatenate([m.status[k] == TP for m, k in zip(ms, keep, strict=True)]) if ms else np.zeros(0, bool)
    n_pos = sum(m.n_pos for m in ms)
    n_images = ms[0].n_images if ms else 0
    curve = build_curve(scores, is_tp, n_pos, n_images)
    op = operating_point(curve, options.recall_target)
    rel = reliability(scores, is_tp, options.dece_bins)
    curve_dict: dict[str, Any] = miss_rate_curve(curve, options.curve_points)
    curve_dict["miss_rate_at_ref"] = (1.0 - recall_at_fppi(curve)).tolist() if n_pos else None
    curve_dict["lamr"] = lamr(curve)
    curve_dict["op"] = {
        "threshold": op.threshold,
        "reached": op.reached,
        "precision": op.precision,
        "recall": op.recall,
        "fppi": op.fppi,
        "fa_per_hour": fa_per_hour(op.fppi, options.fps),
    }
    return {"curve": curve_dict, "reliability": rel.as_dict(), "dece": rel.dece}


def _overall(
    per_class: Mapping[str, Mapping[str, Any]], maps: Mapping[str, Any], dece: float | None, options: EvalOptions
) -> dict[str, Any]:
    rows = [r for r in per_class.values() if r["n_gt"] > 0]

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(vals)) if vals else None

    fppi = mean("fppi_at_op")
    return {
        "map50": maps["map50"],
        "map50_95": maps["map50_95"],
        "precision_at_op": mean("precision_at_op"),
        "recall_at_op": mean("recall_at_op"),
        "fppi_at_op": fppi,
        "lamr": mean("lamr"),
        "fa_per_hour": fa_per_hour(fppi, options.fps),
        "dece": dece,
        "op_threshold": None,
        "op_reached": bool(rows) and all(r["op_reached"] for r in rows),
        "max_recall": mean("max_recall"),
        "n_gt": sum(r["n_gt"] for r in per_class.values()),
        "n_ignore": sum(r["n_ignore"] for r in per_class.values()),
        "n_det": sum(r["n_det"] for r in per_class.values()),
        "tp_at_op": sum(r["tp_at_op"] for r in per_class.values()),
        "fp_at_op": sum(r["fp_at_op"] for r in per_class.values()),
    }


def evaluate_files(
    gt_path: Path | str,
    dt_path: Path | str,
    options: EvalOptions = EvalOptions(),
    distractors_path: Path | str | None = None,
) -> dict[str, Any]:
    """:func:`evaluate` on JSON files; errors name the files."""
    from deploy.metrics.cocoio import load_json

    gt = load_json(gt_path, "ground truth")
    dt = load_json(dt_path, "detections")
    dis = load_json(distractors_path, "distractors") if distractors_path is not None else None
    return evaluate(gt, dt, options, dis, sources=(str(gt_path), str(dt_path), str(distractors_path)))


# ---------------------------------------------------------------------------------------------- running a model
def category_map(names: Sequence[str] | Mapping[int, str], coco_gt: Mapping[str, Any]) -> dict[int, int]:
    """{detector class index: ground-truth category id}.

    By name when one set of names contains the other (classes the ground truth lacks are dropped); by position when
    no name is shared and the class counts agree (index i -> the i-th category by id, the dataset contract's
    id = i + 1: a model trained on the same classes under other names). Names that only partly overlap are an error:
    mapping them by position would score one class as another.
    """
    model = dict(enumerate(names)) if not isinstance(names, Mapping) else {int(k): v for k, v in names.items()}
    cats = sorted(((c["id"], c["name"]) for c in coco_gt.get("categories", [])), key=lambda t: t[0])
    if not cats:
        raise InputError(
            "the ground truth has no 'categories'; expected the evaluated classes as [{'id', 'name'}, ...]"
        )
    by_name = {n: cid for cid, n in cats}
    model_names, gt_names = set(model.values()), set(by_name)
    if model_names and (model_names <= gt_names or gt_names <= model_names):
        return {i: by_name[n] for i, n in model.items() if n in by_name}
    if not model_names & gt_names and len(model) == len(cats):
        return {i: cats[k][0] for k, i in enumerate(sorted(model))}
    raise InputError(
        f"the model's classes {sorted(model_names)} do not match the ground-truth categories {sorted(gt_names)}: "
        f"model-only {sorted(model_names - gt_names)}, ground-truth-only {sorted(gt_names - model_names)}; "
        "evaluate on the dataset the model was trained for, or rename the categories to the model's class names"
    )


def predict_coco(
    detector: Any,
    coco_gt: Mapping[str, Any],
    root: Path,
    corruption: Callable[[np.ndarray, int], np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``detector`` (``.predict(img_bgr) -> Detections``, ``.names``) on every image of ``coco_gt``.

    Images are read from ``root / file_name``; ``corruption(img, image_id)`` (e.g. a
    :class:`deploy.corruptions.CorruptionSpec`) is applied first when given; ``progress(done, total)`` is called
    after each image. Returns COCO results with ground-truth category ids.
    """
    import cv2

    cmap = category_map(detector.names, coco_gt)
    n_classes = max(cmap, default=-1) + 1
    lut = np.full(max(n_classes, 1), -1, dtype=np.int64)
    for i, cid in cmap.items():
        lut[i] = cid
    images = coco_gt.get("images", [])
    results: list[dict[str, Any]] = []
    for n, img_info in enumerate(images, 1):
        path = Path(root) / str(img_info.get("file_name", ""))
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"image {str(path)!r} (image id {img_info.get('id')}) is missing or not a decodable image")
        if corruption is not None:
            img = corruption(img, int(img_info["id"]))
        det = detector.predict(img)
        if len(det):
            keep = (det.class_id < n_classes) & (lut[np.minimum(det.class_id, len(lut) - 1)] >= 0)
            det = det[keep]
            results.extend(det.to_coco(int(img_info["id"]), lut.tolist()))
        if progress is not None:
            progress(n, len(images))
    return results
