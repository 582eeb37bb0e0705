"""The synthetic road-scene generator: determinism, label validity, coverage, perspective, occlusion, COCO/YOLO."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.data.synth import CLASSES, MAX_CAR_Z, MAX_VRU_Z, MIN_BOX, _records, _silhouette, render_frame
from pipeline.data.synth_canvas import Canvas, Workspace
from pipeline.data.synth_distractors import KINDS
from pipeline.data.synth_writer import JPEG_QUALITY, generate_dataset, yolo_lines
from pipeline.runner import hash_tree

W, H = 160, 96


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    generate_dataset(out, train=8, val=4, seed=3, width=W, height=H)
    return out


@pytest.fixture(scope="module")
def frames() -> list:
    """A modest sample at 320x192 (small enough to be quick, large enough for labels of every class)."""
    work = Workspace(320, 192)
    return [render_frame(11, "train", i, 320, 192, work) for i in range(90)]


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    again = tmp_path / "again"
    generate_dataset(again, train=8, val=4, seed=3, width=W, height=H)
    first, second = hash_tree(dataset), hash_tree(again)
    assert first == second
    assert {"data.yaml", "dataset.json", "annotations/train_coco.json", "annotations/val_distractors.json"} <= set(
        first
    )
    assert len([k for k in first if k.startswith("images/")]) == 12
    other = tmp_path / "other"
    generate_dataset(other, train=8, val=4, seed=4, width=W, height=H)
    third = hash_tree(other)
    assert third.keys() == first.keys()
    assert all(third[k] != first[k] for k in first if k.startswith("images/"))


def test_rerun_into_the_same_folder_replaces_it(dataset, tmp_path):
    out = tmp_path / "ds"
    generate_dataset(out, train=5, val=2, seed=3, width=W, height=H)
    generate_dataset(out, train=8, val=4, seed=3, width=W, height=H)
    assert hash_tree(out) == hash_tree(dataset)
    generate_dataset(out, train=2, val=1, seed=3, width=W, height=H)
    assert len(list((out / "images/train").iterdir())) == 2  # no stale frames from the bigger run


def test_any_frame_regenerates_alone_with_the_same_bytes(dataset):
    frame = render_frame(3, "val", 2, W, H)
    ok, jpg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok and (dataset / "images/val/000003.jpg").read_bytes() == jpg.tobytes()
    assert (dataset / "labels/val/000003.txt").read_text() == yolo_lines(frame, W, H)
    assert np.array_equal(render_frame(3, "val", 2, W, H, Workspace(W, H)).image, frame.image)


def test_reach_brings_every_road_user_near_and_leaves_reach_1_unchanged():
    work = Workspace(320, 192)
    full = [render_frame(11, "train", i, 320, 192, work) for i in range(30)]
    same = [render_frame(11, "train", i, 320, 192, work, reach=1.0) for i in range(30)]
    assert all(np.array_equal(a.image, b.image) and a.objects == b.objects for a, b in zip(full, same, strict=True))
    near = [render_frame(11, "train", i, 320, 192, work, reach=0.3) for i in range(30)]

    def heights(fs: list, cls: str) -> list[int]:
        return [o.box[3] - o.box[1] for f in fs for o in f.objects if o.labelled and CLASSES[o.class_id] == cls]

    for cls in CLASSES:
        assert np.median(heights(near, cls)) > 1.5 * np.median(heights(full, cls)), cls
    vru = [o.distance for f in near for o in f.objects if CLASSES[o.class_id] != "car"]
    cars = [o.distance for f in near for o in f.objects if CLASSES[o.class_id] == "car"]
    assert max(vru) <= 0.3 * MAX_VRU_Z + 2.5 + 1.5  # + a crossing's depth + a companion's offset
    assert max(cars) <= 0.3 * MAX_CAR_Z + 2.5  # + half a car's width, crossing sideways
    assert max(o.distance for f in full for o in f.objects) > 0.3 * MAX_CAR_Z + 2.5
    with pytest.raises(ValueError, match="reach"):
        render_frame(11, "train", 0, 320, 192, reach=0.0)


def test_yolo_labels_are_valid(dataset):
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["seed"] == 3 and meta["size"] == [W, H] and meta["classes"] == list(CLASSES)
    assert "time" not in json.dumps(meta).replace("timeofday", "")
    lines = 0
    for path in sorted((dataset / "labels").rglob("*.txt")):
        for line in path.read_text().splitlines():
            cls, cx, cy, w, h = line.split()
            cx, cy, w, h = map(float, (cx, cy, w, h))
            assert int(cls) in range(len(CLASSES))
            assert 0 <= cx - w / 2 and cx + w / 2 <= 1 + 1e-6 and 0 <= cy - h / 2 and cy + h / 2 <= 1 + 1e-6
            assert w * W >= MIN_BOX - 1e-3 and h * H >= MIN_BOX - 1e-3
            lines += 1
    assert lines > 0
    data = (dataset / "data.yaml").read_text()
    assert "path:" not in data and "train: images/train" in data and "nc: 3" in data


def test_coco_matches_yolo_labels(dataset):
    for split in ("train", "val"):
        coco = json.loads((dataset / f"annotations/{split}_coco.json").read_text())
        assert [c["name"] for c in coco["categories"]] == list(CLASSES)
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
        by_image: dict[int, list] = {}
        for ann in coco["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
            assert ann["iscrowd"] == ann["ignore"] in (0, 1)
            assert {"occluded", "occluded_fraction", "truncated", "truncated_fraction"} <= set(ann["attributes"])
            assert 0.0 <= ann["attributes"]["occluded_fraction"] <= 1.0
        assert [im["id"] for im in coco["images"]] == list(range(1, len(coco["images"]) + 1))
        for im in coco["images"]:
            assert (dataset / im["file_name"]).is_file() and im["file_name"].startswith(f"images/{split}/")
            assert im["attributes"]["timeofday"] in {"day", "dusk", "night"}
            assert im["attributes"]["weather"] in {"clear", "rain", "fog"}
            assert isinstance(im["attributes"]["noise"], bool) and isinstance(im["attributes"]["blur"], bool)
            label = dataset / im["file_name"].replace("images/", "labels/").replace(".jpg", ".txt")
            yolo = sorted(tuple(round(float(v), 5) for v in line.split()) for line in label.read_text().splitlines())
            anns = [a for a in by_image.get(im["id"], []) if not a["iscrowd"]]
            expected = sorted(
                (a["category_id"] - 1.0, *(round(v, 5) for v in _norm(a["bbox"], im["width"], im["height"])))
                for a in anns
            )
            assert np.allclose(np.array(yolo).reshape(-1, 5), np.array(expected).reshape(-1, 5), atol=2e-5)


def _norm(bbox, w, h):
    x, y, bw, bh = bbox
    return (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h


def test_distractor_file(dataset):
    for split, n in (("train", 8), ("val", 4)):
        data = json.loads((dataset / f"annotations/{split}_distractors.json").read_text())
        assert data["kinds"] == list(KINDS)
        assert data["distractors"], "every small sample has street furniture"
        for d in data["distractors"]:
            x, y, w, h = d["bbox"]
            assert d["kind"] in KINDS and 1 <= d["image_id"] <= n
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= W and y + h <= H


def test_classes_conditions_and_distractors_all_occur(frames):
    labelled = Counter(CLASSES[o.class_id] for f in frames for o in f.objects if o.labelled)
    assert set(labelled) == set(CLASSES)
    kinds = Counter(d.kind for f in frames for d in f.distractors)
    assert set(kinds) == set(KINDS)
    attrs = [f.attributes for f in frames]
    assert {a["timeofday"] for a in attrs} == {"day", "dusk", "night"}
    assert {a["weather"] for a in attrs} == {"clear", "rain", "fog"}
    assert {a["noise"] for a in attrs} == {True, False} and {a["blur"] for a in attrs} == {True, False}
    assert {a["scene"] for a in attrs} == {"city street", "residential"}
    views = {(CLASSES[o.class_id], o.view) for f in frames for o in f.objects}
    assert {("pedestrian", "side"), ("pedestrian", "front"), ("cyclist", "side"), ("car", "back")} <= views
    assert any(o.occluded_fraction > 0.2 and o.labelled for f in frames for o in f.objects)
    assert any(not o.labelled for f in frames for o in f.objects), "tiny or hidden objects become ignore regions"


def test_vulnerable_road_users_are_often_small(frames):
    heights = [o.box[3] - o.box[1] for f in frames for o in f.objects if o.labelled and o.class_id == 0]
    assert np.median(heights) < 40  # of 192 rows: many far pedestrians
    assert max(heights) > 50


def test_perspective_objects_near_the_horizon_are_smaller(frames):
    rows, sizes = [], []
    for f in frames:
        for o in f.objects:
            if o.labelled and o.class_id == 0 and o.truncated_fraction == 0:
                rows.append(o.box[3] - f.camera["horizon"])  # how far below the horizon the feet are
                sizes.append(o.box[3] - o.box[1])
    rows, sizes = np.array(rows), np.array(sizes)
    near_horizon = rows < np.median(rows)
    assert sizes[near_horizon].mean() < 0.6 * sizes[~near_horizon].mean()
    assert np.corrcoef(rows, sizes)[0, 1] > 0.8  # height grows linearly with the distance below the horizon


def test_distance_recorded_matches_the_ground_plane(frames):
    for f in frames[:20]:
        cam = f.camera
        for o in f.objects:
            if o.labelled and o.view != "side" and o.truncated_fraction == 0 and o.class_id == 0:
                feet = cam["horizon"] + cam["focal"] * cam["height_m"] / o.distance
                assert abs(o.box[3] - feet) < 3 + 0.05 * (o.box[3] - o.box[1])


def test_occlusion_fraction_against_a_hand_computed_case():
    canvas = Canvas.blank(40, 30, lights=False, depth=False)
    canvas.begin(1)
    canvas.poly(np.array([[5, 5], [24, 5], [24, 24], [5, 24]], float), (200, 0, 0))  # far: 20x20 pixels
    box1, own1, trunc1 = _silhouette(canvas, 1)
    canvas.begin(2)
    canvas.poly(np.array([[15, 5], [34, 5], [34, 24], [15, 24]], float), (0, 200, 0))  # nearer: hides #1's right half
    box2, own2, trunc2 = _silhouette(canvas, 2)
    canvas.begin(3)
    canvas.poly(np.array([[30, 10], [59, 10], [59, 19], [30, 19]], float), (0, 0, 200))  # runs off the right edge
    box3, own3, trunc3 = _silhouette(canvas, 3)
    assert box1 == (5, 5, 25, 25) and own1 == 400 and trunc1 == 0.0
    assert trunc3 == pytest.approx(1 - 10 / 29, abs=1e-3) and box3 == (30, 10, 40, 20) and own3 == 100

    class P:
        def __init__(self, kind):
            self.kind, self.z, self.view = kind, 10.0, "front"

    visible = np.bincount(canvas.ids.ravel(), minlength=4)
    objects, _ = _records([P("pedestrian"), P("car"), P("car")], [None, box1, box2, box3],
                          np.array([0, own1, own2, own3]), visible, [0.0, trunc1, trunc2, trunc3])  # fmt: skip
    assert objects[0].occluded_fraction == pytest.approx(0.5, abs=0.01) and objects[0].labelled
    assert objects[1].occluded_fraction == pytest.approx(0.125, abs=0.01)  # 5 x 10 of its 20 x 20 under #3
    assert not objects[2].labelled  # two thirds outside the frame: an ignore region


def test_posters_show_a_person_but_are_not_labelled(frames):
    posters = [(f, d) for f in frames for d in f.distractors if d.kind == "poster"]
    assert posters
    for f, d in posters:
        for o in f.objects:
            if o.labelled and o.class_id == 0:
                assert _iou(o.box, d.box) < 0.9  # the printed person is not a label


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_night_frames_are_darker_than_day_frames(frames):
    night = [f.image.mean() for f in frames if f.attributes["timeofday"] == "night"]
    day = [f.image.mean() for f in frames if f.attributes["timeofday"] == "day" and f.attributes["weather"] == "clear"]
    assert np.mean(night) < 0.5 * np.mean(day)


def test_coco_ground_truth_evaluates_with_ignore_regions(tmp_path):
    from faster_coco_eval import COCO, COCOeval_faster

    out = tmp_path / "ds"
    generate_dataset(out, train=1, val=6, seed=3, width=320, height=192)
    gt = COCO(str(out / "annotations/val_coco.json"))
    anns = json.loads((out / "annotations/val_coco.json").read_text())["annotations"]
    assert any(a["iscrowd"] for a in anns) and any(not a["iscrowd"] for a in anns)
    # perfect detections (0.9) plus higher-scored detections on every ignore region (1.0): those must not count
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 1.0 if a["iscrowd"] else 0.9} for a in anns]  # fmt: skip
    ev = COCOeval_faster(gt, gt.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0) and ev.stats[1] == pytest.approx(1.0)
