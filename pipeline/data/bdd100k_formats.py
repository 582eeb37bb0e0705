"""BDD100K label formats, class presets, output records (YOLO line, COCO entries) and cheap image-size reading.

No torch, no image decoding: sizes come from the JPEG frame header (or PNG IHDR).

Two label formats are read, and told apart per JSON file:

- the 2018 *per-image* files: ``{"name", "attributes", "frames": [{"objects": [...]}]}`` with categories
  ``person, rider, bike, motor, car, bus, truck, train, traffic sign, traffic light`` (lanes and drivable
  areas are ``poly2d`` objects without ``box2d``);
- the *det_20* / Scalabel list: ``[{"name": "x.jpg", "attributes", "labels": [{"id", "category", "box2d",
  "attributes"}]}]`` with categories ``pedestrian, rider, car, truck, bus, train, motorcycle, bicycle,
  traffic light, traffic sign, other person, other vehicle, trailer``. A single Scalabel frame (a dict with
  ``labels``) and a Scalabel export (``{"frames": [...], "config": ...}``) are read too.

Category rules (the same for both formats): per-image names are first renamed to det_20 names
(``person -> pedestrian``, ``bike -> bicycle``, ``motor -> motorcycle``). ``other person``, ``other vehicle``
and ``trailer`` are *ignore regions* (COCO ``iscrowd=1, ignore=1``, never in YOLO labels) of ``pedestrian``, ``car``
and ``truck`` (BDD100K's own ``ignore_mapping``), kept only when that class is in the preset; an object of a kept
class whose attributes say ``crowd`` or ``ignored`` is an ignore region too. Other known categories outside the
preset are dropped (counted); a box whose category no BDD100K release has is a problem (``unknown_category``).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class ClassPreset(str, Enum):
    """Which classes a conversion keeps, in output order (class index = position)."""

    VRU = "vru"
    ALL = "all"


PRESET_CLASSES: dict[ClassPreset, tuple[str, ...]] = {
    ClassPreset.VRU: ("pedestrian", "rider", "bicycle", "motorcycle"),
    ClassPreset.ALL: (
        "pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "traffic light", "traffic sign",
    ),
}  # fmt: skip

# 2018 per-image names -> det_20 names.
RENAME: dict[str, str] = {"person": "pedestrian", "bike": "bicycle", "motor": "motorcycle"}
# det_20 "uncertain" categories -> the class whose ignore region they are.
IGNORE_AS: dict[str, str] = {"other person": "pedestrian", "other vehicle": "car", "trailer": "truck"}
KNOWN_CATEGORIES: frozenset[str] = frozenset(PRESET_CLASSES[ClassPreset.ALL]) | set(RENAME) | set(IGNORE_AS)
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
MIN_SIZE = 1e-3  # px: boxes narrower or shorter than this after clipping count as zero-area


class LabelFormatError(ValueError):
    """A label file or entry does not follow either BDD100K format (the message says how)."""


@dataclass(frozen=True)
class Box:
    """One kept object, in source pixel coordinates (not yet clipped): ``x1 <= x2``, ``y1 <= y2``."""

    class_index: int
    ignore: bool
    xyxy: tuple[float, float, float, float]
    category: str  # the category as written in the label file
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectProblem:
    kind: str  # "bad_object" | "unknown_category"
    reason: str


@dataclass
class ParsedFrame:
    """One image's labels after the category rules: kept boxes plus what was left out and why."""

    name: str  # the image's stem: the key that pairs labels with image files
    source: str  # where it came from: the file, or ``file[index]`` for list entries
    label_format: str  # "per-image" | "det_20"
    attributes: dict[str, Any]
    boxes: list[Box] = field(default_factory=list)
    dropped_categories: Counter[str] = field(default_factory=Counter)
    skipped_no_box: int = 0
    problems: list[ObjectProblem] = field(default_factory=list)


