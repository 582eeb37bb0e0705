"""Training safeguards: ultralytics' AMP check loads no unverified pickle, a checkpoint saved but not yet stripped is
still collected, and device "" (ultralytics' automatic choice) is CPU only without CUDA."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def test_amp_check_is_replaced_and_loads_nothing(monkeypatch):
    import ultralytics.engine.trainer as ul_trainer
    from ultralytics.nn.tasks import DetectionModel

    from pipeline.train.recipe import AMP_BROKEN_GPUS, amp_check_without_weights, no_unverified_amp_weights

    monkeypatch.setattr(ul_trainer, "check_amp", ul_trainer.check_amp)  # restored after the test
    no_unverified_amp_weights(object())
    assert ul_trainer.check_amp is amp_check_without_weights
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    monkeypatch.setattr("ultralytics.YOLO", lambda *a, **k: pytest.fail("the AMP check loaded a model"))
    assert amp_check_without_weights(model) is False  # CPU: no AMP, as ultralytics decides
    assert AMP_BROKEN_GPUS.search("NVIDIA GeForce GTX 1660 Ti") and not AMP_BROKEN_GPUS.search("NVIDIA H200")


def test_unstripped_checkpoint_is_finalized(tmp_path: Path):
    from ultralytics.nn.tasks import DetectionModel

    from pipeline.train.summary import finalize_checkpoint

    ema = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    src = tmp_path / "best.pt"  # as the trainer saves it before its final evaluation strips it
    torch.save({"model": None, "ema": ema, "updates": 10, "optimizer": {}, "epoch": 3, "train_args": {}}, src)
    model = finalize_checkpoint(src, tmp_path / "out" / "best.pt")
    assert type(model) is DetectionModel and (tmp_path / "out" / "best.pt").is_file()


def test_device_auto_is_cpu_only_without_cuda():
    from pipeline.train.recipe import Recipe

    fields = {f.name: None for f in dataclasses.fields(Recipe)}
    recipe = Recipe(**{**fields, "device": "cpu"})
    assert recipe.on_cpu and not dataclasses.replace(recipe, device="0").on_cpu
    assert dataclasses.replace(recipe, device="").on_cpu is (not torch.cuda.is_available())
