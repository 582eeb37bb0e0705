"""The ``data`` and ``calib`` stages through the Runner: synth, a user's YOLO dataset, BDD100K."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.config import build_config
from pipeline.data.calib import load_manifest
from pipeline.data.synth_writer import generate_dataset
from pipeline.runner import Runner
from pipeline.stages import STAGE_MODULES
from pipeline.stages.data import STAGES

BDD_MINI = Path(__file__).resolve().parents[1].parent / "shared/datasets/bdd100k-mini"


def _cfg(tmp_path: Path, **data):
    raw = {"run": {"name": "t", "runs_dir": str(tmp_path / "runs"), "seed": 2}, "data": data}
    return build_config(raw)


def _run(cfg):
    return [r.status for r in Runner(cfg, STAGES, log=lambda m: None).run()]


def test_module_is_registered_with_both_stages():
    assert "pipeline.stages.data" in STAGE_MODULES
    assert [s.name for s in STAGES] == ["data", "calib"]
    assert STAGES[1].upstream == ("data",)


def test_synth_data_and_calib_stages(tmp_path):
    cfg = _cfg(tmp_path, synth={"train": 6, "val": 3, "width": 160, "height": 96}, calib={"n": 4})
    assert _run(cfg) == ["ran", "ran"]
    data, calib = cfg.run_dir / "data", cfg.run_dir / "calib"
    meta = json.loads((data / "dataset.json").read_text())
    assert meta["seed"] == 2 and meta["splits"]["train"]["images"] == 6 and meta["size"] == [160, 96]
    manifest = json.loads((calib / "calibration.json").read_text())
    assert manifest["root"] == str(data.resolve()) and ".tmp" not in manifest["root"]
    assert manifest["root_relative"] == "../data" and manifest["n"] == 4 and manifest["seed"] == 2
    assert all(i["path"].startswith("images/train/") for i in manifest["images"])
    assert ".tmp" not in (calib / "calibration.json").read_text()
    assert len(load_manifest(calib / "calibration.json")) == 4
    assert _run(cfg) == ["cached", "cached"]
    (data / "labels").joinpath("train.cache").write_bytes(b"ultralytics writes this")  # volatile: ignored
    assert _run(cfg) == ["cached", "cached"]
    cfg2 = _cfg(tmp_path, synth={"train": 6, "val": 3, "width": 160, "height": 96}, calib={"n": 5})
    assert _run(cfg2) == ["cached", "ran"]  # only calib depends on data.calib.n


def _user_yolo(tmp_path: Path, with_coco: bool) -> Path:
    src = tmp_path / "gen"
    generate_dataset(src, train=5, val=2, seed=9, width=128, height=96)
    user = tmp_path / "user"
    for sub in ("images", "labels"):
        shutil.copytree(src / sub, user / sub)
    if with_coco:
        shutil.copytree(src / "annotations", user / "annotations")
    (user / "data.yaml").write_text(
        yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val", "names": ["ped", "cyc", "car"]})
    )
    return user


@pytest.mark.parametrize("with_coco", [False, True])
def test_yolo_source_adopts_the_users_dataset(tmp_path, with_coco):
    user = _user_yolo(tmp_path, with_coco)
    cfg = _cfg(tmp_path, source="yolo", yaml=str(user / "data.yaml"), calib={"n": 3})
    assert _run(cfg) == ["ran", "ran"]
    data = cfg.run_dir / "data"
    spec = yaml.safe_load((data / "data.yaml").read_text())
    assert spec["train"] == [str((user / "images/train").resolve())] and spec["nc"] == 3
    assert spec["names"] == {0: "ped", 1: "cyc", 2: "car"}
    coco = json.loads((data / "annotations/val_coco.json").read_text())
    assert len(coco["images"]) == 2 and all(Path(i["file_name"]).is_absolute() for i in coco["images"])
    assert all(Path(i["file_name"]).is_file() for i in coco["images"])
    labelled = sum(len((user / "labels/val" / f).read_text().splitlines()) for f in ("000001.txt", "000002.txt"))
    assert sum(1 for a in coco["annotations"] if not a["iscrowd"]) == labelled
    assert (data / "annotations/train_distractors.json").is_file() == with_coco
    paths = load_manifest(cfg.run_dir / "calib" / "calibration.json")
    assert len(paths) == 3 and all(str(p).startswith(str(user.resolve())) for p in paths)
    assert _run(cfg) == ["cached", "cached"]
    (user / "labels/train/000001.txt").write_text("0 0.5 0.5 0.2 0.3\n")  # the user edits a label
    assert _run(cfg) == ["ran", "ran"]


def test_yolo_source_with_a_broken_label_names_it(tmp_path):
    from deploy.errors import DataError

    user = _user_yolo(tmp_path, with_coco=False)
    (user / "labels/val/000002.txt").write_text("0 0.5 1.7 0.2 0.3\n")
    cfg = _cfg(tmp_path, source="yolo", yaml=str(user / "data.yaml"))
    with pytest.raises(DataError, match="000002.txt:1"):
        _run(cfg)
    assert not (cfg.run_dir / "data").exists()


@pytest.mark.bdd
def test_bdd100k_source_on_a_few_real_frames(tmp_path):
    if not BDD_MINI.is_dir():
        pytest.skip(f"{BDD_MINI} is absent (real BDD100K frames are not shipped with the repository)")
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for jpg in sorted((BDD_MINI / "images").glob("*.jpg"))[:6]:
        (images / jpg.name).symlink_to(jpg)
        shutil.copy(BDD_MINI / "labels" / f"{jpg.stem}.json", labels)
    cfg = _cfg(tmp_path, source="bdd100k", bdd100k={"images": str(images), "labels": str(labels)}, calib={"n": 2})
    assert _run(cfg) == ["ran", "ran"]
    spec = yaml.safe_load((cfg.run_dir / "data/data.yaml").read_text())
    assert spec["names"][0] == "pedestrian"
    manifest = json.loads((cfg.run_dir / "calib/calibration.json").read_text())
    assert manifest["n"] == 2 and {k.split("|")[0] for k in manifest["strata"]} != {"any"}
    assert all(i["path"].startswith("images/train/") for i in manifest["images"])  # the links, not their targets
    assert len(load_manifest(cfg.run_dir / "calib/calibration.json")) == 2