# ---------------------------------------------------------------- names and categories
def image_stem(name: str) -> str:
    """``"a/b/x.jpg" -> "x"``, ``"x" -> "x"``: the key that pairs a label entry with an image file."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in IMAGE_SUFFIXES else base


def category_rule(preset: ClassPreset, category: str) -> tuple[int, bool] | None:
    """``(class_index, is_ignore_region)`` for a BDD100K category under ``preset``, or None to drop it.

    Raises KeyError for a category that no BDD100K release has.
    """
    if category not in KNOWN_CATEGORIES:
        raise KeyError(category)
    classes = PRESET_CLASSES[preset]
    if category in IGNORE_AS:
        target = IGNORE_AS[category]
        return (classes.index(target), True) if target in classes else None
    name = RENAME.get(category, category)
    return (classes.index(name), False) if name in classes else None


# ---------------------------------------------------------------- label files
def frames_from_json(data: Any, source: str, preset: ClassPreset) -> list[ParsedFrame | tuple[str, str]]:
    """Every frame in one loaded JSON file: a ParsedFrame, or ``(source, reason)`` for a malformed entry.

    Raises LabelFormatError when the file as a whole is neither format.
    """
    if isinstance(data, list):
        return [_entry(item, f"{source}[{i}]", preset, None) for i, item in enumerate(data)]
    if not isinstance(data, dict):
        raise LabelFormatError(f"top level is a JSON {type(data).__name__}, expected an object or a list")
    frames = data.get("frames")
    if "name" not in data and isinstance(frames, list) and frames and all(isinstance(f, dict) for f in frames):
        if all("objects" in f for f in frames):
            return [_entry(data, source, preset, Path(source).stem)]  # per-image file without a name: the file's
        if all("name" in f for f in frames):
            return [_entry(item, f"{source}[{i}]", preset, None) for i, item in enumerate(frames)]
    return [_entry(data, source, preset, None)]


def _entry(item: Any, source: str, preset: ClassPreset, default_name: str | None) -> ParsedFrame | tuple[str, str]:
    try:
        return parse_frame(item, source, preset, default_name)
    except LabelFormatError as exc:
        return (source, str(exc))


def parse_frame(item: Any, source: str, preset: ClassPreset, default_name: str | None = None) -> ParsedFrame:
    """One image's label record (either format) -> ParsedFrame. Raises LabelFormatError if malformed."""
    if not isinstance(item, dict):
        raise LabelFormatError(f"entry is a JSON {type(item).__name__}, expected an object with 'name'")
    name = item.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise LabelFormatError(f"'name' is {name!r}, expected the image file name")
    attributes = item.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise LabelFormatError(f"'attributes' is a JSON {type(attributes).__name__}, expected an object")
    if "frames" in item:
        objects, label_format = _per_image_objects(item["frames"]), "per-image"
    else:
        objects, label_format = item.get("labels") or [], "det_20"
        if not isinstance(objects, list):
            raise LabelFormatError(f"'labels' is a JSON {type(objects).__name__}, expected a list")
    frame = ParsedFrame(image_stem(name), source, label_format, dict(attributes))
    for index, obj in enumerate(objects):
        _add_object(frame, index, obj, preset)
    return frame


def _per_image_objects(frames: Any) -> list[Any]:
    if not isinstance(frames, list) or len(frames) > 1:
        count = len(frames) if isinstance(frames, list) else type(frames).__name__
        raise LabelFormatError(f"'frames' is {count}, expected a list of one frame (per-image format)")
    if not frames:
        return []
    if not isinstance(frames[0], dict):
        raise LabelFormatError(f"frames[0] is a JSON {type(frames[0]).__name__}, expected an object with 'objects'")
    objects = frames[0].get("objects") or []
    if not isinstance(objects, list):
        raise LabelFormatError(f"frames[0].objects is a JSON {type(objects).__name__}, expected a list")
    return objects


