"""Miss rate vs false positives per image (FPPI), log-average miss rate (LAMR), the operating point.

Inputs are the counted detections of a :class:`~deploy.metrics.matching.ClassMatches` (ignored ones removed):
scores and TP flags, the number of non-ignore ground-truth boxes ``n_pos`` and the number of images ``n_images``
(ALL images of the ground truth, with or without boxes).

Definitions:

- A *threshold* t keeps the detections with ``score >= t``; the candidate thresholds are the distinct scores.
- ``recall(t) = TP(t) / n_pos``, ``fppi(t) = FP(t) / n_images``, ``precision(t) = TP(t) / (TP(t) + FP(t))``.
- Reference FPPI points: ``10 ** (-2, -1.75, ..., 0)`` (nine). At each point r, the recall at the lowest threshold
  whose FPPI does not exceed r (0 when no threshold qualifies).
- ``LAMR = exp(mean(log(max(1e-10, 1 - recall_at_ref))))``; 1.0 without detections; undefined (None) without positives.
- Operating point for a recall target: the highest threshold at which recall first reaches the target; when it never
  does, the threshold at which the maximum recall is first reached (``op_reached = False``).
- False alarms per hour at ``fps`` frames per second: ``fppi * fps * 3600``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCE_FPPI = 10.0 ** np.arange(-2.0, 0.0 + 1e-9, 0.25)  # (9,)
_EPS = 1e-9  # relative slack for float comparisons of FPPI with the reference points and recall with the target


@dataclass(frozen=True)
class Curve:
    """Cumulative counts at each distinct score, best first.

    Attributes:
        thresholds: (T,) float64 distinct scores, decreasing.
        tp: (T,) int64 true positives with score >= threshold.
        fp: (T,) int64 false positives with score >= threshold.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_images: int

    @property
    def recall(self) -> np.ndarray:
        """(T,) recall; NaN when there are no positives."""
        if self.n_pos == 0:
            return np.full(self.tp.shape, np.nan)
        return self.tp / self.n_pos

    @property
    def fppi(self) -> np.ndarray:
        return self.fp / max(self.n_images, 1)

    @property
    def precision(self) -> np.ndarray:
        return self.tp / np.maximum(self.tp + self.fp, 1)


def build_curve(scores: np.ndarray, is_tp: np.ndarray, n_pos: int, n_images: int) -> Curve:
    """Curve from (M,) scores and (M,) boolean TP flags of the counted detections."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_tp = np.asarray(is_tp, dtype=bool).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], is_tp[order]
    ctp, cfp = np.cumsum(t, dtype=np.int64), np.cumsum(~t, dtype=np.int64)
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if s.size else np.zeros(0, dtype=np.int64)
    return Curve(s[last], ctp[last], cfp[last], int(n_pos), int(n_images))


def recall_at_fppi(curve: Curve, points: np.ndarray = REFERENCE_FPPI) -> np.ndarray:
    """(R,) recall at each reference FPPI point (lowest threshold with fppi <= point; 0 if none)."""
    points = np.asarray(points, dtype=np.float64)
    recall = np.nan_to_num(curve.recall, nan=0.0)
    # fppi is non-decreasing along the thresholds, so the lowest qualifying threshold is the last index <= point
    idx = np.searchsorted(curve.fppi, points * (1 + _EPS), side="right") - 1
    return np.where(idx >= 0, recall[np.clip(idx, 0, None)] if recall.size else 0.0, 0.0)


def lamr(curve: Curve, points: np.ndarray = REFERENCE_FPPI) -> float | None:
    """Log-average miss rate over the reference points; None when the class has no positives."""
    if curve.n_pos == 0:
        return None
    miss = 1.0 - recall_at_fppi(curve, points)
    return float(np.exp(np.mean(np.log(np.maximum(1e-10, miss)))))


@dataclass(frozen=True)
class OperatingPoint:
    """The operating point of one class; ``threshold`` is None without any counted detection."""

    threshold: float | None
    reached: bool
    precision: float
    recall: float | None
    fppi: float
    max_recall: float | None
    tp: int
    fp: int


def operating_point(curve: Curve, recall_target: float) -> OperatingPoint:
    """The first (highest) threshold whose recall reaches ``recall_target``, else the one of maximum recall."""
    if curve.thresholds.size == 0:
        recall0 = 0.0 if curve.n_pos else None
        return OperatingPoint(None, False, 0.0, recall0, 0.0, recall0, 0, 0)
    if curve.n_pos == 0:  # nothing to recall: every detection is a false alarm; report the strictest threshold
        i, reached, max_recall = 0, False, None
    else:
        recall = curve.recall
        max_recall = float(recall[-1])
        hits = np.flatnonzero(recall >= recall_target * (1 - _EPS))
        reached = bool(hits.size)
        i = int(hits[0]) if reached else int(np.argmax(recall >= max_recall))
    tp, fp = int(curve.tp[i]), int(curve.fp[i])
    return OperatingPoint(
        threshold=float(curve.thresholds[i]),
        reached=reached,
        precision=tp / (tp + fp),
        recall=tp / curve.n_pos if curve.n_pos else None,
        fppi=fp / max(curve.n_images, 1),
        max_recall=max_recall,
        tp=tp,
        fp=fp,
    )


def fa_per_hour(fppi: float | None, fps: float) -> float | None:
    """False alarms per hour of video at ``fps`` frames per second."""
    return None if fppi is None else float(fppi) * float(fps) * 3600.0


def miss_rate_curve(curve: Curve, max_points: int = 200) -> dict[str, list[float]]:
    """Miss rate vs FPPI for plotting (log-log): the frontier, at most ``max_points`` points.

    Keeps, for each distinct FP count, the lowest threshold (highest recall) before the next FP; when more points
    remain, samples them on a log-spaced FPPI grid with the reference-point rule.
    """
    if curve.thresholds.size == 0 or curve.n_pos == 0:
        return {"fppi": [], "miss_rate": [], "threshold": []}
    last_of_fp = np.flatnonzero(np.r_[curve.fp[1:] != curve.fp[:-1], True])
    if last_of_fp.size > max_points:
        fppi = curve.fppi
        lo = max(fppi[fppi > 0].min() if (fppi > 0).any() else 1.0 / max(curve.n_images, 1), 1e-6)
        grid = np.geomspace(lo, max(fppi[-1], lo), max_points)
        idx = np.unique(np.clip(np.searchsorted(fppi, grid * (1 + _EPS), side="right") - 1, 0, None))
    else:
        idx = last_of_fp
    return {
        "fppi": curve.fppi[idx].tolist(),
        "miss_rate": (1.0 - curve.recall[idx]).tolist(),
        "threshold": curve.thresholds[idx].tolist(),
    }
