"""deploy.metrics against independent references.

- A second, deliberately plain implementation of the Caltech protocol (loops over dicts, no numpy) must agree with
  deploy.metrics within 1e-3 on LAMR, and on precision, recall and FPPI at the operating point; the same for D-ECE.
- mAP50 / mAP50-95 must equal pycocotools' within 1e-3 on real BDD100K-mini labels with perturbed detections and
  added ignore regions.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import random
import time
from pathlib import Path

import pytest
from _coco_scenes import random_case

from deploy.metrics.evaluate import EvalOptions, evaluate

BDD = Path(__file__).resolve().parents[1].parent / "shared/datasets/bdd100k-mini"
BDD_CLASSES = {"person": "pedestrian", "rider": "rider", "bike": "bicycle", "motor": "motorcycle"}


# ------------------------------------------------------------------------------ the plain reference (loops only)
def ref_iou(a: list[float], b: list[float]) -> float:
    """IoU of two [x, y, w, h] boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def ref_is_ignore(ann: dict) -> bool:
    return bool(ann.get("iscrowd", 0)) or bool(ann.get("ignore", 0))


def ref_match_class(gt: dict, dets: list[dict], cat: int) -> tuple[list[tuple[float, int]], int]:
    """[(score, 1 for TP / 0 for FP)] over all images (ignored detections dropped), and the number of positives."""
    records, n_pos = [], 0
    for img in gt["images"]:
        boxes = [a for a in gt["annotations"] if a["image_id"] == img["id"] and a["category_id"] == cat]
        pos = [a["bbox"] for a in boxes if not ref_is_ignore(a)]
        ign = [a["bbox"] for a in boxes if ref_is_ignore(a)]
        n_pos += len(pos)
        mine = [d for d in dets if d["image_id"] == img["id"] and d["category_id"] == cat]
        mine = sorted(mine, key=lambda d: -d["score"])  # stable: ties keep input order
        used = [False] * len(pos)
        for d in mine:
            best, best_j = -1.0, -1
            for j, g in enumerate(pos):
                if not used[j]:
                    o = ref_iou(d["bbox"], g)
                    if o > best:
                        best, best_j = o, j
            if best_j >= 0 and best >= 0.5:
                used[best_j] = True
                records.append((d["score"], 1))
                continue
            if any(ref_iou(d["bbox"], g) >= 0.5 for g in ign):
                continue
            records.append((d["score"], 0))
    return records, n_pos


def ref_points(records: list[tuple[float, int]], n_pos: int, n_images: int) -> list[dict]:
    """One point per distinct score (best first): threshold, recall, fppi, precision."""
    records = sorted(records, key=lambda r: -r[0])
    points, tp, fp = [], 0, 0
    for k, (score, label) in enumerate(records):
        tp += label
        fp += 1 - label
        if k + 1 == len(records) or records[k + 1][0] != score:
            points.append({"t": score, "r": tp / n_pos, "f": fp / n_images, "p": tp / (tp + fp)})
    return points


def ref_caltech(gt: dict, dets: list[dict], cat: int, target: float) -> dict:
    records, n_pos = ref_match_class(gt, dets, cat)
    n_images = len(gt["images"])
    points = ref_points(records, n_pos, n_images)
    recalls = []
    for k in range(9):
        ref = 10 ** (-2 + 0.25 * k)
        ok = [p for p in points if p["f"] <= ref]
        recalls.append(ok[-1]["r"] if ok else 0.0)
    lamr = math.exp(sum(math.log(max(1e-10, 1 - r)) for r in recalls) / 9)
    op = None
    for p in points:
        if p["r"] >= target:
            op = dict(p, reached=True)
            break
    if op is None and points:
        best = max(p["r"] for p in points)
        op = dict(next(p for p in points if p["r"] == best), reached=False)
    if op is None:
        op = {"t": None, "r": 0.0, "f": 0.0, "p": 0.0, "reached": False}
    return {"lamr": lamr, "op": op, "records": records}


def ref_dece(records: list[tuple[float, int]], n_bins: int = 10) -> float | None:
    if not records:
        return None
    bins: list[list[tuple[float, int]]] = [[] for _ in range(n_bins)]
    for score, label in records:
        bins[min(int(math.floor(score * n_bins)), n_bins - 1)].append((score, label))
    total = 0.0
    for b in bins:
        if b:
            conf = sum(s for s, _ in b) / len(b)
            prec = sum(lab for _, lab in b) / len(b)
            total += len(b) / len(records) * abs(prec - conf)
    return total


