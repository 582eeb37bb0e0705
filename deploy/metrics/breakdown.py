"""Breakdowns at the operating point: recall by object height, metrics per image condition, distractor false alarms.

Every breakdown uses each class's own operating-point threshold (``thresholds[category_id]``; None = the class has
no detection, so nothing is kept) and the Caltech matching of :mod:`deploy.metrics.matching`.

- "at op" counts detections with ``score >= threshold``; "all" counts every detection given.
- ``overall`` entries are the mean over classes (like the overall table): recall over the classes that have
  ground truth in the subset, FPPI over the classes that have ground truth anywhere in the dataset.
- Height bins (CityPersons-style, on non-ignore boxes): ``[0, 50)``, ``[50, 100)``, ``[100, inf)`` pixels by default.
- Conditions: every key found in the images' COCO ``attributes`` (``timeofday``, ``weather``, ...), per value.
- Distractors (synthetic data): a false positive at the operating point *hits* a distractor when its IoU with the
  distractor's box is >= 0.3, or when at least half of the detection's area lies inside the box ("mostly inside");
  it is attributed to the qualifying distractor of highest IoU (first in file order on ties) and counted once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deploy.metrics.cocoio import DetectionSet, Distractors, GroundTruth
from deploy.metrics.fppi import fa_per_hour
from deploy.metrics.matching import FP, ClassMatches, box_area, intersection_matrix, iou_matrix

DEFAULT_HEIGHT_BINS = (50.0, 100.0)
DISTRACTOR_IOU = 0.3
DISTRACTOR_INSIDE = 0.5


def kept(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    """(N,) bool: scores at or above the threshold (all False when the threshold is None)."""
    if threshold is None:
        return np.zeros(np.shape(scores), dtype=bool)
    return np.asarray(scores) >= threshold


def _ratio(num: float, den: float) -> float | None:
    return float(num) / den if den else None


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _bin_label(lo: float, hi: float) -> str:
    return f"[{lo:g},{'inf' if np.isinf(hi) else format(hi, 'g')})"


def height_breakdown(
    gt: GroundTruth,
    matches: Mapping[int, ClassMatches],
    thresholds: Mapping[int, float | None],
    bins: Sequence[float] = DEFAULT_HEIGHT_BINS,
) -> dict[str, Any]:
    """Recall per object-height bin, per class (by name) and overall (class mean)."""
    edges = np.r_[0.0, np.asarray(bins, dtype=np.float64), np.inf]
    heights = gt.height
    per_class: dict[str, dict[str, Any]] = {}
    for cid, m in matches.items():
        h = heights[m.gt_index]
        rows = {}
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            sel = (h >= lo) & (h < hi)
            n = int(sel.sum())
            rows[_bin_label(lo, hi)] = {
                "n_gt": n,
                "recall_at_op": _ratio(kept(m.gt_score[sel], thresholds[cid]).sum(), n),
                "recall_all": _ratio(np.isfinite(m.gt_score[sel]).sum(), n),
            }
        per_class[gt.categories[cid]] = rows
    overall = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        key = _bin_label(lo, hi)
        rows_k = [per_class[name][key] for name in per_class]
        overall[key] = {
            "n_gt": sum(r["n_gt"] for r in rows_k),
            "recall_at_op": _mean([r["recall_at_op"] for r in rows_k]),
            "recall_all": _mean([r["recall_all"] for r in rows_k]),
        }
    return {"bins_px": [float(b) for b in bins], "overall": overall, "per_class": per_class}


def _attr_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def condition_breakdown(
    gt: GroundTruth,
    matches: Mapping[int, ClassMatches],
    thresholds: Mapping[int, float | None],
    fps: float,
) -> dict[str, dict[str, Any]]:
    """{attribute: {value: {n_images, n_gt, recall_at_op, recall_all, fppi_at_op, fa_per_hour, per_class}}}."""
    keys = sorted({k for attrs in gt.image_attrs for k in attrs})
    with_gt = [cid for cid, m in matches.items() if m.n_pos]
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        values = np.asarray([_attr_value(a[key]) if key in a else "(missing)" for a in gt.image_attrs], dtype=object)
        out[key] = {}
        for value in sorted(set(values.tolist())):
            in_subset = values == value
            n_img = int(in_subset.sum())
            per_class = {}
            for cid, m in matches.items():
                g_sel = in_subset[gt.image[m.gt_index]]
                d_sel = in_subset[m.image] & (m.status == FP) & kept(m.score, thresholds[cid])
                n_gt = int(g_sel.sum())
                per_class[gt.categories[cid]] = {
                    "n_gt": n_gt,
                    "recall_at_op": _ratio(kept(m.gt_score[g_sel], thresholds[cid]).sum(), n_gt),
                    "recall_all": _ratio(np.isfinite(m.gt_score[g_sel]).sum(), n_gt),
                    "fppi_at_op": int(d_sel.sum()) / n_img,
                }
            names = [gt.categories[c] for c in with_gt]
            fppi = _mean([per_class[n]["fppi_at_op"] for n in names])
            out[key][value] = {
                "n_images": n_img,
                "n_gt": sum(r["n_gt"] for r in per_class.values()),
                "recall_at_op": _mean([per_class[n]["recall_at_op"] for n in names]),
                "recall_all": _mean([per_class[n]["recall_all"] for n in names]),
                "fppi_at_op": fppi,
                "fa_per_hour": fa_per_hour(fppi, fps),
                "per_class": per_class,
            }
    return out


def distractor_hits(det_xyxy: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
    """(D,) index of the distractor each detection hits (rule in the module docstring), -1 for none."""
    if len(det_xyxy) == 0 or len(box_xyxy) == 0:
        return np.full(len(det_xyxy), -1, dtype=np.int64)
    iou = iou_matrix(det_xyxy, box_xyxy)
    area = box_area(det_xyxy)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.where(area > 0, intersection_matrix(det_xyxy, box_xyxy) / np.where(area > 0, area, 1.0), 0.0)
    ok = (iou >= DISTRACTOR_IOU) | (inside >= DISTRACTOR_INSIDE)
    best = np.where(ok, iou, -1.0).argmax(axis=1)
    return np.where(ok.any(axis=1), best, -1)


def distractor_breakdown(
    gt: GroundTruth,
    dets: DetectionSet,
    matches: Mapping[int, ClassMatches],
    thresholds: Mapping[int, float | None],
    distractors: Distractors,
) -> dict[str, Any]:
    """False positives at the operating point on distractor objects, per distractor kind (and per class)."""
    kinds = np.asarray(distractors.kind, dtype=object)
    per_kind: dict[str, dict[str, Any]] = {
        k: {"n_distractors": int((kinds == k).sum()), "fp_at_op": 0, "distractors_hit": 0, "per_class": {}}
        for k in distractors.kinds
    }
    hit_ids: set[int] = set()
    n_fp = 0
    for cid, m in matches.items():
        fp = (m.status == FP) & kept(m.score, thresholds[cid])
        n_fp += int(fp.sum())
        name = gt.categories[cid]
        for k in per_kind:
            per_kind[k]["per_class"][name] = 0
        for img in np.unique(m.image[fp]):
            d_rows = m.det_index[fp & (m.image == img)]
            boxes = np.flatnonzero(distractors.image == img)
            hits = distractor_hits(dets.xyxy[d_rows], distractors.xyxy[boxes])
            for h in hits[hits >= 0]:
                box = int(boxes[h])
                entry = per_kind[distractors.kind[box]]
                entry["fp_at_op"] += 1
                entry["per_class"][name] += 1
                hit_ids.add(box)
    for k, entry in per_kind.items():
        entry["distractors_hit"] = sum(1 for b in hit_ids if distractors.kind[b] == k)
        entry["fp_per_distractor"] = _ratio(entry["fp_at_op"], entry["n_distractors"])
    on = sum(e["fp_at_op"] for e in per_kind.values())
    return {
        "rule": f"FP at the operating point with IoU >= {DISTRACTOR_IOU} or >= {DISTRACTOR_INSIDE:.0%} of its area inside a distractor",
        "fp_at_op": n_fp,
        "fp_at_op_on_distractors": on,
        "share_on_distractors": _ratio(on, n_fp),
        "per_kind": per_kind,
    }
