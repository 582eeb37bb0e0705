"""Is a difference in COCO mAP50-95 between two detectors on the same images real? A paired bootstrap.

Two variants evaluated on the same validation images differ by some mAP; with tens of images much of that is
which images happened to be in the split. The paired bootstrap (Efron & Tibshirani) resamples the *images* with
replacement, recomputes both mAPs on each resample and reads a confidence interval for the difference off the
resampled differences. The same resample serves both variants, so what the images share cancels out.

COCO's per-image matching (bbox IoU 0.50:0.05:0.95, area "all", at most 100 detections per image and class,
``iscrowd`` ground truth ignored) is pycocotools' ``COCOeval.evaluate``; only its accumulation is redone here, with
each image counted as often as the resample draws it (a weight), which is the same as duplicating the image. With
every weight 1 it gives pycocotools' / faster-coco-eval's mAP50-95 (tested).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's 101 recall thresholds
MAX_DETS = 100


@dataclass(frozen=True)
class ClassMatches:
    """One class, every detection of the split in COCO's accumulation order (score descending).

    Attributes:
        image: (D,) int index of each detection's image in :attr:`ImageMatches.image_ids`.
        tp: (T, D) bool, matched at IoU threshold t (and not ignored).
        fp: (T, D) bool, unmatched and not ignored.
        n_gt: (I,) int non-ignored ground-truth boxes of this class per image.
    """

    image: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_gt: np.ndarray


@dataclass(frozen=True)
class ImageMatches:
    """Per-image COCO matches of one variant: ``image_ids`` (I,) and one :class:`ClassMatches` per category."""

    image_ids: tuple[int, ...]
    classes: tuple[ClassMatches, ...]


@dataclass(frozen=True)
class PairedDelta:
    """mAP50-95 of ``a`` minus ``b`` (fractions) on the full split, and its bootstrap confidence interval."""

    delta: float
    low: float
    high: float
    confidence: float
    resamples: int
    n_images: int

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` when the interval excludes 0, else ``no detectable difference``."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no detectable difference"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (metrics.json ``paired`` entries, ``edgekd metrics --vs``); differences are fractions."""
        return {"delta_map50_95": self.delta, "ci_low": self.low, "ci_high": self.high, "confidence": self.confidence,
                "resamples": self.resamples, "n_images": self.n_images, "verdict": self.verdict}  # fmt: skip


def describe(entry: Mapping[str, Any]) -> str:
    """``+0.35 points, 95% CI [+0.05, +0.76]: better`` of an :meth:`PairedDelta.as_dict` entry."""
    return (
        f"{100 * entry['delta_map50_95']:+.2f} points, {entry['confidence']:.0%} CI "
        f"[{100 * entry['ci_low']:+.2f}, {100 * entry['ci_high']:+.2f}]: {entry['verdict']}"
    )