def _add_object(frame: ParsedFrame, index: int, obj: Any, preset: ClassPreset) -> None:
    """Apply the category rules to one object; record a box, a drop, a skip or a problem in ``frame``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("category"), str):
        frame.problems.append(ObjectProblem("bad_object", f"object {index}: expected an object with a 'category'"))
        return
    category, where = obj["category"], f"object {index} (id {obj.get('id')!r}, {obj['category']!r})"
    if obj.get("box2d") is None:
        frame.skipped_no_box += 1  # lanes, drivable areas (poly2d)
        return
    try:
        rule = category_rule(preset, category)
    except KeyError:
        frame.problems.append(ObjectProblem("unknown_category", f"{where}: not a BDD100K box category, dropped"))
        return
    if rule is None:
        frame.dropped_categories[category] += 1
        return
    attributes = obj.get("attributes") or {}
    try:
        xyxy = _box2d(obj["box2d"])
        if not isinstance(attributes, dict):
            raise LabelFormatError(f"'attributes' is a JSON {type(attributes).__name__}, expected an object")
    except LabelFormatError as exc:
        frame.problems.append(ObjectProblem("bad_object", f"{where}: {exc}"))
        return
    ignore = rule[1] or bool(attributes.get("crowd")) or bool(attributes.get("ignored"))
    frame.boxes.append(Box(rule[0], ignore, xyxy, category, dict(attributes)))


def _box2d(box: Any) -> tuple[float, float, float, float]:
    if not isinstance(box, dict):
        raise LabelFormatError(f"box2d is a JSON {type(box).__name__}, expected {{x1, y1, x2, y2}}")
    values = []
    for key in ("x1", "y1", "x2", "y2"):
        v = box.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise LabelFormatError(f"box2d.{key} is {v!r}, expected a finite number of pixels")
        values.append(float(v))
    x1, y1, x2, y2 = values
    if x2 < x1 or y2 < y1:
        raise LabelFormatError(f"box2d is inverted (x1={x1}, y1={y1}, x2={x2}, y2={y2}), expected x1<=x2 and y1<=y2")
    return x1, y1, x2, y2


# ---------------------------------------------------------------- output records
def clip_box(xyxy: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...] | None:
    """``xyxy`` clipped to a ``width`` x ``height`` image, or None when under MIN_SIZE wide or tall."""
    x1, x2 = (min(max(v, 0.0), float(width)) for v in xyxy[0::2])
    y1, y2 = (min(max(v, 0.0), float(height)) for v in xyxy[1::2])
    if x2 - x1 < MIN_SIZE or y2 - y1 < MIN_SIZE:
        return None
    return x1, y1, x2, y2


def yolo_line(class_index: int, xyxy: Sequence[float], width: int, height: int) -> str:
    x1, y1, x2, y2 = xyxy
    cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
    return f"{class_index} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def coco_skeleton(names: Sequence[str], preset: ClassPreset) -> dict[str, Any]:
    return {
        "info": {
            "description": f"BDD100K converted by edgekd (classes: {preset.value})",
            "version": "edgekd.bdd100k/v1",
        },
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
    }


def coco_annotation(ann_id: int, image_id: int, box: Box, xyxy: Sequence[float]) -> dict[str, Any]:
    x1, y1, x2, y2 = xyxy
    w, h = x2 - x1, y2 - y1
    return {
        "id": ann_id, "image_id": image_id, "category_id": box.class_index + 1,
        "bbox": [round(x1, 3), round(y1, 3), round(w, 3), round(h, 3)], "area": round(w * h, 3),
        "iscrowd": int(box.ignore), "ignore": int(box.ignore), "attributes": box.attributes,
        "source_category": box.category,
    }  # fmt: skip


# ---------------------------------------------------------------- image headers
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TAIL_BYTES = 4096  # a complete JPEG has its end-of-image marker in here (padding after it allowed)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from a JPEG's frame header or a PNG's IHDR, reading only a few bytes.

    Raises ValueError saying why when the file is not a readable, complete JPEG/PNG (truncated files are
    caught by their missing end marker). Never decodes pixels.
    """
    with open(path, "rb") as fh:
        head = fh.read(8)
        if head[:2] == b"\xff\xd8":
            size = _jpeg_size(fh)
            end = b"\xff\xd9"
        elif head == _PNG_SIGNATURE:
            size = _png_size(fh)
            end = b"IEND\xaeB`\x82"
        else:
            raise ValueError("not a JPEG or PNG file (unknown signature)" if head else "empty file")
        total = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, total - _TAIL_BYTES))
        if end not in fh.read():
            raise ValueError("truncated: no end-of-image marker")
    return size


def _jpeg_size(fh: Any) -> tuple[int, int]:
    fh.seek(2)
    while True:
        marker = fh.read(2)
        if len(marker) < 2:
            raise ValueError("truncated before the frame header")
        if marker[0] != 0xFF:
            raise ValueError(f"corrupt JPEG: expected a marker at byte {fh.tell() - 2}")
        code = marker[1]
        if code == 0xFF:  # fill byte
            fh.seek(-1, os.SEEK_CUR)
            continue
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        if code in (0xD9, 0xDA):
            raise ValueError("corrupt JPEG: no frame header before the image data")
        length_bytes = fh.read(2)
        length = int.from_bytes(length_bytes, "big") if len(length_bytes) == 2 else 0
        if length < 2:
            raise ValueError("corrupt JPEG: bad segment length")
        if code in _JPEG_SOF:
            body = fh.read(5)
            if len(body) < 5:
                raise ValueError("truncated frame header")
            height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
            if width == 0 or height == 0:
                raise ValueError(f"corrupt JPEG: frame header says {width}x{height}")
            return width, height
        fh.seek(length - 2, os.SEEK_CUR)


def _png_size(fh: Any) -> tuple[int, int]:
    chunk = fh.read(16)
    if len(chunk) < 16 or chunk[4:8] != b"IHDR":
        raise ValueError("corrupt PNG: no IHDR chunk")
    width, height = int.from_bytes(chunk[8:12], "big"), int.from_bytes(chunk[12:16], "big")
    if width == 0 or height == 0:
        raise ValueError(f"corrupt PNG: header says {width}x{height}")
    return width, height
