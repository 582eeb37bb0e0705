"""Calibration sets for INT8 quantization: a reproducible, stratified sample of TRAINING images.

A manifest (``edgekd data calib``, the ``calib`` stage) is JSON::

    {"schema": "edgekd.calibration/v1", "data": <data.yaml as given>, "root": <absolute dataset folder>,
     "root_relative": <the same, relative to the manifest's folder>, "n", "requested", "seed", "rule", "source",
     "strata": {"<timeofday>|<weather>|<class>": {"available", "selected"}}, "classes": {name: images},
     "images": [{"path": <relative to root, or absolute>, "sha256"}]}

Strata are time of day x weather (from ``annotations/train_coco.json`` when present; ``any`` otherwise) x the
rarest class present in the image (``background`` if none). :func:`load_manifest` returns the image paths after
checking every checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deploy.errors import InputError, IntegrityError
from pipeline.data.yolo import YoloDataset, absolute, label_path, load_coco, read_data_yaml, read_labels

SCHEMA = "edgekd.calibration/v1"
DEFAULT_N = 300
WARN_BELOW = 100
RULE = (
    "stratified by timeofday x weather x rarest class present; largest-remainder allocation proportional to stratum "
    "size with at least one image per stratum when n allows; uniform without replacement inside a stratum "
    "(numpy default_rng(seed), strata in sorted order); then every class present in the training split is "
    "guaranteed at least one image"
)


@dataclass(frozen=True)
class _Item:
    path: Path  # absolute
    stratum: str
    classes: frozenset[int]


def build_manifest(
    data_yaml: Path | str,
    n: int = DEFAULT_N,
    seed: int = 0,
    *,
    manifest_dir: Path | None = None,
    data_label: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """(manifest, warnings) for ``n`` training images of the dataset described by ``data_yaml``.

    ``manifest_dir`` (where the manifest will live) sets ``root_relative``; ``data_label`` is what ``data`` records
    (default: ``data_yaml`` as given). Every chosen image is read, hashed and decoded: InputError naming a file
    that is missing or corrupt.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--n: got {n!r}, expected a whole number of images >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed: got {seed!r}, expected a whole number >= 0")
    ds = read_data_yaml(data_yaml)
    items, source = _training_items(ds)
    warnings = []
    if len(items) < n:
        warnings.append(f"the training split has only {len(items)} image(s), fewer than n={n}: taking all of them")
    chosen = select(items, n, seed)
    if len(chosen) < WARN_BELOW:
        warnings.append(
            f"calibrating on {len(chosen)} image(s), fewer than {WARN_BELOW}: INT8 ranges from so few images are "
            f"noisy; use {DEFAULT_N} where the dataset allows"
        )
    available = Counter(it.stratum for it in items)
    selected = Counter(it.stratum for it in chosen)
    root = ds.root
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "data": data_label if data_label is not None else str(data_yaml),
        "root": str(root),
        "n": len(chosen),
        "requested": n,
        "seed": seed,
        "rule": RULE,
        "source": source,
        "strata": {k: {"available": available[k], "selected": selected[k]} for k in sorted(available)},
        "classes": {name: sum(c in it.classes for it in chosen) for c, name in enumerate(ds.names)},
        "images": [{"path": _rel(it.path, root), "sha256": _checked_sha256(it.path)} for it in chosen],
    }
    if manifest_dir is not None:
        manifest["root_relative"] = Path(os.path.relpath(root, absolute(Path(manifest_dir)))).as_posix()
    return manifest, warnings