def image_matches(gt_coco: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> ImageMatches:
    """Run pycocotools' per-image evaluation of COCO ``results`` and keep what accumulation needs."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image_ids = tuple(sorted(int(im["id"]) for im in gt_coco["images"]))
    cat_ids = sorted(int(c["id"]) for c in gt_coco["categories"])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {k: [dict(x) for x in gt_coco.get(k, [])] for k in ("images", "annotations", "categories")}
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes([dict(r) for r in results]) if results else None, iouType="bbox")
        ev.params.imgIds, ev.params.catIds, ev.params.maxDets = list(image_ids), cat_ids, [MAX_DETS]
        ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], ["all"]
        if results:
            ev.evaluate()
    if not results:  # no detections: every ground-truth box is a miss
        n_gt = np.zeros((len(cat_ids), len(image_ids)), dtype=np.int64)
        index = {img: i for i, img in enumerate(image_ids)}
        row = {cid: k for k, cid in enumerate(cat_ids)}
        for ann in gt_coco.get("annotations", []):
            if not ann.get("iscrowd", 0) and int(ann["category_id"]) in row:
                n_gt[row[int(ann["category_id"])], index[int(ann["image_id"])]] += 1
        empty = np.zeros((len(ev.params.iouThrs), 0), dtype=bool)
        none = np.zeros(0, dtype=np.int64)
        return ImageMatches(image_ids, tuple(ClassMatches(none, empty, empty, n) for n in n_gt))
    per_image = {(e["category_id"], e["image_id"]): e for e in ev.evalImgs if e is not None}
    n_t = len(ev.params.iouThrs)
    return ImageMatches(image_ids, tuple(_class_matches(cid, image_ids, per_image, n_t) for cid in cat_ids))


def _class_matches(cid: int, image_ids: Sequence[int], per_image: Mapping, n_t: int) -> ClassMatches:
    """One class's detections over every image, sorted like pycocotools' ``accumulate`` sorts them."""
    scores, image, matched, ignored = [], [], [], []
    n_gt = np.zeros(len(image_ids), dtype=np.int64)
    for i, img in enumerate(image_ids):
        e = per_image.get((cid, img))
        if e is None:  # neither detections nor ground truth of this class here
            continue
        n_gt[i] = int(np.count_nonzero(~np.asarray(e["gtIgnore"], dtype=bool)))
        d = len(e["dtScores"])
        scores.append(np.asarray(e["dtScores"], dtype=np.float64))
        image.append(np.full(d, i, dtype=np.int64))
        matched.append(np.asarray(e["dtMatches"]).reshape(n_t, d) > 0)
        ignored.append(np.asarray(e["dtIgnore"], dtype=bool).reshape(n_t, d))
    if not scores:
        empty = np.zeros((n_t, 0), dtype=bool)
        return ClassMatches(np.zeros(0, dtype=np.int64), empty, empty, n_gt)
    order = np.argsort(-np.concatenate(scores), kind="mergesort")  # pycocotools' order
    m, ign = np.concatenate(matched, axis=1)[:, order], np.concatenate(ignored, axis=1)[:, order]
    return ClassMatches(np.concatenate(image)[order], m & ~ign, ~m & ~ign, n_gt)


def weighted_ap(m: ClassMatches, weights: np.ndarray) -> np.ndarray | None:
    """(T,) COCO AP per IoU threshold with image ``weights`` (I,); None when the class has no ground truth."""
    n_pos = float(np.dot(weights, m.n_gt))
    if n_pos == 0:
        return None
    n_t = m.tp.shape[0]
    if m.image.size == 0:
        return np.zeros(n_t)
    w = weights[m.image]
    tp, fp = np.cumsum(m.tp * w, axis=1), np.cumsum(m.fp * w, axis=1)
    recall = tp / n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # COCO's precision envelope
    # each row's first recall >= each recall point (per row: shifting rows apart would round recalls onto points)
    idx = np.stack([np.searchsorted(recall[t], RECALL_POINTS, side="left") for t in range(n_t)])
    reached = idx < recall.shape[1]
    picked = np.take_along_axis(precision, np.minimum(idx, recall.shape[1] - 1), axis=1)
    return np.where(reached, picked, 0.0).mean(axis=1)


def weighted_map50_95(matches: ImageMatches, weights: np.ndarray | None = None) -> float | None:
    """COCO mAP50-95 (a fraction) with image ``weights`` (default: every image once); None without ground truth."""
    w = np.ones(len(matches.image_ids)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(matches.image_ids),):
        raise ValueError(f"weights: expected shape ({len(matches.image_ids)},), got {w.shape}")
    aps = [ap for ap in (weighted_ap(c, w) for c in matches.classes) if ap is not None]
    return float(np.mean(aps)) if aps else None


def paired_bootstrap(
    a: ImageMatches, b: ImageMatches, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> PairedDelta | None:
    """mAP50-95(a) - mAP50-95(b) with a percentile bootstrap interval over images.

    Both must be matches on the same images. Resamples where either mAP is undefined (no ground truth drawn) are
    skipped; None when the full split or every resample has no ground truth.
    """
    if a.image_ids != b.image_ids:
        raise ValueError("paired_bootstrap: the two variants were evaluated on different images")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence}")
    full_a, full_b = weighted_map50_95(a), weighted_map50_95(b)
    if full_a is None or full_b is None:
        return None
    n = len(a.image_ids)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(resamples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        ma, mb = weighted_map50_95(a, w), weighted_map50_95(b, w)
        if ma is not None and mb is not None:
            deltas.append(ma - mb)
    if not deltas:
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return PairedDelta(full_a - full_b, float(low), float(high), confidence, len(deltas), n)
