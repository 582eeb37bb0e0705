"""Decode raw detector outputs (numpy) and run class-aware NMS (OpenCV's greedy NMS), as ultralytics does.

Supported raw layouts (``A`` anchors, ``nc`` classes, ``B`` images):

* ``split``: the edgekd ONNX contract, ``boxes`` (B, 4, A) cx, cy, w, h in letterboxed input
  pixels and ``scores`` (B, nc, A) sigmoid class probabilities;
* ``fused``: ultralytics' own export ``output0`` (B, 4 + nc [+ extra], A);
* ``end2end``: NMS-free exports (B, K, 6) rows ``x1, y1, x2, y2, score, class``.

Semantics follow ``ultralytics.utils.nms.non_max_suppression`` with ``agnostic=False``,
``multi_label=False``: candidates whose best class score is ``> conf``, the best class per box,
the ``max_nms`` most confident candidates, greedy NMS on boxes offset by ``class * max_wh``
(suppress IoU ``> iou``), the first ``max_det`` kept. Boxes are then mapped back to the original
image and clipped (ultralytics' ``scale_boxes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from deploy.detections import Detections
from deploy.errors import InputError
from deploy.preprocess import LetterboxMeta

MAX_WH = 7680  # ultralytics' per-class coordinate offset
MAX_NMS = 30000  # ultralytics' cap on boxes entering NMS


class OutputLayout(str, Enum):
    SPLIT = "split"
    FUSED = "fused"
    END2END = "end2end"


@dataclass(frozen=True)
class NmsParams:
    """Thresholds of the decode + NMS step."""

    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    max_nms: int = MAX_NMS

    def __post_init__(self) -> None:
        for key in ("conf", "iou"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{key}={value!r}: expected a number in [0, 1]")
        if self.max_det < 1 or self.max_nms < 1:
            raise InputError(f"max_det={self.max_det!r}, max_nms={self.max_nms!r}: expected positive integers")


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) cx, cy, w, h -> (N, 4) x1, y1, x2, y2 (same dtype)."""
    out = np.empty_like(boxes)
    half = boxes[:, 2:] / 2
    out[:, :2] = boxes[:, :2] - half
    out[:, 2:] = boxes[:, :2] + half
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS (torchvision semantics) by OpenCV's ``cv2.dnn.NMSBoxes``: kept indices, by decreasing score.

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,).
        iou: a box is suppressed when its IoU with a kept, higher-scored box is ``> iou``.
        max_keep: keep only the first ``max_keep`` kept boxes (the result of a full run, truncated).

    Returns:
        (K,) int64 indices into ``boxes``; equal scores keep the lower index first.
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, np.int64)
    xyxy = np.asarray(boxes, np.float64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    # OpenCV needs scores > a threshold >= 0 and orders ties its own way: give it each box's rank instead
    # (n for the best, 1 for the worst; a stable sort, so equal scores keep index order), exact in float32.
    rank = np.empty(n, np.float32)
    rank[np.argsort(-np.asarray(scores), kind="stable")] = np.arange(n, 0, -1, dtype=np.float32)
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh, rank, 0.0, float(iou)), np.int64).reshape(-1)
    return keep if max_keep is None else keep[:max_keep]


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou: float, max_keep: int | None = None
) -> np.ndarray:
    """Class-aware NMS via ultralytics' offset trick: boxes of class c are shifted by ``c * max_wh``.

    Args:
        boxes: (N, 4) xyxy in letterboxed input pixels.
        scores: (N,).
        class_id: (N,) integer classes.

    Returns:
        (K,) int64 kept indices, by decreasing score.
    """
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    max_wh = max(MAX_WH, float(np.abs(boxes).max()) * 2 + 1)
    offset = (class_id.astype(boxes.dtype) * boxes.dtype.type(max_wh))[:, None]
    return nms(boxes + offset, scores, iou, max_keep)