def compare_with_reference(gt: dict, dets: list[dict], target: float) -> int:
    """Assert agreement on every class with ground truth; returns how many classes were compared."""
    res = evaluate(gt, dets, EvalOptions(recall_target=target))
    compared = 0
    for cat in gt["categories"]:
        row = res["per_class"][cat["name"]]
        ref = ref_caltech(gt, dets, cat["id"], target)
        if row["n_gt"] == 0:
            continue
        compared += 1
        assert row["lamr"] == pytest.approx(ref["lamr"], abs=1e-3), cat["name"]
        assert row["recall_at_op"] == pytest.approx(ref["op"]["r"], abs=1e-3), cat["name"]
        assert row["precision_at_op"] == pytest.approx(ref["op"]["p"], abs=1e-3), cat["name"]
        assert row["fppi_at_op"] == pytest.approx(ref["op"]["f"], abs=1e-3), cat["name"]
        assert row["op_reached"] == ref["op"]["reached"], cat["name"]
        assert row["op_threshold"] == ref["op"]["t"], cat["name"]
        want_dece = ref_dece(ref["records"])
        assert (row["dece"] is None) == (want_dece is None)
        if want_dece is not None:
            assert row["dece"] == pytest.approx(want_dece, abs=1e-3), cat["name"]
    return compared


# -------------------------------------------------------------------------------------------- random scenes
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.5, 0.9])
def test_caltech_protocol_matches_plain_reference(seed, target):
    gt, dets = random_case(seed)
    assert compare_with_reference(gt, dets, target) >= 2


def test_reference_agrees_on_empty_and_all_false_alarms():
    gt, _ = random_case(1)
    assert compare_with_reference(gt, [], 0.9) >= 2
    far = [{"image_id": 1, "category_id": 1, "bbox": [1000, 1000, 5, 5], "score": 0.5}]
    compare_with_reference(gt, far, 0.9)


# -------------------------------------------------------------------------------------- real BDD100K labels
def bdd_gt(limit: int) -> dict:
    """COCO GT built from the raw per-image labels (person, rider, bike, motor) of the first ``limit`` frames."""
    if not (BDD / "labels").is_dir():
        pytest.skip(f"BDD100K-mini is absent ({BDD}): the real-data comparison needs ../shared/datasets/bdd100k-mini")
    files = sorted((BDD / "labels").glob("*.json"))[:limit]
    names = list(BDD_CLASSES)
    gt = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": BDD_CLASSES[n]} for i, n in enumerate(names)],
    }
    for i, f in enumerate(files, 1):
        raw = json.loads(f.read_text())
        gt["images"].append(
            {
                "id": i,
                "file_name": f"images/{raw['name']}.jpg",
                "width": 1280,
                "height": 720,
                "attributes": raw.get("attributes", {}),
            }
        )
        for frame in raw.get("frames", []):
            for obj in frame.get("objects", []):
                if obj.get("category") not in BDD_CLASSES or "box2d" not in obj:
                    continue
                b = obj["box2d"]
                w, h = b["x2"] - b["x1"], b["y2"] - b["y1"]
                gt["annotations"].append({
                    "id": len(gt["annotations"]) + 1, "image_id": i, "category_id": names.index(obj["category"]) + 1,
                    "bbox": [b["x1"], b["y1"], w, h], "area": w * h, "iscrowd": 0,
                    "attributes": obj.get("attributes", {}),
                })  # fmt: skip
    return gt


