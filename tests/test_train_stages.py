"""The training stages end to end on a tiny dataset: teacher, student, distill, distill_ultralytics.

A yolov8n teacher stands in for YOLOv8-L here for speed (imgsz 64, 4 images, 1 epoch); the stage defaults stay
YOLOv8-L / YOLOv8-S (checked without training in ``test_stage_defaults``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.errors import IntegrityError, StageError
from pipeline.config import build_config
from pipeline.runner import Runner, Stage, StageContext
from pipeline.stages import train as train_stages
from pipeline.train.summary import METRIC_KEYS

NAMES = {0: "pedestrian", 1: "cyclist", 2: "car"}
COLORS = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]


def make_tiny_dataset(root: Path, n_train: int = 4, n_val: int = 2, size: int = 128, seed: int = 0) -> Path:
    """A YOLO dataset of coloured rectangles (class = colour) in the edgekd layout; returns data.yaml."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full((size, size, 3), 90, np.uint8)
            lines = []
            for _ in range(3):
                c = int(rng.integers(0, 3))
                w, h = (int(v) for v in rng.integers(size // 8, size // 3, 2))
                x, y = (int(v) for v in rng.integers(0, size - size // 3, 2))
                cv2.rectangle(img, (x, y), (x + w, y + h), COLORS[c], -1)
                lines.append(f"{c} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{i:06d}.jpg"), img)
            (root / "labels" / split / f"{i:06d}.txt").write_text("\n".join(lines) + "\n")
    names = "".join(f"  {k}: {v}\n" for k, v in NAMES.items())
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\nnc: 3\nnames:\n{names}")
    return root / "data.yaml"


def _data_stage(ctx: StageContext) -> None:
    make_tiny_dataset(ctx.out)


DATA = Stage("data", _data_stage, volatile=("labels/*.cache",))


def _cfg(tmp_path: Path, **distillation):
    return build_config(
        {
            "run": {"name": "t", "runs_dir": str(tmp_path / "runs"), "seed": 0},
            "train": {"epochs": 1, "imgsz": 64, "batch": 2, "mosaic": 0.0, "close_mosaic": 0, "workers": 0},
            "teacher": {"weights": "yolov8n.yaml"},
            "distillation": distillation,
        }
    )


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_AUTOINSTALL", "false")


def _summary(run: Path, stage: str) -> dict:
    return json.loads((run / stage / "summary.json").read_text())


def _curves(run: Path, stage: str) -> list[dict[str, str]]:
    with open(run / stage / "curves.csv") as fh:
        return list(csv.DictReader(fh))


def test_stage_defaults():
    """The shipped defaults train YOLOv8-L as teacher and YOLOv8-S students; arms are registered in order."""
    cfg = build_config({})
    assert cfg.teacher.weights == "yolov8l.yaml" and cfg.student.model == "yolov8s.yaml"
    names = [s.name for s in train_stages.STAGES]
    assert names == [
        "teacher",
        "student",
        "distill",
        "distill_ultralytics",
        "distill_cls",
        "distill_loc",
        "distill_feat",
    ]
    by_name = {s.name: s for s in train_stages.STAGES}
    assert not by_name["distill_cls"].enabled(cfg)
    assert by_name["distill_cls"].enabled(build_config({"distillation": {"ablation": True}}))
    assert not by_name["distill_ultralytics"].enabled(build_config({"distillation": {"ultralytics_arm": False}}))
    assert by_name["distill"].upstream == ("data", "teacher")
    assert "distillation.cls_weight" in by_name["distill"].params
    assert "distillation.cls_weight" not in by_name["student"].params


def test_arms_end_to_end(tmp_path):
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.patches import torch_load

    cfg = _cfg(tmp_path)
    runner = Runner(cfg, [DATA, *train_stages.STAGES], log=lambda m: None)
    results = {r.name: r.status for r in runner.run()}
    assert results == {
        "data": "ran",
        "teacher": "ran",
        "student": "ran",
        "distill": "ran",
        "distill_ultralytics": "ran",
        "distill_cls": "skipped",
        "distill_loc": "skipped",
        "distill_feat": "skipped",
    }
    run = cfg.run_dir
    expected_params = {
        "teacher": 3_011_433,
        "student": 11_136_761,
        "distill": 11_136_761,
        "distill_ultralytics": 11_136_761,
    }
    for stage, params in expected_params.items():
        files = sorted(p.relative_to(run / stage).as_posix() for p in (run / stage).rglob("*") if p.is_file())
        assert files == ["curves.csv", "summary.json", "weights/best.pt"], stage
        summary = _summary(run, stage)
        assert summary["params"] == params, stage
        assert summary["gflops_640"] > summary["gflops_imgsz"] > 0 and summary["imgsz"] == 64
        assert set(summary["final"]) == {"precision", "recall", "map50", "map50_95"}
        assert summary["epochs_completed"] == 1 and summary["train_seconds"] > 0
        ckpt = torch_load(str(run / stage / "weights/best.pt"), map_location="cpu")
        assert type(ckpt["model"]) is DetectionModel, stage  # no teacher, no projector inside
        assert ckpt["date"] is None and ckpt["train_args"]["project"] is None
        assert str(tmp_path / "runs" / "t" / ".tmp") not in (run / stage / "summary.json").read_text()
    assert _summary(run, "teacher")["init"] == {"spec": "yolov8n.yaml", "sha256": None, "trusted_by": "yaml"}
    teacher_sha = _summary(run, "distill")["teacher"]["sha256"]
    assert teacher_sha == _summary(run, "teacher")["weights"]["sha256"]

    # every edgekd KD term is logged per epoch, and non-zero in training
    kd = _curves(run, "distill")[0]
    for term in ("box_loss", "cls_loss", "dfl_loss", "kd_cls", "kd_loc", "kd_feat"):
        assert float(kd[f"train/{term}"]) > 0, term
    assert {"metrics/mAP50(B)", "metrics/mAP50-95(B)", "val/kd_cls"} <= set(kd)
    assert "train/kd_cls" not in _curves(run, "student")[0]
    assert float(_curves(run, "distill_ultralytics")[0]["train/dis_loss"]) > 0

    # ultralytics' own val on the saved weights reproduces the stage's reported metrics
    summary = _summary(run, "distill")
    va = {k: v for k, v in summary["val_args"].items() if k != "split"}
    metrics = YOLO(str(run / "distill" / "weights/best.pt")).val(
        data=str(run / "data" / "data.yaml"), device="cpu", plots=False, verbose=False, project=str(tmp_path), **va
    )
    for ul_key, key in METRIC_KEYS.items():
        assert metrics.results_dict[ul_key] == pytest.approx(summary["final"][key], abs=1e-5), key

    # cached on a second run
    again = Runner(cfg, [DATA, *train_stages.STAGES], log=lambda m: None).run()
    assert {r.status for r in again} <= {"cached", "skipped"}

    # ablation adds one arm per KD term; the other arms stay cached
    ablation = Runner(_cfg(tmp_path, ablation=True), [DATA, *train_stages.STAGES], log=lambda m: None).run()
    status = {r.name: r.status for r in ablation}
    assert [status[s] for s in ("teacher", "student", "distill", "distill_ultralytics")] == ["cached"] * 4
    for arm, term in train_stages.ABLATION_ARMS.items():
        assert status[arm] == "ran"
        row = _curves(run, arm)[0]
        assert {t: float(row[f"train/kd_{t}"]) > 0 for t in ("cls", "loc", "feat")} == {
            t: t == term for t in ("cls", "loc", "feat")
        }, arm
        assert _summary(run, arm)["params"] == 11_136_761

    # an altered teacher checkpoint is refused by the distillation arms
    best = run / "teacher" / "weights/best.pt"
    best.write_bytes(best.read_bytes() + b"\0")
    ctx = StageContext(cfg, "distill", tmp_path / "out", run, {"data": run / "data", "teacher": run / "teacher"})
    with pytest.raises(IntegrityError, match="differs from"):
        train_stages._teacher_from_run(ctx)


def test_broken_dataset_is_a_stage_error(tmp_path):
    def broken(ctx: StageContext) -> None:
        (ctx.out / "data.yaml").write_text("train: images/train\nval: images/val\nnc: 3\nnames: {0: a, 1: b, 2: c}\n")

    stages = [Stage("data", broken), next(s for s in train_stages.STAGES if s.name == "teacher")]
    with pytest.raises(StageError, match="stage 'teacher': ultralytics training failed"):
        Runner(_cfg(tmp_path), stages, log=lambda m: None).run()


@pytest.mark.parametrize("arm", ["teacher", "distill"])
def test_interrupted_training_resumes_from_its_last_epoch(tmp_path, monkeypatch, arm):
    """Kill a 2-epoch training in epoch 2 (after epoch 1's last.pt); the re-run trains only epoch 2."""
    from ultralytics.engine.trainer import BaseTrainer

    cfg = build_config({**_cfg(tmp_path).model_dump(mode="json"), "train": {
        "epochs": 2, "imgsz": 64, "batch": 2, "mosaic": 0.0, "close_mosaic": 0, "workers": 0}})  # fmt: skip
    stages = [DATA, *(s for s in train_stages.STAGES if s.name in ("teacher", arm))]
    validate, started = BaseTrainer.validate, []

    def crash_in_epoch_2(self):
        if self.epoch == 1 and not self.resume:
            raise KeyboardInterrupt  # e.g. Ctrl-C, or the machine going down
        return validate(self)

    monkeypatch.setattr(BaseTrainer, "validate", crash_in_epoch_2)
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        Runner(cfg, stages, log=log.append).run()
    if arm == "distill":  # first run: the teacher was interrupted; now it resumes and finishes, and distill is
        log.clear()  # interrupted in its turn
        with pytest.raises(KeyboardInterrupt):
            Runner(cfg, stages, log=log.append).run()
        assert (cfg.run_dir / "teacher/weights/best.pt").is_file()
    run = cfg.run_dir
    scratch = run / ".scratch" / arm
    assert (scratch / "_ultralytics/train/weights/last.pt").is_file() and not (run / arm).exists()

    monkeypatch.setattr(BaseTrainer, "_setup_train", _spy(BaseTrainer._setup_train, started))
    log.clear()
    results = {r.name: r.status for r in Runner(cfg, stages, log=log.append).run()}
    assert results[arm] == "ran" and results["data"] == "cached"
    assert any("resuming the interrupted training" in m for m in log), log
    assert started == [1]  # the resumed trainer started at epoch index 1: only epoch 2 was trained again
    assert [row["epoch"] for row in _curves(run, arm)] == ["1", "2"]
    summary = _summary(run, arm)
    assert summary["resumed"] is True and summary["epochs_completed"] == 2
    assert not scratch.exists()  # removed once the stage succeeded


def test_a_checkpoint_without_its_recorded_checksum_is_not_loaded(tmp_path, monkeypatch):
    """A last.pt changed after the trainer saved it (a pickle can run code) is ignored: training starts over."""
    from ultralytics.engine.trainer import BaseTrainer

    cfg = build_config({**_cfg(tmp_path).model_dump(mode="json"), "train": {
        "epochs": 2, "imgsz": 64, "batch": 2, "mosaic": 0.0, "close_mosaic": 0, "workers": 0}})  # fmt: skip
    stages = [DATA, *(s for s in train_stages.STAGES if s.name == "teacher")]
    validate, started = BaseTrainer.validate, []

    def crash_in_epoch_2(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return validate(self)

    monkeypatch.setattr(BaseTrainer, "validate", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        Runner(cfg, stages, log=lambda m: None).run()
    weights = cfg.run_dir / ".scratch/teacher/_ultralytics/train/weights"
    assert (weights / "checkpoints.sha256").is_file()
    with open(weights / "last.pt", "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(BaseTrainer, "validate", validate)
    monkeypatch.setattr(BaseTrainer, "_setup_train", _spy(BaseTrainer._setup_train, started))
    log: list[str] = []
    results = {r.name: r.status for r in Runner(cfg, stages, log=log.append).run()}
    assert results["teacher"] == "ran" and started == [0]
    assert any("sha256 is not on record" in m for m in log), log
    assert not any("resuming the interrupted training" in m for m in log)
    assert _summary(cfg.run_dir, "teacher")["resumed"] is False


def _spy(setup, started: list[int]):
    def wrapped(self):
        setup(self)
        started.append(self.start_epoch)

    return wrapped
