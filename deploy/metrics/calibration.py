"""Detection expected calibration error (D-ECE, Kuppers et al., CVPR-W 2020) and reliability-diagram data.

Detections are labelled TP/FP by the Caltech matching at IoU 0.5 (:mod:`deploy.metrics.matching`; detections on
ignore regions are left out). Confidences are binned into ``n_bins`` equal-width bins over [0, 1]: bin b holds
``b / n <= conf < (b + 1) / n`` (a confidence of 1 falls in the last bin; confidences outside [0, 1] are clipped).
Per bin: ``count``, mean confidence and precision (the fraction of TPs). Then

    D-ECE = sum_b (count_b / N) * |precision_b - mean_confidence_b|

over non-empty bins, N the number of detections. Without any detection D-ECE is undefined (None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data: (B+1,) bin ``edges``; (B,) ``count``, ``mean_confidence``, ``precision``
    (NaN for empty bins) and the D-ECE (None without detections)."""

    edges: np.ndarray
    count: np.ndarray
    mean_confidence: np.ndarray
    precision: np.ndarray
    dece: float | None

    def as_dict(self) -> dict[str, object]:
        """JSON-able dict; empty bins' means are None."""

        def clean(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "edges": self.edges.tolist(),
            "count": self.count.astype(int).tolist(),
            "mean_confidence": clean(self.mean_confidence),
            "precision": clean(self.precision),
            "dece": self.dece,
        }


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """(N,) bin of each confidence: ``floor(conf * n_bins)`` clipped to ``[0, n_bins - 1]``."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    return np.minimum(np.floor(conf * n_bins).astype(np.int64), n_bins - 1)


def reliability(confidence: np.ndarray, is_tp: np.ndarray, n_bins: int = 10) -> Reliability:
    """Reliability data and D-ECE of (N,) confidences with (N,) boolean TP flags."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = np.clip(np.asarray(confidence, dtype=np.float64).reshape(-1), 0.0, 1.0)
    tp = np.asarray(is_tp, dtype=np.float64).reshape(-1)
    b = bin_index(conf, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        precision = np.bincount(b, weights=tp, minlength=n_bins) / count
    dece = None
    if conf.size:
        full = count > 0
        dece = float(np.sum(count[full] / conf.size * np.abs(precision[full] - mean_conf[full])))
    return Reliability(np.linspace(0.0, 1.0, n_bins + 1), count.astype(np.int64), mean_conf, precision, dece)