def perturb(gt: dict, seed: int) -> tuple[dict, list[dict]]:
    """Add ignore regions to the GT; detections: shifted / rescaled boxes, some dropped, spurious ones, random scores."""
    rng = random.Random(seed)
    gt = copy.deepcopy(gt)
    for ann in gt["annotations"]:
        if rng.random() < 0.06:  # some labelled people become ignore regions (like BDD's "other person")
            ann["iscrowd"], ann["ignore"] = 1, 1
    for img in gt["images"][::7]:
        gt["annotations"].append({
            "id": len(gt["annotations"]) + 1, "image_id": img["id"], "category_id": 1,
            "bbox": [rng.uniform(0, 1000), rng.uniform(200, 500), 200.0, 120.0], "area": 24000.0, "iscrowd": 1, "ignore": 1,
        })  # fmt: skip
    dets = []
    for ann in gt["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = ann["bbox"]
        cat = ann["category_id"] if rng.random() > 0.05 else rng.randint(1, 4)
        box = [
            x + rng.gauss(0, 0.12 * w),
            y + rng.gauss(0, 0.12 * h),
            w * rng.uniform(0.8, 1.2),
            h * rng.uniform(0.8, 1.2),
        ]
        dets.append({"image_id": ann["image_id"], "category_id": cat, "bbox": box, "score": rng.random()})
    for img in gt["images"]:
        for _ in range(rng.randint(0, 5)):
            w, h = rng.uniform(6, 120), rng.uniform(12, 240)
            dets.append({
                "image_id": img["id"], "category_id": rng.randint(1, 4),
                "bbox": [rng.uniform(0, 1280 - w), rng.uniform(0, 720 - h), w, h], "score": rng.random() * 0.8,
            })  # fmt: skip
    return gt, dets


def pycocotools_map(gt: dict, dets: list[dict]) -> tuple[float, float, dict[int, tuple[float, float]]]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"][:, :, :, 0, -1]
    per = {}
    for k, cid in enumerate(ev.params.catIds):
        p = prec[:, :, k]
        per[cid] = (float(p[0][p[0] > -1].mean()), float(p[p > -1].mean())) if (p > -1).any() else (None, None)
    return float(ev.stats[1]), float(ev.stats[0]), per


@pytest.mark.bdd
def test_map_equals_pycocotools_on_bdd100k_mini():
    gt, dets = perturb(bdd_gt(400), seed=3)
    assert sum(1 for a in gt["annotations"] if a["iscrowd"]) > 20 and len(dets) > 1000
    res = evaluate(gt, dets)
    map50, map5095, per = pycocotools_map(gt, dets)
    assert 0.05 < res["overall"]["map50"] < 0.95  # a real, non-degenerate comparison
    assert res["overall"]["map50"] == pytest.approx(map50, abs=1e-3)
    assert res["overall"]["map50_95"] == pytest.approx(map5095, abs=1e-3)
    for cat in gt["categories"]:
        row = res["per_class"][cat["name"]]
        want50, want5095 = per[cat["id"]]
        assert row["map50"] == pytest.approx(want50, abs=1e-3), cat["name"]
        assert row["map50_95"] == pytest.approx(want5095, abs=1e-3), cat["name"]


@pytest.mark.bdd
def test_caltech_protocol_matches_reference_on_bdd100k_mini():
    gt, dets = perturb(bdd_gt(150), seed=5)
    assert compare_with_reference(gt, dets, 0.9) >= 3
    assert compare_with_reference(gt, dets, 0.6) >= 3
    conditions = evaluate(gt, dets)["breakdown"]["conditions"]
    assert {"timeofday", "weather", "scene"} <= set(conditions)


def test_speed_200_images_300_detections_each():
    rng = random.Random(0)
    gt = {"images": [{"id": i + 1, "width": 640, "height": 384} for i in range(200)], "annotations": [],
          "categories": [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "cyclist"}, {"id": 3, "name": "car"}]}  # fmt: skip
    for img in gt["images"]:
        for _ in range(8):
            box = [rng.uniform(0, 600), rng.uniform(0, 300), rng.uniform(8, 40), rng.uniform(16, 80)]
            ann = {
                "id": len(gt["annotations"]) + 1,
                "image_id": img["id"],
                "category_id": rng.randint(1, 3),
                "bbox": box,
            }
            gt["annotations"].append({**ann, "area": box[2] * box[3], "iscrowd": 0})
    dets = [
        {"image_id": img["id"], "category_id": rng.randint(1, 3), "score": rng.random(),
         "bbox": [rng.uniform(0, 600), rng.uniform(0, 300), rng.uniform(8, 40), rng.uniform(16, 80)]}
        for img in gt["images"] for _ in range(300)
    ]  # fmt: skip
    t0 = time.perf_counter()
    res = evaluate(gt, dets)
    elapsed = time.perf_counter() - t0
    assert res["params"]["n_detections"] == 60000
    assert elapsed < 5.0, f"evaluation of 60k detections took {elapsed:.2f} s"
