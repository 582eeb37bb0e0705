"""Convert BDD100K (images + per-image JSON folder or det_20 list) into the edgekd dataset layout.

Output (``out``)::

    data.yaml                          ultralytics: train/val relative to it, nc, names
    images/{train,val}/<name>.jpg      symlinks to the absolute source images (copies where links fail)
    labels/{train,val}/<name>.txt      YOLO ``cls cx cy w h`` (normalised); ignore regions are not in them
    annotations/{train,val}_coco.json  COCO GT with ignore regions (iscrowd=1, ignore=1) and attributes
    conversion_report.json             settings, counts and every problem met (file + reason)

Boxes are clipped to the image (size read from the JPEG header); a box under 0.001 px wide or tall after
clipping is dropped and counted. The split is a seeded permutation of the sorted image names. Everything is
written into a sibling temp folder and renamed into place at the end, so a failed run leaves nothing behind.
Category rules: see :mod:`pipeline.data.bdd100k_formats`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deploy.errors import DataError, InputError
from pipeline.data.bdd100k_formats import (
    IMAGE_SUFFIXES,
    PRESET_CLASSES,
    ClassPreset,
    LabelFormatError,
    ParsedFrame,
    clip_box,
    coco_annotation,
    coco_skeleton,
    frames_from_json,
    image_size,
    yolo_line,
)

SCHEMA = "edgekd.bdd100k-conversion/v1"
REPORT_NAME = "conversion_report.json"
SPLITS = ("train", "val")


class ProblemKind(str, Enum):
    UNREADABLE_LABEL = "unreadable_label"
    MALFORMED_LABEL = "malformed_label"
    DUPLICATE_LABEL = "duplicate_label"
    LABEL_WITHOUT_IMAGE = "label_without_image"
    IMAGE_WITHOUT_LABEL = "image_without_label"
    DUPLICATE_IMAGE = "duplicate_image"
    CORRUPT_IMAGE = "corrupt_image"
    BAD_OBJECT = "bad_object"
    UNKNOWN_CATEGORY = "unknown_category"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    file: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "file": self.file, "reason": self.reason}


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion produced; ``as_dict()`` is what ``conversion_report.json`` holds."""

    out: Path
    images_dir: str
    labels: str
    label_formats: tuple[str, ...]
    classes: tuple[str, ...]
    preset: str
    val_fraction: float
    seed: int
    image_mode: str  # "symlink" | "copy"
    images: dict[str, int]  # split -> converted images
    boxes: dict[str, dict[str, int]]  # split -> class -> boxes in the YOLO labels
    ignore_regions: dict[str, dict[str, int]]  # split -> class -> ignore regions (COCO only)
    zero_area: dict[str, int]  # class -> boxes/regions dropped as zero-area after clipping
    dropped_categories: dict[str, int]  # BDD100K category -> objects not in the preset
    skipped_no_box: int  # objects without box2d (lanes, drivable areas)
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "source": {"images": self.images_dir, "labels": self.labels, "label_formats": list(self.label_formats)},
            "settings": {"classes": self.preset, "names": list(self.classes), "val_fraction": self.val_fraction,
                         "seed": self.seed},
            "image_mode": self.image_mode,
            "images": self.images,
            "boxes": self.boxes,
            "ignore_regions": self.ignore_regions,
            "dropped": {"zero_area": self.zero_area, "categories": self.dropped_categories,
                        "no_box2d": self.skipped_no_box},
            "problem_counts": dict(sorted(Counter(p.kind.value for p in self.problems).items())),
            "problems": [p.as_dict() for p in self.problems],
        }  # fmt: skip


@dataclass(frozen=True)
class _Item:
    frame: ParsedFrame
    image: Path
    width: int
    height: int


