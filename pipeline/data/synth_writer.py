"""Write a synthetic dataset in the edgekd layout (``edgekd data synth`` and the ``data`` stage).

::

    OUT/data.yaml                          ultralytics: train/val relative to it, nc, names
    OUT/images/{train,val}/000001.jpg      JPEG quality 90
    OUT/labels/{train,val}/000001.txt      YOLO ``cls cx cy w h`` (normalised), one line per labelled object
    OUT/annotations/{split}_coco.json      COCO GT: labels + ignore regions (iscrowd=1, ignore=1), attributes
    OUT/annotations/{split}_distractors.json   hard negatives: {"kinds", "distractors": [{id, image_id, bbox, kind}]}
    OUT/dataset.json                       provenance: generator version, seed, size, counts (no timestamps)

Everything is written into a sibling temporary folder that replaces ``OUT`` at the end, so an interrupted run
leaves the previous content (or nothing). The same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import yaml

from deploy.errors import InputError
from pipeline.data.synth import CLASSES, MAX_TRUNCATED, MIN_BOX, MIN_VISIBLE, Frame, render_frame
from pipeline.data.synth_canvas import Workspace
from pipeline.data.synth_distractors import KINDS

GENERATOR = "edgekd.synth"
GENERATOR_VERSION = "1"
JPEG_QUALITY = 90
SPLITS = ("train", "val")
MIN_SIZE, MAX_SIZE = 64, 4096
_MANAGED = ("images", "labels", "annotations", "data.yaml", "dataset.json")

Progress = Callable[[int, int], None]  # (frames done, frames in all)


def parse_size(text: str) -> tuple[int, int]:
    """``"640x384"`` -> (640, 384); InputError naming the value otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise InputError(f"--size: got {text!r}, expected WIDTHxHEIGHT in pixels, e.g. 640x384")
    width, height = int(m.group(1)), int(m.group(2))
    check_size(width, height, "--size")
    return width, height


def check_size(width: int, height: int, what: str = "size") -> None:
    for name, v in (("width", width), ("height", height)):
        if not MIN_SIZE <= v <= MAX_SIZE:
            raise InputError(f"{what}: {name} {v} is out of range; expected {MIN_SIZE}..{MAX_SIZE} pixels")


def check_reach(reach: float) -> None:
    if isinstance(reach, bool) or not isinstance(reach, (int, float)) or not 0.0 < reach <= 1.0:
        raise InputError(
            f"--reach: got {reach!r}, expected a number in (0, 1] (1: road users out to 70 m; 0.3: within ~21 m)"
        )


def check_counts(train: int, val: int) -> None:
    for name, v in (("--train", train), ("--val", val)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name}: got {v!r}, expected a whole number of frames >= 1")


