"""COCO mAP50 and mAP50-95 with faster-coco-eval (same numbers as pycocotools' COCOeval).

Standard COCO parameters: bbox IoU, thresholds 0.50:0.05:0.95, area range "all", at most 100 detections per image
and class. Ignore semantics are COCO's: only ``iscrowd`` boxes are ignored (as in pycocotools, which overwrites an
``ignore`` flag with ``iscrowd``). Classes without ground truth have no AP (None) and are left out of the mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def coco_map(gt_coco: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """mAP of COCO ``results`` against a COCO ground-truth dict.

    Returns:
        ``{"map50", "map50_95", "per_class": {category_id: {"map50", "map50_95"}}}``; None where undefined.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    def quiet(*_: Any, **__: Any) -> None:
        return None

    cat_ids = sorted(c["id"] for c in gt_coco["categories"])
    # faster-coco-eval adds keys to the dicts it is given (ignore, segmentation, id...): hand it shallow copies
    gt_copy = {**gt_coco, **{k: [dict(x) for x in gt_coco.get(k, [])] for k in ("images", "annotations", "categories")}}
    coco_gt = COCO(gt_copy, print_function=quiet)
    coco_dt = coco_gt.loadRes([dict(r) for r in results])
    coco_dt.print_function = quiet
    ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=quiet)
    ev.params.catIds = cat_ids
    ev.evaluate()
    ev.accumulate()
    # precision: (T iou thresholds, R recall points, K classes, A area ranges, M max-dets); area "all", 100 dets
    precision = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]
    per_class = {
        cid: {"map50": _mean(precision[0, :, k]), "map50_95": _mean(precision[:, :, k])}
        for k, cid in enumerate(cat_ids)
    }
    return {"map50": _mean(precision[0]), "map50_95": _mean(precision), "per_class": per_class}


def _mean(p: np.ndarray) -> float | None:
    """COCO's mean over valid entries (-1 marks a class without ground truth)."""
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else None
