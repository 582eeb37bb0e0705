"""Read and validate COCO ground truth and COCO detection results into flat numpy arrays.

Every problem with a user file is an :class:`~deploy.errors.InputError` (exit code 2) that names the file, the
offending entry, the value seen, what was expected and how to fix it. Nothing here mutates the caller's objects.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import InputError


@dataclass(frozen=True)
class GroundTruth:
    """COCO ground truth as parallel arrays.

    Attributes:
        image_ids: (I,) int64 COCO image ids, in file order; detections refer to images by index into it.
        image_attrs: I dicts, each image's ``attributes`` (``{}`` when absent).
        categories: ``{category_id: name}`` ordered by id.
        xyxy: (A, 4) float64 boxes ``x1, y1, x2, y2`` in pixels.
        image: (A,) int64 index into ``image_ids``.
        category: (A,) int64 category id.
        ignore: (A,) bool, True for ignore regions (``iscrowd`` or ``ignore`` set).
        coco: a normalised copy of the file for faster-coco-eval (annotation ids renumbered 1..A, ``area`` and
            ``iscrowd`` filled in when absent; ``iscrowd`` semantics unchanged, as in pycocotools).
        source: the file name (or a label) used in messages.
    """

    image_ids: np.ndarray
    image_attrs: list[dict[str, Any]]
    categories: dict[int, str]
    xyxy: np.ndarray
    image: np.ndarray
    category: np.ndarray
    ignore: np.ndarray
    coco: dict[str, Any] = field(repr=False)
    source: str = "ground truth"

    @property
    def n_images(self) -> int:
        return int(self.image_ids.shape[0])

    @property
    def height(self) -> np.ndarray:
        """(A,) box heights in pixels."""
        return self.xyxy[:, 3] - self.xyxy[:, 1]


@dataclass(frozen=True)
class DetectionSet:
    """COCO detection results as parallel arrays.

    Attributes:
        xyxy: (N, 4) float64 boxes.
        score: (N,) float64 confidences.
        image: (N,) int64 index into :attr:`GroundTruth.image_ids`.
        category: (N,) int64 category id.
        records: the N results as clean COCO dicts (``image_id, category_id, bbox, score``) for faster-coco-eval.
    """

    xyxy: np.ndarray
    score: np.ndarray
    image: np.ndarray
    category: np.ndarray
    records: list[dict[str, Any]] = field(repr=False)

    def __len__(self) -> int:
        return int(self.score.shape[0])


def load_json(path: Path | str, what: str) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is an InputError naming it."""
    from deploy.textio import read_json

    return read_json(path, what, "expected a COCO JSON file")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bbox(value: Any, where: str, source: str) -> list[float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 4
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise InputError(
            f"{source}: {where}: bbox is {_short(value)}, expected [x, y, width, height] (4 finite numbers)"
        )
    if value[2] < 0 or value[3] < 0:
        raise InputError(f"{source}: {where}: bbox {list(value)} has a negative width or height; expected w, h >= 0")
    return [float(v) for v in value]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _require(obj: dict, key: str, where: str, source: str, expected: str) -> Any:
    if key not in obj:
        raise InputError(f"{source}: {where} has no {key!r} key; expected {expected}")
    return obj[key]


def _list_of_dicts(obj: dict, key: str, source: str) -> list[dict]:
    value = _require(obj, key, "the top-level object", source, f"a list under {key!r} (COCO format)")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(f"{source}: {key!r} is {type(value).__name__}, expected a list of objects (COCO format)")
    return value


def parse_ground_truth(obj: Any, source: str = "ground truth") -> GroundTruth:
    """Validate a COCO ground-truth dict and flatten it (see :class:`GroundTruth`)."""
    if not isinstance(obj, dict):
        raise InputError(
            f"{source}: top level is {type(obj).__name__}, expected a COCO object with images/annotations/categories"
        )
    images = _list_of_dicts(obj, "images", source)
    anns = _list_of_dicts(obj, "annotations", source)
    cats = _list_of_dicts(obj, "categories", source)
    if not images:
        raise InputError(
            f"{source}: 'images' is empty; expected at least one image (false alarms are counted per image)"
        )
    if not cats:
        raise InputError(f"{source}: 'categories' is empty; expected the evaluated classes as [{{'id', 'name'}}, ...]")
    image_index = _image_index(images, source)
    categories = _categories(cats, source)
    boxes, img_idx, cat_ids, ignore, clean = [], [], [], [], []
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        iid, cid, (x, y, w, h), area = _annotation(ann, where, source, image_index, categories)
        crowd = bool(ann.get("iscrowd", 0))
        boxes.append((x, y, x + w, y + h))
        img_idx.append(image_index[iid])
        cat_ids.append(cid)
        ignore.append(crowd or bool(ann.get("ignore", 0)))
        clean.append({**ann, "id": i + 1, "bbox": [x, y, w, h], "area": area, "iscrowd": int(crowd)})
    coco = {
        "images": [dict(img) for img in images],
        "annotations": clean,
        "categories": [{"id": c, "name": n} for c, n in sorted(categories.items())],
    }
    return GroundTruth(
        image_ids=np.asarray(list(image_index), dtype=np.int64),
        image_attrs=[dict(img.get("attributes", {})) for img in images],
        categories=dict(sorted(categories.items())),
        xyxy=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        image=np.asarray(img_idx, dtype=np.int64),
        category=np.asarray(cat_ids, dtype=np.int64),
        ignore=np.asarray(ignore, dtype=bool),
        coco=coco,
        source=source,
    )


def _image_index(images: list[dict[str, Any]], source: str) -> dict[int, int]:
    """image id -> position in 'images'; ids unique integers, ``attributes`` (when present) an object."""
    image_index: dict[int, int] = {}
    for i, img in enumerate(images):
        iid = _require(img, "id", f"images[{i}]", source, "an integer image id")
        if not _is_int(iid) or iid in image_index:
            raise InputError(
                f"{source}: images[{i}]: id {_short(iid)} is not a unique integer; give every image its own integer id"
            )
        image_index[iid] = i
        attrs = img.get("attributes", {})
        if not isinstance(attrs, dict):
            raise InputError(
                f'{source}: images[{i}]: attributes is {_short(attrs)}, expected an object such as {{"timeofday": "night"}}'
            )
    return image_index


def _categories(cats: list[dict[str, Any]], source: str) -> dict[int, str]:
    """category id -> name; ids unique integers, names unique strings."""
    categories: dict[int, str] = {}
    for i, cat in enumerate(cats):
        cid = _require(cat, "id", f"categories[{i}]", source, "an integer category id")
        name = _require(cat, "name", f"categories[{i}]", source, "a class name")
        if not _is_int(cid) or cid in categories:
            raise InputError(f"{source}: categories[{i}]: id {_short(cid)} is not a unique integer")
        if not isinstance(name, str) or name in categories.values():
            raise InputError(
                f"{source}: categories[{i}]: name {_short(name)} is not a unique string; class names key the results"
            )
        categories[cid] = name
    return categories


def _annotation(
    ann: dict[str, Any], where: str, source: str, image_index: dict[int, int], categories: dict[int, str]
) -> tuple[int, int, tuple[float, float, float, float], float]:
    """One annotation checked: (image id, category id, (x, y, w, h), area); ``area`` defaults to w * h."""
    iid = _require(ann, "image_id", where, source, "the id of an image in 'images'")
    cid = _require(ann, "category_id", where, source, "the id of a category in 'categories'")
    if not _is_int(iid) or iid not in image_index:
        raise InputError(
            f"{source}: {where}: image_id {_short(iid)} is not an id in 'images'; add the image or fix the id"
        )
    if not _is_int(cid) or cid not in categories:
        raise InputError(
            f"{source}: {where}: category_id {_short(cid)} is not an id in 'categories' ({sorted(categories)})"
        )
    x, y, w, h = _bbox(_require(ann, "bbox", where, source, "[x, y, width, height]"), where, source)
    area = ann.get("area", w * h)
    if not isinstance(area, (int, float)) or isinstance(area, bool) or not math.isfinite(area):
        raise InputError(f"{source}: {where}: area is {_short(area)}, expected a finite number")
    return iid, cid, (x, y, w, h), float(area)


def parse_detections(obj: Any, gt: GroundTruth, source: str = "detections") -> DetectionSet:
    """Validate COCO results (a list of ``{image_id, category_id, bbox, score}``) against ``gt``."""
    if isinstance(obj, dict) and isinstance(obj.get("annotations"), list):
        obj = obj["annotations"]
    if not isinstance(obj, list):
        raise InputError(
            f"{source}: top level is {type(obj).__name__}, expected a COCO results list "
            '[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]'
        )
    fast = _fast_detections(obj, gt)
    if fast is not None:
        return fast
    image_index = {int(iid): i for i, iid in enumerate(gt.image_ids)}
    boxes, scores, img_idx, cat_ids, records = [], [], [], [], []
    for i, det in enumerate(obj):  # slow path: finds the first bad entry and says what is wrong with it
        where = f"detection [{i}]"
        if not isinstance(det, dict):
            raise InputError(
                f"{source}: {where} is {_short(det)}, expected an object with image_id, category_id, bbox, score"
            )
        iid = _require(det, "image_id", where, source, "the id of a ground-truth image")
        cid = _require(det, "category_id", where, source, "a ground-truth category id")
        score = _require(det, "score", where, source, "a confidence score")
        if not _is_int(iid) or iid not in image_index:
            raise InputError(
                f"{source}: {where}: image_id {_short(iid)} is not an image of the ground truth {gt.source!r}; "
                "use the ground truth these detections were made on"
            )
        if not _is_int(cid) or cid not in gt.categories:
            raise InputError(
                f"{source}: {where}: category_id {_short(cid)} is not a category of the ground truth {gt.source!r} "
                f"(ids {sorted(gt.categories)}); map the detector's classes to the ground-truth category ids"
            )
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise InputError(f"{source}: {where}: score is {_short(score)}, expected a finite number")
        x, y, w, h = _bbox(_require(det, "bbox", where, source, "[x, y, width, height]"), where, source)
        boxes.append((x, y, x + w, y + h))
        scores.append(float(score))
        img_idx.append(image_index[iid])
        cat_ids.append(cid)
        records.append({"image_id": iid, "category_id": cid, "bbox": [x, y, w, h], "score": float(score)})
    return DetectionSet(
        xyxy=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        score=np.asarray(scores, dtype=np.float64),
        image=np.asarray(img_idx, dtype=np.int64),
        category=np.asarray(cat_ids, dtype=np.int64),
        records=records,
    )


_NUMBER = {int, float}


def _fast_detections(obj: list, gt: GroundTruth) -> DetectionSet | None:
    """Vectorised parse of a well-formed results list; None when anything is off (the slow path then explains)."""
    try:
        iids = [d["image_id"] for d in obj]
        cids = [d["category_id"] for d in obj]
        scores = [d["score"] for d in obj]
        bboxes = [d["bbox"] for d in obj]
    except (TypeError, KeyError):
        return None
    if not obj:
        return DetectionSet(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    ok = {type(v) for v in iids} <= {int} and {type(v) for v in cids} <= {int} and {type(v) for v in scores} <= _NUMBER
    ok = ok and {type(b) for b in bboxes} <= {list, tuple} and all(len(b) == 4 for b in bboxes)
    if not ok or not {type(v) for b in bboxes for v in b} <= _NUMBER:
        return None
    box = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    score = np.asarray(scores, dtype=np.float64)
    img_arr, cat_arr = np.asarray(iids, dtype=np.int64), np.asarray(cids, dtype=np.int64)
    order = np.argsort(gt.image_ids, kind="stable")
    pos = np.clip(np.searchsorted(gt.image_ids[order], img_arr), 0, len(order) - 1)
    image = order[pos]
    ok = bool(np.isfinite(box).all() and np.isfinite(score).all() and (box[:, 2:] >= 0).all())
    ok = ok and bool((gt.image_ids[image] == img_arr).all()) and bool(np.isin(cat_arr, list(gt.categories)).all())
    if not ok:
        return None
    records = [
        {"image_id": i, "category_id": c, "bbox": b, "score": sc}
        for i, c, b, sc in zip(iids, cids, box.tolist(), score.tolist(), strict=True)
    ]
    xyxy = box.copy()
    xyxy[:, 2:] += xyxy[:, :2]
    return DetectionSet(xyxy=xyxy, score=score, image=image.astype(np.int64), category=cat_arr, records=records)


@dataclass(frozen=True)
class Distractors:
    """Distractor objects (synthetic data): (K, 4) float64 ``xyxy``, (K,) ``image`` index, K ``kinds``."""

    xyxy: np.ndarray
    image: np.ndarray
    kind: list[str]
    kinds: list[str]


def parse_distractors(obj: Any, gt: GroundTruth, source: str = "distractors") -> Distractors:
    """Validate ``{"kinds": [...], "distractors": [{"id", "image_id", "bbox", "kind"}]}`` against ``gt``."""
    if not isinstance(obj, dict):
        raise InputError(
            f'{source}: top level is {type(obj).__name__}, expected {{"kinds": [...], "distractors": [...]}}'
        )
    items = _list_of_dicts(obj, "distractors", source)
    image_index = {int(iid): i for i, iid in enumerate(gt.image_ids)}
    boxes, img_idx, kinds = [], [], []
    for i, item in enumerate(items):
        where = f"distractors[{i}]"
        iid = _require(item, "image_id", where, source, "the id of a ground-truth image")
        kind = _require(item, "kind", where, source, "a distractor kind such as 'pole'")
        if not _is_int(iid) or iid not in image_index:
            raise InputError(
                f"{source}: {where}: image_id {_short(iid)} is not an image of the ground truth {gt.source!r}"
            )
        if not isinstance(kind, str):
            raise InputError(f"{source}: {where}: kind is {_short(kind)}, expected a string")
        x, y, w, h = _bbox(_require(item, "bbox", where, source, "[x, y, width, height]"), where, source)
        boxes.append((x, y, x + w, y + h))
        img_idx.append(image_index[iid])
        kinds.append(kind)
    declared = obj.get("kinds", [])
    if not isinstance(declared, list) or not all(isinstance(k, str) for k in declared):
        raise InputError(f"{source}: 'kinds' is {_short(declared)}, expected a list of strings")
    all_kinds = list(dict.fromkeys([*declared, *sorted(set(kinds))]))
    return Distractors(
        xyxy=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        image=np.asarray(img_idx, dtype=np.int64),
        kind=kinds,
        kinds=all_kinds,
    )