class _Problems(list[Problem]):
    """Problems met so far; in strict mode the first one raises DataError instead."""

    def __init__(self, strict: bool) -> None:
        super().__init__()
        self.strict = strict

    def add(self, kind: ProblemKind, file: str | Path, reason: str) -> None:
        if self.strict:
            raise DataError(
                f"{file}: {reason} [{kind.value}]. --strict stops at the first problem; nothing was written. "
                "Fix the file, or run without --strict to convert the rest and list every problem in "
                f"{REPORT_NAME}."
            )
        self.append(Problem(kind, str(file), reason))


# ---------------------------------------------------------------- entry point
def convert_bdd100k(
    images: Path,
    labels: Path,
    out: Path,
    *,
    classes: str | ClassPreset = "vru",
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    log: Callable[[str], None] = print,
) -> ConversionReport:
    """Convert BDD100K into the dataset layout at ``out`` (see the module docstring); returns the report.

    Raises InputError for unusable arguments, DataError when fewer than two images can be converted or (with
    ``strict``) at the first problem. ``out`` must be new, empty, or an earlier conversion's output.
    """
    images, labels, out = Path(images), Path(labels), Path(out)
    preset = _preset(classes)
    _check_args(images, labels, out, val_fraction, seed)
    problems = _Problems(strict)
    frames, formats = read_labels(labels, preset, problems)
    files = list_images(images, problems)
    items = _pair(frames, files, images, problems)
    log(f"bdd100k: {len(frames)} labelled image(s) ({', '.join(formats) or 'none'}), {len(files)} image file(s), "
        f"{len(items)} converted, {len(problems)} problem(s)")  # fmt: skip
    if len(items) < 2:
        first = "; ".join(f"{p.file}: {p.reason}" for p in problems[:3])
        raise DataError(
            f"only {len(items)} image(s) of {images} have a usable label in {labels}: need at least 2 for a train "
            f"and a val split. Check that --images and --labels belong together. {len(problems)} problem(s) met"
            + (f", first: {first}" if first else "")
        )
    val = split_names([it.frame.name for it in items], val_fraction, seed)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        report = _write(tmp, items, val, preset, problems, formats, images, labels, val_fraction, seed)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"bdd100k: wrote {out} (train {report.images['train']}, val {report.images['val']} images)")
    return dataclasses.replace(report, out=out)


def _preset(classes: str | ClassPreset) -> ClassPreset:
    try:
        return ClassPreset(classes)
    except ValueError:
        choices = ", ".join(p.value for p in ClassPreset)
        raise InputError(f"--classes: got {classes!r}, expected one of {choices}") from None


def _check_args(images: Path, labels: Path, out: Path, val_fraction: float, seed: int) -> None:
    if not images.is_dir():
        raise InputError(f"--images {str(images)!r} is not a folder; point it at the folder of BDD100K .jpg frames")
    if not labels.exists():
        raise InputError(
            f"--labels {str(labels)!r} does not exist; give the per-image label folder or the det_20 .json file"
        )
    if not (isinstance(val_fraction, (int, float)) and 0.0 < val_fraction < 1.0):
        raise InputError(f"--val-fraction: got {val_fraction!r}, expected a number between 0 and 1 (e.g. 0.2)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed: got {seed!r}, expected an integer >= 0")
    if out.exists() and not _replaceable(out):
        raise InputError(
            f"--out {str(out)!r} exists and is not an earlier `edgekd data bdd100k` output; "
            "choose a new or empty folder, or remove it"
        )


