"""BDD100K import on the real 1,600-frame mini set, checked against an independent re-count from the raw JSON."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import cv2
import pytest

from pipeline.data.bdd100k import convert_bdd100k

MINI = Path(__file__).resolve().parents[1].parent / "shared/datasets/bdd100k-mini"
pytestmark = [
    pytest.mark.bdd,
    pytest.mark.skipif(not (MINI / "labels").is_dir(), reason=f"BDD100K mini set not found at {MINI}"),
]

# The rules, written out again independently of pipeline.data.bdd100k_formats (per-image category names).
VRU = {"person": "pedestrian", "rider": "rider", "bike": "bicycle", "motor": "motorcycle"}
ALL = {**VRU, "car": "car", "truck": "truck", "bus": "bus", "train": "train", "traffic light": "traffic light",
       "traffic sign": "traffic sign"}  # fmt: skip
WIDTH, HEIGHT = 1280, 720  # every mini-set frame; checked by decoding below


def _expected(label: dict, mapping: dict[str, str]) -> list[tuple[str, float, float, float, float]]:
    """(class, x1, y1, x2, y2) of every box the rules keep in one raw per-image label, clipped."""
    boxes = []
    for frame in label["frames"]:
        for obj in frame["objects"]:
            if "box2d" not in obj or obj["category"] not in mapping:
                continue
            b = obj["box2d"]
            x1, x2 = (min(max(b[k], 0), WIDTH) for k in ("x1", "x2"))
            y1, y2 = (min(max(b[k], 0), HEIGHT) for k in ("y1", "y2"))
            if x2 > x1 and y2 > y1:
                boxes.append((mapping[obj["category"]], x1, y1, x2, y2))
    return boxes


def _close(got: list, want: list, tol: float) -> bool:
    """True when each wanted box has its own got box of the same class with every coordinate within ``tol``."""
    left = list(got)
    for w in want:
        near = (g for g in left if g[0] == w[0] and all(abs(a - b) <= tol for a, b in zip(g[1:], w[1:], strict=True)))
        match = next(near, None)
        if match is None:
            return False
        left.remove(match)
    return not left


@pytest.fixture(scope="module")
def raw() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((MINI / "labels").glob("*.json"))}


def _convert(tmp: Path, classes: str) -> tuple[Path, object, float]:
    start = time.perf_counter()
    report = convert_bdd100k(MINI / "images", MINI / "labels", tmp / classes, classes=classes, log=lambda _: None)
    return tmp / classes, report, time.perf_counter() - start


def _check_against_raw(out: Path, raw: dict[str, dict], names: list[str], mapping: dict[str, str]) -> Counter:
    """Compare every image's YOLO file and COCO annotations with the raw JSON; returns boxes per class."""
    total: Counter = Counter()
    seen: dict[str, str] = {}
    for split in ("train", "val"):
        coco = json.loads((out / "annotations" / f"{split}_coco.json").read_text())
        assert [c["name"] for c in coco["categories"]] == names
        anns: dict[int, list] = {}
        for a in coco["annotations"]:
            anns.setdefault(a["image_id"], []).append(a)
        for im in coco["images"]:
            stem = Path(im["file_name"]).stem
            assert stem not in seen, f"{stem} in both splits"
            seen[stem] = split
            assert (im["width"], im["height"]) == (WIDTH, HEIGHT)
            assert im["attributes"] == raw[stem]["attributes"]
            want = _expected(raw[stem], mapping)
            got_coco = [
                (names[a["category_id"] - 1], a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                 a["bbox"][1] + a["bbox"][3])
                for a in anns.get(im["id"], [])
            ]  # fmt: skip
            assert all(a["iscrowd"] == 0 for a in anns.get(im["id"], []))  # no ignore regions in this format
            assert _close(got_coco, want, 0.002), stem
            got_yolo = []
            for line in (out / "labels" / split / f"{stem}.txt").read_text().splitlines():
                c, *rest = line.split()
                cx, cy, w, h = (float(v) * scale for v, scale in zip(rest, (WIDTH, HEIGHT, WIDTH, HEIGHT), strict=True))
                got_yolo.append((names[int(c)], cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            assert _close(got_yolo, want, 0.01), stem
            total.update(b[0] for b in want)
    assert set(seen) == set(raw) and Counter(seen.values()) == {"train": 1280, "val": 320}
    return total


def test_mini_vru_conversion_matches_an_independent_recount(raw, tmp_path):
    out, report, seconds = _convert(tmp_path, "vru")
    assert seconds < 20, f"conversion took {seconds:.1f} s"
    assert report.problems == () and report.label_formats == ("per-image",)
    total = _check_against_raw(out, raw, ["pedestrian", "rider", "bicycle", "motorcycle"], VRU)
    assert {c: report.boxes["train"][c] + report.boxes["val"][c] for c in total} == dict(total)
    # README: 2,184 person, 174 bike, 108 rider, 76 motor boxes; 2 person boxes have zero area
    raw_counts = Counter(o["category"] for d in raw.values() for f in d["frames"] for o in f["objects"] if "box2d" in o)
    assert (raw_counts["person"], raw_counts["bike"], raw_counts["rider"], raw_counts["motor"]) == (2184, 174, 108, 76)
    assert total["pedestrian"] + report.zero_area["pedestrian"] == 2184
    assert (total["bicycle"], total["rider"], total["motorcycle"]) == (174, 108, 76)
    # the frames really are 1280x720 (decoded at 1/8 scale: cheap, and independent of the header reader)
    for path in sorted((MINI / "images").glob("*.jpg")):
        assert cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8).shape == (HEIGHT // 8, WIDTH // 8), path.name
    assert (out / "images" / "val").is_dir() and "nc: 4" in (out / "data.yaml").read_text()


def test_mini_all_classes_matches_an_independent_recount(raw, tmp_path):
    out, report, _ = _convert(tmp_path, "all")
    names = ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "traffic light",
             "traffic sign"]  # fmt: skip
    total = _check_against_raw(out, raw, names, ALL)
    assert total["car"] > 16000 and report.dropped_categories == {}
    assert sum(report.zero_area.values()) == 17  # the 17 degenerate boxes of the mini set