def select_candidates(
    boxes_cxcywh: np.ndarray, class_scores: np.ndarray, params: NmsParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs -> candidates above ``conf``, capped at ``max_nms``.

    Args:
        boxes_cxcywh: (4, A) cx, cy, w, h.
        class_scores: (nc, A) class probabilities.

    Returns:
        xyxy (M, 4) float32, confidence (M,) float32, class_id (M,) int64, in anchor order
        (or in decreasing confidence when more than ``max_nms`` passed).
    """
    if class_scores.shape[0] == 0 or class_scores.shape[1] == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores = np.asarray(class_scores, np.float32)
    cls = scores.argmax(0)
    conf = np.take_along_axis(scores, cls[None], 0)[0]
    mask = conf > params.conf
    xyxy = cxcywh_to_xyxy(np.asarray(boxes_cxcywh, np.float32)[:, mask].T)
    conf, cls = conf[mask], cls[mask].astype(np.int64)
    if len(conf) > params.max_nms:
        top = np.argsort(-conf, kind="stable")[: params.max_nms]
        xyxy, conf, cls = xyxy[top], conf[top], cls[top]
    return xyxy, conf, cls


def nms_image(
    boxes_cxcywh: np.ndarray, class_scores: np.ndarray, params: NmsParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode + NMS for one image: (4, A), (nc, A) -> xyxy (K, 4), conf (K,), class (K,) in input pixels."""
    xyxy, conf, cls = select_candidates(boxes_cxcywh, class_scores, params)
    keep = batched_nms(xyxy, conf, cls, params.iou, params.max_det)
    return xyxy[keep], conf[keep], cls[keep]


def end2end_image(rows: np.ndarray, params: NmsParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NMS-free rows (K, 6) x1, y1, x2, y2, score, class -> the rows with score > conf, first max_det."""
    rows = np.asarray(rows, np.float32)
    rows = rows[rows[:, 4] > params.conf][: params.max_det]
    return rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].round().astype(np.int64)


def detect_layout(outputs: Mapping[str, np.ndarray], nc: int) -> OutputLayout:
    """Which raw layout ``outputs`` holds (see the module docstring). Raises InputError when none fits."""
    if "boxes" in outputs and "scores" in outputs:
        return OutputLayout.SPLIT
    if len(outputs) >= 1:
        shape = np.shape(next(iter(outputs.values())))
        if len(shape) == 3 and shape[2] == 6 and shape[1] != 4 + nc:
            return OutputLayout.END2END
        if len(shape) == 3 and shape[1] >= 4 + nc:
            return OutputLayout.FUSED
    shapes = {k: np.shape(v) for k, v in outputs.items()}
    raise InputError(
        f"model outputs {shapes} match no known layout: expected 'boxes' (B,4,A) + 'scores' (B,{nc},A), "
        f"an ultralytics 'output0' (B,{4 + nc}+,A) or NMS-free (B,K,6); re-export the model with `edgekd run --until export`"
    )


def per_image_outputs(outputs: Mapping[str, np.ndarray], nc: int) -> tuple[OutputLayout, list[tuple[np.ndarray, ...]]]:
    """Split a batch of raw outputs per image: [((4, A) boxes, (nc, A) scores)] or [((K, 6) rows,)]."""
    layout = detect_layout(outputs, nc)
    if layout is OutputLayout.SPLIT:
        boxes, scores = outputs["boxes"], outputs["scores"]
        if np.ndim(scores) != 3 or scores.shape[1] != nc or np.shape(boxes)[:2] != (scores.shape[0], 4):
            raise InputError(
                f"model outputs boxes {np.shape(boxes)} / scores {np.shape(scores)} do not match the metadata's "
                f"{nc} class name(s); expected (B,4,A) and (B,{nc},A)"
            )
        return layout, [(b, s) for b, s in zip(boxes, scores, strict=True)]
    pred = next(iter(outputs.values()))
    if layout is OutputLayout.FUSED:
        return layout, [(p[:4], p[4 : 4 + nc]) for p in pred]
    return layout, [(rows,) for rows in pred]


def postprocess(
    outputs: Mapping[str, np.ndarray], metas: Sequence[LetterboxMeta], nc: int, params: NmsParams = NmsParams()
) -> list[Detections]:
    """Raw outputs of a batch -> one :class:`Detections` per image, in original-image pixels.

    Args:
        outputs: the backend's outputs by name (see the module docstring for the layouts).
        metas: one LetterboxMeta per image of the batch; extra batch rows (padding) are ignored.
        nc: number of classes of the model.
    """
    if len(metas) == 0:
        return []
    layout, items = per_image_outputs(outputs, nc)
    if len(items) < len(metas):
        raise InputError(f"model returned outputs for {len(items)} image(s), expected {len(metas)}")
    results = []
    for item, meta in zip(items, metas, strict=False):  # extra rows: batch padding
        if layout is OutputLayout.END2END:
            xyxy, conf, cls = end2end_image(item[0], params)
        else:
            xyxy, conf, cls = nms_image(item[0], item[1], params)
        results.append(Detections(meta.to_original(xyxy), conf, cls))
    return results