def generate_dataset(
    out: Path,
    *,
    train: int = 800,
    val: int = 200,
    seed: int = 0,
    width: int = 640,
    height: int = 384,
    reach: float = 1.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Render ``train`` + ``val`` frames into ``out`` (new, empty, or an earlier synthetic dataset).

    Returns the provenance written to ``dataset.json``.
    """
    out = Path(os.path.abspath(out))
    check_counts(train, val)
    check_size(width, height)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed: got {seed!r}, expected a whole number >= 0")
    check_reach(reach)
    _check_out(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        total, done = train + val, 0
        splits: dict[str, Any] = {}
        for split, n in (("train", train), ("val", val)):
            splits[split] = _write_split(tmp, split, n, seed, width, height, progress, done, total, reach=reach)
            done += n
        provenance = {
            "generator": GENERATOR,
            "version": GENERATOR_VERSION,
            "seed": seed,
            "size": [width, height],
            "reach": reach,
            "classes": list(CLASSES),
            "distractor_kinds": list(KINDS),
            "jpeg_quality": JPEG_QUALITY,
            "label_rules": {"min_box_px": MIN_BOX, "min_visible": MIN_VISIBLE, "max_truncated": MAX_TRUNCATED},
            "splits": splits,
        }
        data_yaml = {
            "train": "images/train",
            "val": "images/val",
            "nc": len(CLASSES),
            "names": dict(enumerate(CLASSES)),
        }
        (tmp / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False))
        _dump(tmp / "dataset.json", provenance, indent=2)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return provenance


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; expected a folder to create (or an empty one)")
    if out.is_dir() and any(out.iterdir()) and not _is_synth(out):
        raise InputError(
            f"--out {str(out)!r} is a folder that is not empty and holds no synthetic dataset (no dataset.json from "
            f"{GENERATOR}); choose a new or empty folder"
        )


def _is_synth(out: Path) -> bool:
    try:
        return json.loads((out / "dataset.json").read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _install(tmp: Path, out: Path) -> None:
    """Replace the managed entries of ``out`` with ``tmp``'s (``out`` may hold other files only if synthetic)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in _MANAGED:
        old = out / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for entry in sorted(tmp.iterdir()):
        os.replace(entry, out / entry.name)
    tmp.rmdir()


def _write_split(
    root: Path,
    split: str,
    n: int,
    seed: int,
    width: int,
    height: int,
    progress: Progress | None,
    done: int,
    total: int,
    *,
    reach: float,
) -> dict[str, Any]:
    img_dir, lbl_dir, ann_dir = root / "images" / split, root / "labels" / split, root / "annotations"
    for d in (img_dir, lbl_dir, ann_dir):
        d.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    distractors: list[dict[str, Any]] = []
    boxes: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    times: Counter[str] = Counter()
    weathers: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    work = Workspace(width, height)
    for i in range(n):
        frame = render_frame(seed, split, i, width, height, work, reach=reach)
        name, image_id = f"{i + 1:06d}", i + 1
        ok, jpg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
            raise RuntimeError(f"OpenCV could not encode frame {split}/{name}")
        (img_dir / f"{name}.jpg").write_bytes(jpg.tobytes())
        (lbl_dir / f"{name}.txt").write_text(yolo_lines(frame, width, height))
        images.append({"id": image_id, "file_name": f"images/{split}/{name}.jpg", "width": width, "height": height,
                       "attributes": frame.attributes, "camera": frame.camera})  # fmt: skip
        for obj in frame.objects:
            annotations.append(_coco_annotation(len(annotations) + 1, image_id, obj))
            (boxes if obj.labelled else ignored)[CLASSES[obj.class_id]] += 1
        for dis in frame.distractors:
            x1, y1, x2, y2 = dis.box
            distractors.append({"id": len(distractors) + 1, "image_id": image_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "kind": dis.kind, "occluded_fraction": dis.occluded_fraction, "distance": dis.distance})  # fmt: skip
            kinds[dis.kind] += 1
        times[frame.attributes["timeofday"]] += 1
        weathers[frame.attributes["weather"]] += 1
        flags.update(k for k in ("noise", "blur") if frame.attributes[k])
        if progress is not None:
            progress(done + i + 1, total)
    coco = {
        "info": {"description": f"edgekd synthetic road scenes ({split})", "version": GENERATOR_VERSION},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name, "supercategory": "road_user"} for k, name in enumerate(CLASSES)],
    }
    _dump(ann_dir / f"{split}_coco.json", coco)
    _dump(ann_dir / f"{split}_distractors.json", {"kinds": list(KINDS), "distractors": distractors})
    return {
        "images": n,
        "boxes": {c: boxes[c] for c in CLASSES},
        "ignore_regions": {c: ignored[c] for c in CLASSES},
        "distractors": {k: kinds[k] for k in KINDS},
        "timeofday": dict(sorted(times.items())),
        "weather": dict(sorted(weathers.items())),
        "noise": flags["noise"],
        "blur": flags["blur"],
    }


def yolo_lines(frame: Frame, width: int, height: int) -> str:
    """The YOLO label file text of a frame: labelled objects only, ``cls cx cy w h`` normalised to [0, 1]."""
    lines = []
    for obj in frame.objects:
        if obj.labelled:
            x1, y1, x2, y2 = obj.box
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            lines.append(f"{obj.class_id} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n")
    return "".join(lines)


def _coco_annotation(ann_id: int, image_id: int, obj: Any) -> dict[str, Any]:
    x1, y1, x2, y2 = obj.box
    crowd = 0 if obj.labelled else 1
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj.class_id + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": crowd,
        "ignore": crowd,
        "attributes": {
            "occluded": obj.occluded_fraction >= 0.1,
            "occluded_fraction": obj.occluded_fraction,
            "truncated": obj.truncated_fraction >= 0.05,
            "truncated_fraction": obj.truncated_fraction,
            "distance": obj.distance,
            "view": obj.view,
        },
    }


def _dump(path: Path, payload: Any, indent: int | None = None) -> None:
    text = json.dumps(payload, sort_keys=True, indent=indent, separators=(",", ": ") if indent else (",", ":"))
    path.write_text(text + "\n")
