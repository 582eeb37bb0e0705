"""BDD100K import on small hand-written fixtures: both label formats, presets, problems, strict mode, determinism."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.errors import DataError, InputError
from pipeline.commands.data_bdd100k import print_summary, register_bdd100k
from pipeline.data.bdd100k import ProblemKind, convert_bdd100k, split_names
from pipeline.data.bdd100k_formats import (
    ClassPreset,
    category_rule,
    clip_box,
    frames_from_json,
    image_size,
    yolo_line,
)

FIXTURES = Path(__file__).parent / "fixtures" / "bdd100k"
VRU = ["pedestrian", "rider", "bicycle", "motorcycle"]


def _jpeg(width: int, height: int) -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([(xx * 7) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], axis=-1).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    assert ok
    return buf.tobytes()


def _make_images(folder: Path, spec: dict) -> Path:
    folder.mkdir(parents=True)
    for name, what in spec.items():
        if isinstance(what, list):
            data = _jpeg(*what)
        elif what == "corrupt":
            data = b"this is not a JPEG at all"
        elif what == "truncated":
            full = _jpeg(320, 180)
            data = full[: len(full) // 2]
        else:
            data = b"a note, not an image\n"
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture()
def det20(tmp_path: Path) -> tuple[Path, Path]:
    spec = json.loads((FIXTURES / "images.json").read_text())["det20"]
    return _make_images(tmp_path / "src" / "images", spec), FIXTURES / "det20_labels.json"


@pytest.fixture()
def per_image(tmp_path: Path) -> tuple[Path, Path]:
    spec = json.loads((FIXTURES / "images.json").read_text())["per_image"]
    return _make_images(tmp_path / "src" / "images", spec), FIXTURES / "per_image"


def _coco_all(out: Path) -> tuple[dict, dict]:
    """{image stem: image entry}, {image stem: [annotations]} over both splits."""
    images: dict[str, dict] = {}
    anns: dict[str, list] = {}
    for split in ("train", "val"):
        coco = json.loads((out / "annotations" / f"{split}_coco.json").read_text())
        by_id = {im["id"]: Path(im["file_name"]).stem for im in coco["images"]}
        for im in coco["images"]:
            images[by_id[im["id"]]] = im
            anns[by_id[im["id"]]] = []
        for a in coco["annotations"]:
            anns[by_id[a["image_id"]]].append(a)
    return images, anns


def _yolo(out: Path, stem: str) -> list[str]:
    [path] = list(out.glob(f"labels/*/{stem}.txt"))
    return path.read_text().splitlines()


def _tree(root: Path) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[key] = "->" + os.readlink(path)
        elif path.is_file():
            out[key] = path.read_bytes()
    return out


# ---------------------------------------------------------------- det_20 list, vru
def test_det20_vru_counts_and_records(det20, tmp_path):
    images, labels = det20
    lines: list[str] = []
    report = convert_bdd100k(images, labels, tmp_path / "ds", log=lines.append)
    out = tmp_path / "ds"
    assert report.label_formats == ("det_20",) and report.classes == tuple(VRU)
    assert report.images == {"train": 4, "val": 1}
    total = {c: report.boxes["train"][c] + report.boxes["val"][c] for c in VRU}
    assert total == {"pedestrian": 4, "rider": 1, "bicycle": 1, "motorcycle": 2}
    ignore = {c: report.ignore_regions["train"][c] + report.ignore_regions["val"][c] for c in VRU}
    assert ignore == {"pedestrian": 2, "rider": 0, "bicycle": 0, "motorcycle": 0}  # other person + crowd
    assert report.zero_area == {"pedestrian": 2, "rider": 0, "bicycle": 0, "motorcycle": 0}
    assert report.dropped_categories == {
        "bus": 1, "car": 1, "other vehicle": 1, "traffic light": 1, "traffic sign": 1, "trailer": 1, "train": 1,
        "truck": 1,
    }  # fmt: skip
    assert report.skipped_no_box == 1
    assert any("5 converted" in line for line in lines)

    # YOLO lines, computed by hand for a1 (320x180): pedestrian, rider, bicycle, motorcycle, clipped pedestrian
    assert _yolo(out, "a1") == [
        "0 0.093750 0.388889 0.125000 0.555556",
        "1 0.234375 0.388889 0.093750 0.444444",
        "2 0.250000 0.583333 0.125000 0.277778",
        "3 0.546875 0.638889 0.156250 0.277778",
        "0 0.046875 0.777778 0.093750 0.444444",
    ]
    assert _yolo(out, "a2") == []  # a frame without labels stays, as a negative
    assert _yolo(out, "a4") == ["0 0.194444 0.812500 0.277778 0.375000", "3 0.750000 0.406250 0.388889 0.187500"]

    ims, anns = _coco_all(out)
    assert set(ims) == {"a1", "a2", "a3", "a4", "a5"}
    assert (ims["a4"]["width"], ims["a4"]["height"]) == (180, 320)
    assert ims["a2"]["attributes"] == {"weather": "rainy", "scene": "highway", "timeofday": "night"}
    for stem, im in ims.items():
        assert (out / im["file_name"]).resolve() == (images / f"{stem}.jpg").resolve()
    a1 = {a["source_category"] + ":" + str(a["bbox"]): a for a in anns["a1"]}
    ped = a1["pedestrian:[10.0, 20.0, 40.0, 100.0]"]
    assert (ped["category_id"], ped["iscrowd"], ped["ignore"], ped["area"]) == (1, 0, 0, 4000.0)
    assert ped["attributes"] == {"occluded": True, "truncated": False, "crowd": False}
    other = a1["other person:[100.0, 40.0, 30.0, 80.0]"]
    assert (other["category_id"], other["iscrowd"], other["ignore"]) == (1, 1, 1)
    assert "pedestrian:[0.0, 100.0, 30.0, 80.0]" in a1  # clipped to the image
    crowd = [a for a in anns["a3"] if a["iscrowd"]]
    assert [(a["category_id"], a["attributes"]["crowd"]) for a in crowd] == [(1, True)]
    yaml_text = (out / "data.yaml").read_text()
    assert "path:" not in yaml_text and "train: images/train" in yaml_text and "nc: 4" in yaml_text
    assert json.loads((out / "conversion_report.json").read_text())["images"] == {"train": 4, "val": 1}


def test_det20_problems_are_named_and_conversion_goes_on(det20, tmp_path):
    images, labels = det20
    report = convert_bdd100k(images, labels, tmp_path / "ds", log=lambda _: None)
    got = sorted((p.kind, Path(p.file.split("[")[0]).name + ("[" + p.file.split("[")[1] if "[" in p.file else ""))
                 for p in report.problems)  # fmt: skip
    assert got == sorted([
        (ProblemKind.UNKNOWN_CATEGORY, "det20_labels.json[2]"),
        (ProblemKind.BAD_OBJECT, "det20_labels.json[2]"),
        (ProblemKind.LABEL_WITHOUT_IMAGE, "det20_labels.json[5]"),
        (ProblemKind.MALFORMED_LABEL, "det20_labels.json[6]"),
        (ProblemKind.MALFORMED_LABEL, "det20_labels.json[7]"),
        (ProblemKind.DUPLICATE_LABEL, "det20_labels.json[10]"),
        (ProblemKind.IMAGE_WITHOUT_LABEL, "orphan.jpg"),
        (ProblemKind.CORRUPT_IMAGE, "corrupt.jpg"),
        (ProblemKind.CORRUPT_IMAGE, "truncated.jpg"),
    ])  # fmt: skip
    reasons = {p.kind: p.reason for p in report.problems}
    assert "'dinosaur'" in reasons[ProblemKind.UNKNOWN_CATEGORY]
    assert "box2d.x1 is 'ten'" in reasons[ProblemKind.BAD_OBJECT]
    assert "truncated" in [p.reason for p in report.problems if p.file.endswith("truncated.jpg")][0]
    saved = json.loads((tmp_path / "ds" / "conversion_report.json").read_text())
    assert saved["problem_counts"]["corrupt_image"] == 2 and len(saved["problems"]) == 9
    assert {"kind", "file", "reason"} == set(saved["problems"][0])

    from rich.console import Console

    console = Console(record=True, width=240)
    print_summary(report, console)
    text = console.export_text()
    assert "9 problem(s)" in text and "label_without_image" in text and "orphan.jpg" in text
    assert "pedestrian" in text and "zero-area dropped" in text


def test_det20_all_classes(det20, tmp_path):
    images, labels = det20
    report = convert_bdd100k(images, labels, tmp_path / "ds", classes="all", log=lambda _: None)
    names = list(report.classes)
    assert names == ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "traffic light",
                     "traffic sign"]  # fmt: skip
    boxes = {c: report.boxes["train"][c] + report.boxes["val"][c] for c in names}
    ignore = {c: report.ignore_regions["train"][c] + report.ignore_regions["val"][c] for c in names}
    assert boxes == {"pedestrian": 4, "rider": 1, "car": 1, "truck": 1, "bus": 1, "train": 1, "motorcycle": 2,
                     "bicycle": 1, "traffic light": 1, "traffic sign": 1}  # fmt: skip
    assert {c: n for c, n in ignore.items() if n} == {"pedestrian": 2, "car": 1, "truck": 1}
    assert report.dropped_categories == {}
    text = (tmp_path / "ds" / "data.yaml").read_text()
    assert "nc: 10" in text and "9: traffic sign" in text
    _, anns = _coco_all(tmp_path / "ds")
    trailer = [a for a in anns["a3"] if a["source_category"] == "trailer"]
    assert [(a["category_id"], a["iscrowd"], a["ignore"]) for a in trailer] == [(4, 1, 1)]


# ---------------------------------------------------------------- per-image folder
def test_per_image_folder(per_image, tmp_path):
    images, labels = per_image
    report = convert_bdd100k(images, labels, tmp_path / "ds", log=lambda _: None)
    assert report.label_formats == ("per-image",)
    assert sum(report.images.values()) == 3 and report.images["val"] == 1
    total = {c: report.boxes["train"][c] + report.boxes["val"][c] for c in VRU}
    assert total == {"pedestrian": 2, "rider": 1, "bicycle": 1, "motorcycle": 1}
    assert report.skipped_no_box == 2 and report.dropped_categories == {"car": 1}
    [problem] = report.problems
    assert problem.kind is ProblemKind.MALFORMED_LABEL and problem.file.endswith("broken.json")
    assert "not valid JSON" in problem.reason
    assert _yolo(tmp_path / "ds", "p1")[3] == "3 0.953125 0.694444 0.093750 0.277778"  # motor clipped at x=320
    ims, _ = _coco_all(tmp_path / "ds")
    assert ims["p1"]["attributes"]["timeofday"] == "night"


def test_label_json_variants():
    preset = ClassPreset.VRU
    box = {"x1": 1, "y1": 2, "x2": 3, "y2": 4}
    export = {"frames": [{"name": "x.jpg", "labels": [{"category": "pedestrian", "box2d": box}]}], "config": {}}
    [frame] = frames_from_json(export, "export.json", preset)
    assert (frame.name, frame.label_format, len(frame.boxes)) == ("x", "det_20", 1)
    nameless = {"frames": [{"objects": [{"category": "person", "box2d": box}]}]}
    [frame] = frames_from_json(nameless, "labels/abc-123.json", preset)
    assert (frame.name, frame.label_format) == ("abc-123", "per-image")
    [bad] = frames_from_json({"foo": 1}, "f.json", preset)
    assert bad == ("f.json", "'name' is None, expected the image file name")
    [inverted] = frames_from_json([{"name": "y", "labels": [{"category": "rider", "box2d": {**box, "x2": 0}}]}],
                                  "l.json", preset)  # fmt: skip
    assert inverted.boxes == [] and "inverted" in inverted.problems[0].reason


# ---------------------------------------------------------------- strict mode, CLI, arguments
def _local_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgekd data")
    register_bdd100k(parser.add_subparsers(dest="data_command"))
    return parser


def test_strict_stops_at_first_problem_and_writes_nothing(det20, tmp_path):
    images, labels = det20
    out = tmp_path / "sub" / "ds"
    args = _local_parser().parse_args(
        ["bdd100k", "--images", str(images), "--labels", str(labels), "--out", str(out), "--strict"]
    )
    with pytest.raises(DataError) as info:
        args.func(args)
    assert info.value.exit_code == 2  # bad input
    assert "det20_labels.json[2]" in str(info.value) and "dinosaur" in str(info.value)
    assert not out.exists() and (not out.parent.exists() or list(out.parent.iterdir()) == [])


def test_strict_through_edgekd_main(det20, tmp_path, capsys):
    from pipeline import cli

    parser = cli.build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not any("data" in a.choices for a in subs):
        pytest.skip("`edgekd data` is not registered in pipeline.cli.COMMAND_MODULES yet (another module owns it)")
    images, labels = det20
    base = ["data", "bdd100k", "--images", str(images), "--labels", str(labels)]
    assert cli.main([*base, "--out", str(tmp_path / "strict"), "--strict"]) == 2
    assert "dinosaur" in capsys.readouterr().err and not (tmp_path / "strict").exists()
    assert cli.main([*base, "--out", str(tmp_path / "lenient")]) == 0
    assert "9 problem(s)" in capsys.readouterr().out


def test_cli_handler_prints_summary(per_image, tmp_path, capsys):
    images, labels = per_image
    argv = ["bdd100k", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "ds")]
    args = _local_parser().parse_args([*argv, "--val-fraction", "0.5", "--seed", "3"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "3 converted, 1 problem(s)" in text and "pedestrian" in text
    assert "broken.json" in "".join(text.split())  # the table may fold long paths
    saved = json.loads((tmp_path / "ds" / "conversion_report.json").read_text())
    assert saved["settings"]["seed"] == 3 and saved["images"] == {"train": 1, "val": 2}


def test_bad_arguments_are_input_errors(det20, tmp_path):
    images, labels = det20
    cases = [
        dict(images=tmp_path / "nope", labels=labels),
        dict(images=images, labels=tmp_path / "nope.json"),
        dict(images=images, labels=labels, val_fraction=0.0),
        dict(images=images, labels=labels, val_fraction=1.0),
        dict(images=images, labels=labels, classes="cars"),
        dict(images=images, labels=labels, seed=-1),
    ]
    for kwargs in cases:
        with pytest.raises(InputError) as info:
            convert_bdd100k(out=tmp_path / "ds", log=lambda _: None, **kwargs)
        assert info.value.exit_code == 2
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(InputError, match="broken.json.*not valid JSON"):
        convert_bdd100k(images, broken, tmp_path / "ds", log=lambda _: None)
    empty_labels = tmp_path / "empty_labels"
    empty_labels.mkdir()
    with pytest.raises(InputError, match="no .json files"):
        convert_bdd100k(images, empty_labels, tmp_path / "ds", log=lambda _: None)
    unrelated = tmp_path / "unrelated.json"
    unrelated.write_text(json.dumps([{"name": "zzz.jpg", "labels": []}]))
    with pytest.raises(DataError, match="only 0 image"):
        convert_bdd100k(images, unrelated, tmp_path / "ds", log=lambda _: None)
    assert not (tmp_path / "ds").exists()


def test_out_folder_policy(per_image, tmp_path):
    images, labels = per_image
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an earlier"):
        convert_bdd100k(images, labels, foreign, log=lambda _: None)
    assert (foreign / "precious.txt").read_text() == "keep me"
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(InputError):
        convert_bdd100k(images, labels, afile, log=lambda _: None)
    empty = tmp_path / "empty"
    empty.mkdir()
    convert_bdd100k(images, labels, empty, log=lambda _: None)  # an empty folder (a stage's ctx.out) is fine
    (empty / "labels" / "train.cache").write_text("ultralytics cache")
    convert_bdd100k(images, labels, empty, seed=1, log=lambda _: None)  # an earlier output is replaced whole
    assert not (empty / "labels" / "train.cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty", "foreign", "src"]  # no temp leftovers


# ---------------------------------------------------------------- determinism and image links
def test_same_inputs_give_identical_bytes(det20, tmp_path):
    images, labels = det20
    convert_bdd100k(images, labels, tmp_path / "one", log=lambda _: None)
    convert_bdd100k(images, labels, tmp_path / "two", log=lambda _: None)
    first = _tree(tmp_path / "one")
    assert first == _tree(tmp_path / "two")
    assert first["images/train/a1.jpg" if "images/train/a1.jpg" in first else "images/val/a1.jpg"] == "->" + str(
        (images / "a1.jpg").resolve()
    )
    convert_bdd100k(images, labels, tmp_path / "one", log=lambda _: None)
    assert _tree(tmp_path / "one") == first


def test_copies_when_symlinks_fail(per_image, tmp_path, monkeypatch):
    images, labels = per_image

    def no_links(*args, **kwargs):
        raise OSError("symlinks not permitted")

    monkeypatch.setattr(os, "symlink", no_links)
    report = convert_bdd100k(images, labels, tmp_path / "ds", log=lambda _: None)
    assert report.image_mode == "copy"
    for path in (tmp_path / "ds" / "images").rglob("*.jpg"):
        assert not path.is_symlink() and path.read_bytes() == (images / path.name).read_bytes()


# ---------------------------------------------------------------- small pure functions
def test_split_names():
    names = [f"img{i:03d}" for i in range(100)]
    val = split_names(list(reversed(names)), 0.2, seed=0)
    assert len(val) == 20 and val == split_names(names, 0.2, seed=0) and val <= set(names)
    assert val != split_names(names, 0.2, seed=1)
    assert len(split_names(["a", "b"], 0.01, 0)) == 1 and len(split_names(["a", "b", "c"], 0.99, 0)) == 2
    assert split_names(["a"], 0.5, 0) == set() and split_names([], 0.5, 0) == set()
    # reference: the first round(n*f) of numpy's seeded permutation of the sorted names
    perm = np.random.default_rng(7).permutation(10)
    assert split_names([str(i) for i in range(10)], 0.3, 7) == {str(int(i)) for i in perm[:3]}


def test_category_rules():
    expected_vru = {
        "person": (0, False), "pedestrian": (0, False), "rider": (1, False), "bike": (2, False),
        "bicycle": (2, False), "motor": (3, False), "motorcycle": (3, False), "other person": (0, True),
        "car": None, "bus": None, "truck": None, "train": None, "traffic light": None, "traffic sign": None,
        "other vehicle": None, "trailer": None,
    }  # fmt: skip
    for category, rule in expected_vru.items():
        assert category_rule(ClassPreset.VRU, category) == rule, category
    assert category_rule(ClassPreset.ALL, "other vehicle") == (2, True)
    assert category_rule(ClassPreset.ALL, "trailer") == (3, True)
    assert category_rule(ClassPreset.ALL, "motor") == (6, False)
    assert category_rule(ClassPreset.ALL, "traffic sign") == (9, False)
    with pytest.raises(KeyError):
        category_rule(ClassPreset.ALL, "lane/single white")


def test_clip_box_and_yolo_line():
    assert clip_box((-5.0, -5.0, 50.0, 40.0), 100, 80) == (0.0, 0.0, 50.0, 40.0)
    assert clip_box((90.0, 70.0, 150.0, 95.0), 100, 80) == (90.0, 70.0, 100.0, 80.0)
    assert clip_box((120.0, 10.0, 150.0, 20.0), 100, 80) is None  # fully outside
    assert clip_box((10.0, 10.0, 10.0, 20.0), 100, 80) is None  # zero width
    assert clip_box((10.0, 10.0, 10.0005, 20.0), 100, 80) is None  # under MIN_SIZE
    assert yolo_line(2, (0.0, 0.0, 50.0, 40.0), 100, 80) == "2 0.250000 0.250000 0.500000 0.500000"


def test_image_size_reads_headers_like_a_decoder(tmp_path):
    cases = {}
    for w, h in [(1, 1), (17, 9), (1280, 720), (333, 1001)]:
        cases[f"b{w}x{h}.jpg"] = _jpeg(w, h)
        _, buf = cv2.imencode(".jpg", np.zeros((h, w, 3), np.uint8), [int(cv2.IMWRITE_JPEG_PROGRESSIVE), 1])
        cases[f"p{w}x{h}.jpg"] = buf.tobytes()
        _, buf = cv2.imencode(".png", np.zeros((h, w), np.uint8))
        cases[f"g{w}x{h}.png"] = buf.tobytes()
    base = _jpeg(64, 48)
    app1 = b"\xff\xe1" + (65000).to_bytes(2, "big")
    cases["big_app1.jpg"] = base[:2] + app1 + bytes(64998) + base[2:]  # a large EXIF-like segment first
    cases["padded.jpg"] = base + bytes(100)  # zero padding after the end marker is allowed
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        img = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        assert image_size(tmp_path / name) == (img.shape[1], img.shape[0]), name
    bad = {"empty.jpg": b"", "text.jpg": b"hello", "half.jpg": base[: len(base) // 2], "soi_only.jpg": b"\xff\xd8"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError):
            image_size(tmp_path / name)
