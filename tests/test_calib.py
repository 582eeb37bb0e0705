"""Calibration manifests: stratification, reproducibility, warnings, checksums and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploy.errors import IntegrityError
from pipeline.cli import main
from pipeline.data.calib import SCHEMA, allocate, build_manifest, load_manifest
from pipeline.data.synth_writer import generate_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calib") / "ds"
    generate_dataset(out, train=40, val=2, seed=1, width=160, height=96)
    return out


@pytest.fixture()
def ds(synth, tmp_path) -> Path:
    """A private copy, for tests that damage it."""
    return Path(shutil.copytree(synth, tmp_path / "ds"))


def _calib(data: Path, out: Path, *extra: str) -> int:
    return main(["data", "calib", "--data", str(data), "--out", str(out), *extra])


def test_manifest_is_reproducible_and_checksummed(synth, tmp_path, capsys):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert _calib(synth / "data.yaml", a, "--n", "12", "--seed", "7") == 0
    assert _calib(synth / "data.yaml", b, "--n", "12", "--seed", "7") == 0
    assert _calib(synth / "data.yaml", c, "--n", "12", "--seed", "8") == 0
    assert a.read_bytes() == b.read_bytes()
    m, other = json.loads(a.read_text()), json.loads(c.read_text())
    assert [i["path"] for i in m["images"]] != [i["path"] for i in other["images"]]
    assert m["schema"] == SCHEMA and m["n"] == 12 and m["seed"] == 7 and m["data"] == str(synth / "data.yaml")
    assert m["root"] == str(synth.resolve()) and m["source"] == "annotations/train_coco.json"
    assert all(i["path"].startswith("images/train/") for i in m["images"])  # training images only, relative
    paths = load_manifest(a)
    assert len(paths) == 12 and all(p.is_file() and p.is_absolute() for p in paths)
    assert "warning" in capsys.readouterr().err  # 12 < 100


def test_sample_is_stratified_and_covers_every_class(synth):
    coco = json.loads((synth / "annotations/train_coco.json").read_text())
    present = {a["category_id"] for a in coco["annotations"] if not a["iscrowd"]}
    m, _ = build_manifest(synth / "data.yaml", n=25, seed=0)
    strata = m["strata"]
    assert 8 <= len(strata) <= 25, "time of day x weather x rarest class splits 40 frames into many strata"
    assert sum(s["available"] for s in strata.values()) == 40
    assert sum(s["selected"] for s in strata.values()) == 25
    assert all(1 <= s["selected"] <= s["available"] for s in strata.values())  # every stratum is represented
    biggest = max(strata.values(), key=lambda s: s["available"])
    assert biggest["selected"] == max(s["selected"] for s in strata.values()) > 1
    assert {k.split("|")[0] for k in strata} <= {"day", "dusk", "night"}
    assert {k.split("|")[1] for k in strata} <= {"clear", "rain", "fog"}
    assert sum(1 for name, count in m["classes"].items() if count > 0) == len(present)


@pytest.mark.parametrize("seed", range(25))
def test_allocate_properties(seed):
    rng = np.random.default_rng(seed)
    sizes = {f"s{i}": int(rng.integers(1, 40)) for i in range(int(rng.integers(1, 9)))}
    n = int(rng.integers(1, sum(sizes.values()) + 5))
    alloc = allocate(sizes, n)
    total = sum(sizes.values())
    assert sum(alloc.values()) == min(n, total)
    assert all(0 <= alloc[k] <= sizes[k] for k in sizes)
    if len(sizes) <= n < total:
        assert all(v >= 1 for v in alloc.values())
        left = n - len(sizes)
        for k in sizes:  # proportional to the room left after the guaranteed one, within one image
            assert abs(alloc[k] - 1 - left * (sizes[k] - 1) / (total - len(sizes))) < 1 + 1e-9
    elif n < len(sizes):
        for k in sizes:
            assert abs(alloc[k] - n * sizes[k] / total) < 1 + 1e-9


def test_fewer_images_than_requested_takes_all_with_a_warning(synth, tmp_path, capsys):
    out = tmp_path / "all.json"
    assert _calib(synth / "data.yaml", out, "--n", "300") == 0
    assert json.loads(out.read_text())["n"] == 40
    err = capsys.readouterr().err
    assert "only 40 image(s)" in err and "fewer than 100" in err


def test_changed_image_fails_the_checksum(ds, tmp_path):
    out = tmp_path / "m.json"
    assert _calib(ds / "data.yaml", out, "--n", "5") == 0
    first = ds / json.loads(out.read_text())["images"][0]["path"]
    first.write_bytes(first.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError, match=str(first.name)):
        load_manifest(out)
    first.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        load_manifest(out)


def test_manifest_follows_a_moved_dataset(ds, tmp_path):
    out = ds / "calibration.json"
    assert _calib(ds / "data.yaml", out, "--n", "4") == 0
    moved = Path(shutil.move(str(ds), str(tmp_path / "elsewhere")))
    paths = load_manifest(moved / "calibration.json")
    assert all(str(p).startswith(str(moved.resolve())) for p in paths)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_named_exit_2(ds, tmp_path, capsys, damage):
    victim = ds / "images/train/000004.jpg"
    data = victim.read_bytes()
    victim.write_bytes(b"not a jpeg at all" if damage == "garbage" else data[: len(data) // 2])
    assert _calib(ds / "data.yaml", tmp_path / "m.json", "--n", "100") == 2
    err = capsys.readouterr().err
    assert "000004.jpg" in err and "corrupt" in err and "Traceback" not in err
    assert not (tmp_path / "m.json").exists()


def test_yolo_labels_only_dataset(ds, tmp_path):
    shutil.rmtree(ds / "annotations")
    m, _ = build_manifest(ds / "data.yaml", n=10, seed=0)
    assert m["source"] == "yolo labels" and m["n"] == 10
    assert all(k.startswith("any|any|") for k in m["strata"])


def test_bad_data_yaml_inputs_exit_2(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert _calib(tmp_path / "missing.yaml", out) == 2
    assert "missing.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    for text, needle in [
        ("train: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("train: images/train\nval: images/val\n", "'names'"),
        ("train: images/train\nval: images/val\nnames: [a]\nnc: 2\n", "nc is 2"),
        ("train: nowhere\nval: nowhere\nnames: [a]\n", "does not exist"),
    ]:
        bad.write_text(text)
        assert _calib(bad, out) == 2, text
        err = capsys.readouterr().err
        assert needle in err and "bad.yaml" in err and "Traceback" not in err
    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "images/val").mkdir(parents=True)
    bad.write_text("train: images/train\nval: images/val\nnames: {0: a}\n")
    assert _calib(bad, out) == 2
    assert "holds no images" in capsys.readouterr().err
    assert _calib(bad, tmp_path, "--n", "3") == 2  # --out is a folder
    assert "is a folder" in capsys.readouterr().err


def test_bad_label_line_is_named(ds, capsys, tmp_path):
    shutil.rmtree(ds / "annotations")
    (ds / "labels/train/000002.txt").write_text("0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\n")
    assert _calib(ds / "data.yaml", tmp_path / "m.json", "--n", "3") == 2  # a DataError: bad input
    assert "000002.txt:2" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"nan 0.5 0.5 0.1 0.1\n", b"0 inf 0.5 0.1 0.1\n", b"\xff\xfe0 0.5\n"])
def test_nan_inf_and_undecodable_labels_are_named(ds, capsys, tmp_path, content):
    shutil.rmtree(ds / "annotations")
    (ds / "labels/train/000002.txt").write_bytes(content)
    assert _calib(ds / "data.yaml", tmp_path / "m.json", "--n", "3") == 2
    err = capsys.readouterr().err
    assert "000002.txt" in err and "Traceback" not in err


def test_coco_entry_without_file_name_is_named(ds, capsys, tmp_path):
    coco_path = ds / "annotations" / "train_coco.json"
    coco = json.loads(coco_path.read_text())
    del coco["images"][3]["file_name"]
    coco_path.write_text(json.dumps(coco))
    assert _calib(ds / "data.yaml", tmp_path / "m.json", "--n", "3") == 2
    err = capsys.readouterr().err
    assert "train_coco.json" in err and "images[3].file_name is None, expected str" in err and "Traceback" not in err