def write_manifest(manifest: dict[str, Any], out: Path) -> None:
    out = Path(out)
    if out.is_dir():
        raise InputError(
            f"--out {str(out)!r} is a folder; expected a .json file path, e.g. calibration_data/synth.json"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def load_manifest(path: Path | str) -> list[Path]:
    """The manifest's image paths (absolute), after verifying each file's sha256 (IntegrityError naming it)."""
    from deploy.textio import read_json

    path = Path(path)
    data = read_json(path, "calibration manifest", "create one with `edgekd data calib`")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("images"), list):
        raise InputError(f"calibration manifest {str(path)!r}: expected schema {SCHEMA!r} with an 'images' list")
    base = _manifest_root(path, data)
    out = []
    for entry in data["images"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or "sha256" not in entry:
            raise InputError(f"calibration manifest {str(path)!r}: bad image entry {entry!r}")
        image = Path(entry["path"])
        image = image if image.is_absolute() else base / image
        try:
            digest = _sha256(image.read_bytes())
        except OSError:
            raise IntegrityError(
                f"calibration image {str(image)} (listed in {path}) is missing or unreadable"
            ) from None
        if digest != entry["sha256"]:
            raise IntegrityError(
                f"calibration image {str(image)} changed since {path} was written (sha256 {digest[:12]}..., recorded "
                f"{str(entry['sha256'])[:12]}...); restore it or rebuild the manifest with `edgekd data calib`"
            )
        out.append(image)
    return out


def _manifest_root(path: Path, data: dict[str, Any]) -> Path:
    rel = data.get("root_relative")
    if isinstance(rel, str) and (path.parent / rel).is_dir():
        return absolute(path.parent / rel)
    return Path(str(data.get("root", path.parent)))


# ---------------------------------------------------------------------------------------------- sampling
def select(items: list[_Item], n: int, seed: int) -> list[_Item]:
    """The stratified sample (sorted by path); all items when there are at most ``n``."""
    if len(items) <= n:
        return sorted(items, key=lambda it: it.path)
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[_Item]] = {}
    for it in sorted(items, key=lambda it: it.path):
        by_stratum.setdefault(it.stratum, []).append(it)
    quota = allocate({k: len(v) for k, v in by_stratum.items()}, n)
    chosen: list[_Item] = []
    for key in sorted(by_stratum):
        group = by_stratum[key]
        order = rng.permutation(len(group))[: quota[key]]
        chosen.extend(group[i] for i in sorted(order))
    chosen = _cover_classes(items, chosen, rng)
    return sorted(chosen, key=lambda it: it.path)


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over strata of ``sizes``: at least 1 each when n allows, the rest by largest remainder."""
    keys = sorted(sizes)
    if n >= sum(sizes.values()):
        return dict(sizes)
    base = {k: 1 if n >= len(keys) and sizes[k] > 0 else 0 for k in keys}
    left = n - sum(base.values())
    room = {k: sizes[k] - base[k] for k in keys}
    total = sum(room.values())
    shares = {k: left * room[k] / total if total else 0.0 for k in keys}
    alloc = {k: base[k] + int(shares[k]) for k in keys}
    rest = n - sum(alloc.values())
    by_remainder = sorted(keys, key=lambda k: (-(shares[k] - int(shares[k])), k))
    for k in by_remainder:
        if rest <= 0:
            break
        if alloc[k] < sizes[k]:
            alloc[k] += 1
            rest -= 1
    return alloc


def _cover_classes(items: list[_Item], chosen: list[_Item], rng: np.random.Generator) -> list[_Item]:
    """Swap images in so that every class present in ``items`` appears at least once in the sample."""
    present = set().union(*(it.classes for it in items)) if items else set()
    chosen = list(chosen)
    for cls in sorted(present):
        if any(cls in it.classes for it in chosen):
            continue
        taken = {it.path for it in chosen}
        candidates = sorted((it for it in items if cls in it.classes and it.path not in taken), key=lambda it: it.path)
        incoming = candidates[int(rng.integers(len(candidates)))]
        per_stratum = Counter(it.stratum for it in chosen)
        for out in sorted(chosen, key=lambda it: (-per_stratum[it.stratum], str(it.path))):
            others = [it for it in chosen if it is not out] + [incoming]
            if all(any(c in it.classes for it in others) for c in out.classes):
                chosen.remove(out)
                chosen.append(incoming)
                break
    return chosen


def _training_items(ds: YoloDataset) -> tuple[list[_Item], str]:
    """Training images with their stratum, from the COCO json when there is one, else from YOLO labels."""
    coco_path = ds.coco_json("train")
    if coco_path.is_file():
        coco = load_coco(coco_path)
        classes: dict[int, set[int]] = {}
        for ann in coco.get("annotations", []):
            if not ann.get("iscrowd") and not ann.get("ignore"):
                classes.setdefault(ann["image_id"], set()).add(int(ann["category_id"]) - 1)
        freq = Counter(c for cs in classes.values() for c in cs)
        items = []
        for img in coco["images"]:
            attrs = img.get("attributes") or {}
            found = frozenset(classes.get(img["id"], set()))
            key = _stratum(str(attrs.get("timeofday", "any")), str(attrs.get("weather", "any")), found, freq, ds.names)
            items.append(_Item(absolute(ds.root / img["file_name"]), key, found))
        return items, coco_path.relative_to(ds.root).as_posix()
    images = ds.images("train")
    labels = {p: frozenset(r[0] for r in read_labels(label_path(p), len(ds.names))) for p in images}
    freq = Counter(c for cs in labels.values() for c in cs)
    return [_Item(p, _stratum("any", "any", cs, freq, ds.names), cs) for p, cs in labels.items()], "yolo labels"


def _stratum(tod: str, weather: str, classes: frozenset[int], freq: Counter[int], names: tuple[str, ...]) -> str:
    if classes:
        rarest = min(classes, key=lambda c: (freq[c], c))
        name = names[rarest] if 0 <= rarest < len(names) else str(rarest)
    else:
        name = "background"
    return f"{tod}|{weather}|{name}"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked_sha256(path: Path) -> str:
    """sha256 of an image after checking that it exists and decodes (a truncated JPEG is corrupt too)."""
    try:
        data = path.read_bytes()
    except OSError:
        raise InputError(f"calibration image {str(path)!r} is missing or unreadable; check the dataset") from None
    truncated = data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:]
    if truncated or cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
        raise InputError(f"calibration image {str(path)!r} is corrupt (it cannot be decoded); fix or remove it")
    return _sha256(data)