def _replaceable(out: Path) -> bool:
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        return json.loads((out / REPORT_NAME).read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


# ---------------------------------------------------------------- reading
def read_labels(
    labels: Path, preset: ClassPreset, problems: _Problems
) -> tuple[dict[str, ParsedFrame], tuple[str, ...]]:
    """``{image stem: ParsedFrame}`` from a label folder or file, plus the formats seen (sorted)."""
    if labels.is_dir():
        files = sorted(p for p in labels.iterdir() if p.suffix.lower() == ".json" and p.is_file())
        if not files:
            raise InputError(f"--labels folder {str(labels)!r} has no .json files; expected BDD100K label files")
    else:
        files = [labels]
    frames: dict[str, ParsedFrame] = {}
    for path in files:
        for entry in _load_label_file(path, single=not labels.is_dir(), problems=problems, preset=preset):
            if isinstance(entry, tuple):
                problems.add(ProblemKind.MALFORMED_LABEL, entry[0], entry[1])
            elif entry.name in frames:
                problems.add(ProblemKind.DUPLICATE_LABEL, entry.source,
                             f"image {entry.name}: already labelled in {frames[entry.name].source}; first kept")  # fmt: skip
            else:
                frames[entry.name] = entry
                for p in entry.problems:
                    problems.add(ProblemKind(p.kind), entry.source, f"image {entry.name}: {p.reason}")
    return frames, tuple(sorted({f.label_format for f in frames.values()}))


def _load_label_file(path: Path, *, single: bool, problems: _Problems, preset: ClassPreset) -> list[Any]:
    """The entries of one JSON label file; a bad file is a problem (or, when it is the only one, an InputError)."""
    try:
        data = json.loads(path.read_bytes())
        return frames_from_json(data, str(path), preset)
    except OSError as exc:
        kind, reason = ProblemKind.UNREADABLE_LABEL, f"cannot be read: {exc.strerror or exc}"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, LabelFormatError
        kind = ProblemKind.MALFORMED_LABEL
        reason = f"not valid JSON: {exc}" if not isinstance(exc, LabelFormatError) else f"not a BDD100K label: {exc}"
    if single:
        raise InputError(f"--labels {str(path)!r} {reason}; expected a det_20 list or a per-image BDD100K JSON")
    problems.add(kind, path, reason)
    return []


def list_images(images: Path, problems: _Problems) -> dict[str, Path]:
    """``{stem: path}`` of the .jpg/.jpeg/.png files directly in ``images`` (sorted; duplicates are problems)."""
    found: dict[str, Path] = {}
    for name in sorted(os.listdir(images)):
        path = images / name
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if stem in found:
            problems.add(ProblemKind.DUPLICATE_IMAGE, path, f"same name as {found[stem].name}; first kept")
            continue
        found[stem] = path
    if not found:
        raise InputError(f"--images {str(images)!r} has no .jpg/.jpeg/.png files")
    return found


def _pair(frames: dict[str, ParsedFrame], files: dict[str, Path], images: Path, problems: _Problems) -> list[_Item]:
    items = []
    for name in sorted(set(frames) | set(files)):
        if name not in files:
            problems.add(ProblemKind.LABEL_WITHOUT_IMAGE, frames[name].source,
                         f"image {name}: no image file {name}.jpg in {images}; label skipped")  # fmt: skip
        elif name not in frames:
            problems.add(ProblemKind.IMAGE_WITHOUT_LABEL, files[name], "no label for this image; image skipped")
        else:
            try:
                width, height = image_size(files[name])
            except (OSError, ValueError) as exc:
                problems.add(ProblemKind.CORRUPT_IMAGE, files[name], f"unreadable image ({exc}); image skipped")
                continue
            items.append(_Item(frames[name], files[name], width, height))
    return items


def split_names(names: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """The names of the val split: a ``seed``-ed permutation of the sorted names, its first ``round(n*f)``.

    At least one and at most ``n - 1`` names go to val when ``n >= 2``.
    """
    ordered = sorted(names)
    n = len(ordered)
    if n < 2:
        return set()
    n_val = min(max(math.floor(n * val_fraction + 0.5), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return {ordered[int(i)] for i in order[:n_val]}


# ---------------------------------------------------------------- writing
@dataclass
class _Tally:
    """Counts gathered while writing: split -> class -> boxes / ignore regions; class -> zero-area drops."""

    boxes: dict[str, Counter[str]] = field(default_factory=lambda: {s: Counter() for s in SPLITS})
    ignore: dict[str, Counter[str]] = field(default_factory=lambda: {s: Counter() for s in SPLITS})
    zero_area: Counter[str] = field(default_factory=Counter)
    image_mode: str = "symlink"


def _write(tmp: Path, items: list[_Item], val: set[str], preset: ClassPreset, problems: _Problems,
           formats: tuple[str, ...], images: Path, labels: Path, val_fraction: float, seed: int) -> ConversionReport:  # fmt: skip
    names = PRESET_CLASSES[preset]
    tally = _Tally()
    split_of = {it.frame.name: "val" if it.frame.name in val else "train" for it in items}
    for split in SPLITS:
        _write_split(tmp, split, [it for it in items if split_of[it.frame.name] == split], preset, tally)
    data_yaml = {"train": "images/train", "val": "images/val", "nc": len(names), "names": dict(enumerate(names))}
    (tmp / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False), encoding="utf-8")
    dropped: Counter[str] = Counter()
    for item in items:
        dropped.update(item.frame.dropped_categories)
    report = ConversionReport(
        out=tmp, images_dir=str(images), labels=str(labels), label_formats=formats, classes=names,
        preset=preset.value, val_fraction=val_fraction, seed=seed, image_mode=tally.image_mode,
        images={s: sum(v == s for v in split_of.values()) for s in SPLITS},
        boxes={s: _per_class(tally.boxes[s], names) for s in SPLITS},
        ignore_regions={s: _per_class(tally.ignore[s], names) for s in SPLITS},
        zero_area=_per_class(tally.zero_area, names), dropped_categories=dict(sorted(dropped.items())),
        skipped_no_box=sum(it.frame.skipped_no_box for it in items), problems=tuple(problems),
    )  # fmt: skip
    _write_json(tmp / REPORT_NAME, report.as_dict(), indent=2)
    return report


def _write_split(tmp: Path, split: str, items: list[_Item], preset: ClassPreset, tally: _Tally) -> None:
    """Images (links), YOLO label files and the COCO json of one split."""
    names = PRESET_CLASSES[preset]
    (tmp / "images" / split).mkdir(parents=True)
    (tmp / "labels" / split).mkdir(parents=True)
    (tmp / "annotations").mkdir(exist_ok=True)
    coco = coco_skeleton(names, preset)
    for image_id, item in enumerate(items, start=1):
        image_rel = f"images/{split}/{item.image.name}"
        tally.image_mode = _link(item.image, tmp / image_rel, tally.image_mode)
        coco["images"].append({"id": image_id, "file_name": image_rel, "width": item.width, "height": item.height,
                               "attributes": item.frame.attributes})  # fmt: skip
        lines = []
        for box in item.frame.boxes:
            clipped = clip_box(box.xyxy, item.width, item.height)
            if clipped is None:
                tally.zero_area[names[box.class_index]] += 1
                continue
            coco["annotations"].append(coco_annotation(len(coco["annotations"]) + 1, image_id, box, clipped))
            (tally.ignore if box.ignore else tally.boxes)[split][names[box.class_index]] += 1
            if not box.ignore:
                lines.append(yolo_line(box.class_index, clipped, item.width, item.height) + "\n")
        (tmp / "labels" / split / f"{item.image.stem}.txt").write_text("".join(lines), encoding="utf-8")
    _write_json(tmp / "annotations" / f"{split}_coco.json", coco, indent=None)


def _per_class(counter: Counter[str], names: Iterable[str]) -> dict[str, int]:
    return {n: int(counter.get(n, 0)) for n in names}


def _write_json(path: Path, payload: Any, indent: int | None) -> None:
    separators = (",", ": ") if indent else (",", ":")
    text = json.dumps(payload, indent=indent, separators=separators, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def _link(src: Path, dst: Path, mode: str) -> str:
    """Symlink ``dst`` to the absolute ``src`` (never re-encoded); copy the bytes where links fail."""
    if mode == "symlink":
        try:
            os.symlink(src.resolve(), dst)
            return mode
        except OSError:
            mode = "copy"
    shutil.copyfile(src, dst)
    return mode


def _install(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out``, replacing an earlier output only once ``tmp`` is complete."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old)
