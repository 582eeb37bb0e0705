"""A user's ultralytics dataset: safe reading of ``data.yaml``, listing of images and labels, YOLO -> COCO.

``data.yaml`` keys used: ``path`` (optional dataset root; relative to the yaml's folder, else to the working
directory; default: the yaml's folder), ``train``/``val`` (a folder, a ``.txt`` list of images, or a list of
those; relative to the root), ``names`` (list or {index: name}) and ``nc`` (optional, must agree). Labels are
found as ultralytics does: the last ``/images/`` of an image path becomes ``/labels/`` and the suffix ``.txt``.
Every problem raises an :class:`InputError` (file or key, value seen, what was expected) or a
:class:`DataError` naming the label file and line.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.errors import DataError, InputError
from deploy.textio import read_yaml

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SPLITS = ("train", "val")


@dataclass(frozen=True)
class YoloDataset:
    yaml_path: Path
    root: Path  # absolute
    names: tuple[str, ...]
    sources: dict[str, tuple[Path, ...]]  # split -> absolute folders / .txt lists

    def images(self, split: str) -> list[Path]:
        """Sorted absolute image paths of ``split``; InputError if there are none."""
        found: set[Path] = set()
        for src in self.sources[split]:
            found.update(_images_in(src, self.yaml_path, split))
        if not found:
            shown = ", ".join(str(s) for s in self.sources[split])
            raise InputError(
                f"{self.yaml_path}: '{split}' ({shown}) holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                f"point it at a folder of images or a .txt list of image paths"
            )
        return sorted(found)

    def coco_json(self, split: str) -> Path:
        """Where a COCO ground truth for ``split`` would be, next to data.yaml (``annotations/{split}_coco.json``)."""
        return self.root / "annotations" / f"{split}_coco.json"


def read_data_yaml(path: Path | str) -> YoloDataset:
    """Parse and check an ultralytics data.yaml (safe YAML; no code runs, nothing is downloaded)."""
    path = Path(path)
    raw = read_yaml(path, "data.yaml", "expected an ultralytics dataset yaml")
    if not isinstance(raw, dict):
        raise InputError(
            f"data.yaml {str(path)!r}: got a {type(raw).__name__}, expected a mapping with train, val, names"
        )
    root = _root(path, raw.get("path"))
    names = _names(path, raw)
    sources = {split: _sources(path, root, raw, split) for split in SPLITS}
    return YoloDataset(path, root, names, sources)


def absolute(path: Path) -> Path:
    """An absolute, normalised path that keeps symbolic links (BDD100K images are linked, not copied)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _root(path: Path, value: Any) -> Path:
    base = absolute(path).parent
    if value in (None, ""):
        return base
    if not isinstance(value, str):
        raise InputError(f"data.yaml {str(path)!r}: 'path' is {value!r}, expected a folder path")
    given = Path(value).expanduser()
    if given.is_absolute():
        return given
    for candidate in (base / given, Path.cwd() / given):
        if candidate.is_dir():
            return absolute(candidate)
    return absolute(base / given)


def _names(path: Path, raw: dict[str, Any]) -> tuple[str, ...]:
    names = raw.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise InputError(f"data.yaml {str(path)!r}: 'names' keys must be class indices 0..n-1") from None
        if keys != list(range(len(keys))):
            raise InputError(f"data.yaml {str(path)!r}: 'names' keys are {keys}, expected 0..{len(keys) - 1}")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if not isinstance(names, list) or not names or not all(isinstance(n, str | int) for n in names):
        raise InputError(
            f"data.yaml {str(path)!r}: 'names' is {names!r}; expected a list of class names or {{0: name, ...}}"
        )
    nc = raw.get("nc")
    if nc is not None and nc != len(names):
        raise InputError(f"data.yaml {str(path)!r}: nc is {nc!r} but 'names' lists {len(names)} classes")
    return tuple(str(n) for n in names)


def _sources(path: Path, root: Path, raw: dict[str, Any], split: str) -> tuple[Path, ...]:
    value = raw.get(split)
    if value in (None, ""):
        raise InputError(f"data.yaml {str(path)!r}: key '{split}' is missing; expected e.g. {split}: images/{split}")
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"data.yaml {str(path)!r}: '{split}' entry {item!r} is not a path")
        src = Path(item).expanduser()
        src = src if src.is_absolute() else root / src
        if not src.exists():
            raise InputError(f"data.yaml {str(path)!r}: '{split}' points at {str(src)!r}, which does not exist")
        out.append(absolute(src))
    return tuple(out)


