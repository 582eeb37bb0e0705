"""Caltech-style greedy matching of detections to ground truth, with ignore regions.

Protocol (Dollar et al., Caltech Pedestrian benchmark), per image and class:

1. detections are visited by decreasing score (ties keep their input order);
2. each is matched to the still-unmatched non-ignore box of highest IoU (ties: the first box in file order); it is a
   true positive (TP) when that IoU is >= ``iou_threshold`` (0.5);
3. a detection left unmatched whose IoU with any ignore region (``iscrowd`` or ``ignore`` set) is >= ``iou_threshold``
   is *ignored*: neither TP nor FP. Otherwise it is a false positive (FP). Ignore regions are never false negatives
   and may absorb any number of detections.

Caltech measures overlap with an ignore region as intersection over the *detection's* area; this project's
specification asks for plain IoU, which is what is used here.

Because the matching is greedy in score order, the matches made by the detections scoring >= t are exactly those
of the full matching restricted to them; a single matching therefore serves every score threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.metrics.cocoio import DetectionSet, GroundTruth

IOU_THRESHOLD = 0.5
TP, FP, IGNORED = 1, 0, -1


def box_area(a: np.ndarray) -> np.ndarray:
    """(N,) areas of (N, 4) ``xyxy`` boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    return (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])


def intersection_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of (N, 4) and (M, 4) ``xyxy`` boxes -> (N, M) float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(iw, 0, None) * np.clip(ih, 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain IoU of (N, 4) and (M, 4) ``xyxy`` boxes -> (N, M) float64. Zero-area unions give 0."""
    inter = intersection_matrix(a, b)
    area_a, area_b = box_area(a), box_area(b)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_image(
    det_xyxy: np.ndarray, gt_xyxy: np.ndarray, ignore_xyxy: np.ndarray, iou_threshold: float = IOU_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's detections of one class, **already sorted by decreasing score**.

    Args:
        det_xyxy: (D, 4) detections, best first.
        gt_xyxy: (G, 4) non-ignore ground-truth boxes.
        ignore_xyxy: (K, 4) ignore regions.

    Returns:
        status: (D,) int8, ``TP`` (1), ``FP`` (0) or ``IGNORED`` (-1).
        gt_det: (G,) int64 index of the detection matched to each box, -1 when missed.
    """
    n_det, n_gt = len(det_xyxy), len(gt_xyxy)
    status = np.zeros(n_det, dtype=np.int8)
    gt_det = np.full(n_gt, -1, dtype=np.int64)
    if n_det and n_gt:
        ious = iou_matrix(det_xyxy, gt_xyxy)
        available = np.ones(n_gt, dtype=bool)
        for d in np.flatnonzero(ious.max(axis=1) >= iou_threshold):  # only these can ever match
            row = np.where(available, ious[d], -1.0)
            j = int(row.argmax())
            if row[j] >= iou_threshold:
                status[d] = TP
                available[j] = False
                gt_det[j] = d
                if not available.any():
                    break
    if n_det and len(ignore_xyxy):
        rest = np.flatnonzero(status == FP)
        if rest.size:
            hit = iou_matrix(det_xyxy[rest], ignore_xyxy).max(axis=1) >= iou_threshold
            status[rest[hit]] = IGNORED
    return status, gt_det


@dataclass(frozen=True)
class ClassMatches:
    """The matching of one class over a whole dataset.

    Attributes:
        score: (M,) float64 scores of the class's detections.
        status: (M,) int8 ``TP`` / ``FP`` / ``IGNORED``.
        image: (M,) int64 image index of each detection.
        det_index: (M,) int64 index of each detection in the :class:`DetectionSet`.
        gt_index: (P,) int64 index (into the GroundTruth arrays) of each non-ignore box of the class.
        gt_score: (P,) float64 score of the detection matched to each box, ``-inf`` when missed.
        n_images: number of images in the ground truth (the FPPI denominator).
    """

    score: np.ndarray
    status: np.ndarray
    image: np.ndarray
    det_index: np.ndarray
    gt_index: np.ndarray
    gt_score: np.ndarray
    n_images: int

    @property
    def n_pos(self) -> int:
        return int(self.gt_index.shape[0])

    def counted(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, is_tp) of the detections that count (TP or FP), both (M',)."""
        keep = self.status != IGNORED
        return self.score[keep], self.status[keep] == TP


def _groups(image: np.ndarray) -> dict[int, np.ndarray]:
    """{image index: positions} for a sorted (N,) image-index array."""
    if image.size == 0:
        return {}
    cuts = np.flatnonzero(np.diff(image)) + 1
    return {int(image[p[0]]): p for p in np.split(np.arange(image.size), cuts)}


def match_class(
    gt: GroundTruth, dets: DetectionSet, category_id: int, iou_threshold: float = IOU_THRESHOLD
) -> ClassMatches:
    """Caltech matching of every detection of ``category_id`` over all images."""
    d_idx = np.flatnonzero(dets.category == category_id)
    d_idx = d_idx[np.lexsort((d_idx, -dets.score[d_idx], dets.image[d_idx]))]  # by image, score desc, input order
    g_idx = np.flatnonzero(gt.category == category_id)
    g_idx = g_idx[np.argsort(gt.image[g_idx], kind="stable")]
    pos = g_idx[~gt.ignore[g_idx]]
    ign = g_idx[gt.ignore[g_idx]]
    pos_groups, ign_groups = _groups(gt.image[pos]), _groups(gt.image[ign])
    status = np.zeros(d_idx.size, dtype=np.int8)
    gt_score = np.full(pos.size, -np.inf)
    empty = np.zeros(0, dtype=np.int64)
    for img, where in _groups(dets.image[d_idx]).items():
        p_where = pos_groups.get(img, empty)
        i_where = ign_groups.get(img, empty)
        st, gt_det = match_image(dets.xyxy[d_idx[where]], gt.xyxy[pos[p_where]], gt.xyxy[ign[i_where]], iou_threshold)
        status[where] = st
        hit = gt_det >= 0
        gt_score[p_where[hit]] = dets.score[d_idx[where[gt_det[hit]]]]
    return ClassMatches(
        score=dets.score[d_idx],
        status=status,
        image=dets.image[d_idx],
        det_index=d_idx,
        gt_index=pos,
        gt_score=gt_score,
        n_images=gt.n_images,
    )


def match_dataset(gt: GroundTruth, dets: DetectionSet, iou_threshold: float = IOU_THRESHOLD) -> dict[int, ClassMatches]:
    """{category id: :class:`ClassMatches`} for every ground-truth category."""
    return {cid: match_class(gt, dets, cid, iou_threshold) for cid in gt.categories}
