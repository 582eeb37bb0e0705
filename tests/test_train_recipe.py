"""The shared training recipe: config -> ultralytics trainer arguments, resume, and the short-budget warning."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import build_config
from pipeline.train.recipe import (
    recipe_from_config,
    record_checkpoints,
    resume_checkpoint,
    short_budget_warning,
    trainer_overrides,
)


def _recipe(**train):
    cfg = build_config({"run": {"name": "t"}, "train": {"epochs": 12, "batch": 8, **train}})
    return recipe_from_config(cfg, Path("/data/data.yaml"))


def test_overrides_carry_the_recipe_and_resume_only_with_a_last_checkpoint(tmp_path):
    recipe = _recipe(nbs=8, warmup_epochs=0.0)
    args = trainer_overrides(recipe, "yolov8s.yaml", tmp_path)
    assert (args["nbs"], args["warmup_epochs"], args["batch"], args["epochs"]) == (8, 0.0, 8, 12)
    assert "resume" not in args and resume_checkpoint(tmp_path) is None
    last = tmp_path / "train/weights/last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    assert "resume" not in trainer_overrides(recipe, "yolov8s.yaml", tmp_path)  # no checksum on record
    record_checkpoints(last.parent)
    assert trainer_overrides(recipe, "yolov8s.yaml", tmp_path)["resume"] == str(last)
    last.write_bytes(b"y")  # changed after it was recorded
    assert "resume" not in trainer_overrides(recipe, "yolov8s.yaml", tmp_path)


def test_a_relative_stage_folder_reaches_ultralytics_absolute(tmp_path, monkeypatch):
    # ultralytics puts a relative project under its runs_dir/detect/, where the resume check would never look
    monkeypatch.chdir(tmp_path)
    last = tmp_path / "runs/x/.scratch/teacher/train/weights/last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    record_checkpoints(last.parent)
    args = trainer_overrides(_recipe(), "yolov8s.yaml", Path("runs/x/.scratch/teacher"))
    assert args["project"] == str(tmp_path / "runs/x/.scratch/teacher")
    assert args["resume"] == str(last)


def test_short_budget_warning():
    # ultralytics' defaults on 96 images: 144 iterations, 100 of them warm-up, an optimizer step every 8 batches
    msg = short_budget_warning(_recipe(), 96)
    assert msg is not None and "144 iterations, 100 of them learning-rate warm-up, and 18 optimizer step(s)" in msg
    assert "train.warmup_epochs=0 and train.nbs=8" in msg
    assert short_budget_warning(_recipe(nbs=8, warmup_epochs=0.0), 96) is None
    assert short_budget_warning(_recipe(epochs=100, batch=16), 10_000) is None  # a real budget: no warning
    assert short_budget_warning(_recipe(nbs=8, warmup_epochs=3.0), 96) is not None  # 100 of 144: mostly warm-up