def _images_in(src: Path, yaml_path: Path, split: str) -> list[Path]:
    if src.is_dir():
        return [absolute(p) for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if src.suffix.lower() in IMAGE_SUFFIXES:
        return [src]
    if src.suffix.lower() != ".txt":
        raise InputError(f"data.yaml {str(yaml_path)!r}: '{split}' entry {str(src)!r} is neither a folder nor a .txt")
    out = []
    for line in src.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        p = Path(line)
        p = p if p.is_absolute() else (src.parent / p)
        if p.suffix.lower() in IMAGE_SUFFIXES:
            out.append(absolute(p))
    return out


def label_path(image: Path) -> Path:
    """ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_labels(path: Path, nc: int) -> list[tuple[int, float, float, float, float]]:
    """YOLO rows ``(cls, cx, cy, w, h)`` (normalised) of a label file; a polygon row becomes its box.

    A missing file means no objects. DataError naming ``path:line`` for a malformed row.
    """
    if not path.is_file():
        return []
    rows = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable label file ({exc}); expected UTF-8 lines 'class cx cy w h'") from None
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise DataError(f"{path}:{n}: {line.strip()!r} is not numbers; expected 'class cx cy w h'") from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{path}:{n}: {line.strip()!r} holds nan or inf; expected finite 'class cx cy w h'")
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < nc:
            raise DataError(f"{path}:{n}: class {parts[0]} is not an integer in 0..{nc - 1} (data.yaml has {nc})")
        coords = values[1:]
        if len(coords) == 4:
            cx, cy, w, h = coords
        elif len(coords) >= 6 and len(coords) % 2 == 0:  # a segment: x1 y1 x2 y2 ...
            xs, ys = coords[0::2], coords[1::2]
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
        else:
            raise DataError(f"{path}:{n}: {len(parts)} values; expected 'class cx cy w h' or a polygon")
        if not all(-1e-3 <= v <= 1 + 1e-3 for v in coords) or w <= 0 or h <= 0:
            raise DataError(f"{path}:{n}: {line.strip()!r} has coordinates outside [0, 1] or an empty box")
        rows.append((int(cls), cx, cy, w, h))
    return rows


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header (PIL, lazily), InputError naming an unreadable file."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except ImportError:  # pragma: no cover - Pillow comes with the train extra
        import cv2

        img = cv2.imread(str(path))
        if img is None:
            raise InputError(f"image {str(path)!r} cannot be decoded") from None
        return int(img.shape[1]), int(img.shape[0])
    except (OSError, ValueError) as exc:
        raise InputError(f"image {str(path)!r} cannot be read as an image: {exc}") from None


def yolo_to_coco(images: list[Path], names: tuple[str, ...], root: Path | None = None) -> dict[str, Any]:
    """COCO ground truth from YOLO labels. ``file_name`` is relative to ``root`` when below it, else absolute."""
    coco_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, image in enumerate(images, start=1):
        width, height = image_size(image)
        coco_images.append({"id": image_id, "file_name": _rel(image, root), "width": width, "height": height,
                            "attributes": {}})  # fmt: skip
        for cls, cx, cy, w, h in read_labels(label_path(image), len(names)):
            x1, y1 = max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height)
            x2, y2 = min(float(width), (cx + w / 2) * width), min(float(height), (cy + h / 2) * height)
            bw, bh = round(x2 - x1, 3), round(y2 - y1, 3)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": [round(x1, 3), round(y1, 3), bw, bh], "area": round(bw * bh, 3),
                                "iscrowd": 0, "ignore": 0, "attributes": {}})  # fmt: skip
    return {
        "info": {"description": "converted from YOLO labels by edgekd"},
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)],
    }


def _rel(image: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return image.relative_to(root).as_posix()
        except ValueError:
            pass
    return image.as_posix()


def load_coco(path: Path) -> dict[str, Any]:
    """A COCO json as a dict; InputError naming the file when it is unreadable or not COCO-shaped."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"COCO file {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"COCO file {str(path)!r} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"COCO file {str(path)!r}: expected an object with an 'images' list")
    _require_keys(path, data["images"], "images", {"id": int, "file_name": str})
    _require_keys(path, data.get("annotations", []), "annotations", {"image_id": int, "category_id": int})
    return data


def _require_keys(path: Path, entries: Any, section: str, keys: dict[str, type]) -> None:
    """InputError naming the first entry of ``section`` that is not an object with ``keys`` of the given types."""
    want = " and ".join(f"{k!r} ({t.__name__})" for k, t in keys.items())
    if not isinstance(entries, list):
        raise InputError(f"COCO file {str(path)!r}: {section!r} is {type(entries).__name__}, expected a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(f"COCO file {str(path)!r}: {section}[{i}] is {entry!r}, expected an object with {want}")
        for key, kind in keys.items():
            value = entry.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise InputError(
                    f"COCO file {str(path)!r}: {section}[{i}].{key} is {value!r}, expected {kind.__name__} "
                    f"(every entry of {section!r} needs {want})"
                )
