"""The training recipe every arm shares: ultralytics trainer arguments from the config.

``teacher``, ``student``, ``distill``, ``distill_ultralytics`` and the ablation arms train on the same data
with the same recipe and budget; only the model, the teacher and the loss differ. This module turns the
``train`` config section into the keyword arguments of ultralytics' ``DetectionTrainer`` (no torch import).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deploy.errors import IntegrityError
from deploy.provenance import format_sums, parse_sums, sha256_file
from pipeline.config import Config

#: Folder (inside the stage's output folder) where ultralytics writes its run; removed once the stage
#: has copied what it keeps, so no absolute path of the temporary stage folder survives in the outputs.
WORK_DIR = "_ultralytics"
RUN_NAME = "train"
#: sha256 of the checkpoints ultralytics saved, beside them: what a resume may load.
CHECKSUMS = "checkpoints.sha256"


@dataclass(frozen=True)
class Recipe:
    """What every trained arm shares (``train`` section, the seed and the dataset)."""

    data: Path  # an ultralytics data.yaml
    epochs: int
    imgsz: int
    batch: int
    optimizer: str
    lr0: float
    workers: int
    device: str
    mosaic: float
    close_mosaic: int
    fraction: float
    nbs: int
    warmup_epochs: float
    seed: int

    @property
    def on_cpu(self) -> bool:
        """CPU training: ``cpu``, or ``""`` (ultralytics' automatic choice) on a machine without CUDA."""
        device = self.device.strip().lower()
        if device == "":
            import torch

            return not torch.cuda.is_available()
        return device.startswith("cpu")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"] = str(self.data)
        return out


def recipe_from_config(cfg: Config, data_yaml: Path, epochs: int | None = None) -> Recipe:
    """The shared recipe; ``epochs`` overrides ``train.epochs`` (e.g. ``teacher.epochs``)."""
    t = cfg.train
    return Recipe(
        data=Path(data_yaml),
        epochs=int(epochs if epochs is not None else t.epochs),
        imgsz=t.imgsz,
        batch=t.batch,
        optimizer=t.optimizer,
        lr0=t.lr0,
        workers=t.workers,
        device=str(t.device),
        mosaic=t.mosaic,
        close_mosaic=min(t.close_mosaic, int(epochs if epochs is not None else t.epochs)),
        fraction=t.fraction,
        nbs=t.nbs,
        warmup_epochs=t.warmup_epochs,
        seed=cfg.run.seed,
    )


def trainer_overrides(recipe: Recipe, model: str, project: Path, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ultralytics' ``DetectionTrainer(overrides=...)``.

    ``model`` is a model ``.yaml`` (from scratch) or a verified ``.pt`` path; ``project`` the folder ultralytics
    writes into (``project/train``). ``device`` passes through: ``cpu``, ``0`` (one CUDA GPU) or ``0,1`` (DDP).
    When ``project`` already holds a ``last.pt`` (the stage's scratch folder after a crash), ``resume`` points at
    it: ultralytics restores the weights, optimizer, EMA and epoch, and trains the remaining epochs. ``project`` is
    made absolute: ultralytics puts a relative one under its own ``runs_dir/detect/``, where no resume would look.
    """
    project = Path(os.path.abspath(project))
    args: dict[str, Any] = {
        "model": model,
        "data": str(recipe.data),
        "epochs": recipe.epochs,
        "imgsz": recipe.imgsz,
        "batch": recipe.batch,
        "optimizer": recipe.optimizer,
        "lr0": recipe.lr0,
        "workers": recipe.workers,
        "device": recipe.device,
        "mosaic": recipe.mosaic,
        "close_mosaic": recipe.close_mosaic,
        "fraction": recipe.fraction,
        "nbs": recipe.nbs,
        "warmup_epochs": recipe.warmup_epochs,
        "seed": recipe.seed,
        "deterministic": True,
        "amp": not recipe.on_cpu,
        "plots": False,
        "val": True,
        "verbose": False,
        "exist_ok": True,
        "project": str(project),
        "name": RUN_NAME,
    }
    last = resume_checkpoint(project)
    if last is not None:
        args["resume"] = str(last)
    args.update(extra)
    return args


#: GPUs on which ultralytics' ``check_amp`` turns AMP off (NaN losses or zero mAP), copied from ultralytics 8.4.
AMP_BROKEN_GPUS = re.compile(
    r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.IGNORECASE
)


def amp_check_without_weights(model: Any) -> bool:
    """ultralytics' ``check_amp`` without its FP32-vs-AMP comparison, which loads (and downloads) ``yolo26n.pt``: a
    pickle no checksum covers. AMP stays on for CUDA, except on the GPUs ultralytics itself lists as broken."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    return not AMP_BROKEN_GPUS.search(torch.cuda.get_device_name(device))


def no_unverified_amp_weights(trainer: Any) -> None:
    """``on_pretrain_routine_start`` callback (it runs before the AMP check, in DDP workers too): ultralytics' trainer
    uses :func:`amp_check_without_weights` in this process."""
    import ultralytics.engine.trainer as ul_trainer

    ul_trainer.check_amp = amp_check_without_weights


def resume_checkpoint(project: Path) -> Path | None:
    """ultralytics' ``last.pt`` of an interrupted run in ``project``, if there is one whose checksum is on record."""
    last = weights_dir(project) / "last.pt"
    return last if verified_checkpoint(last) else None


def weights_dir(project: Path) -> Path:
    """Where ultralytics saves ``last.pt`` and ``best.pt`` for a run in ``project``."""
    return Path(project) / RUN_NAME / "weights"


def record_checkpoints(folder: Path) -> None:
    """Write the sha256 of every ``*.pt`` in ``folder`` to ``folder/CHECKSUMS`` (after each save of the trainer).

    A checkpoint is a pickle that can run code: a resume loads only files whose checksum this recorded.
    """
    tmp = Path(folder) / f".{CHECKSUMS}.tmp"
    tmp.write_text(format_sums({p.name: sha256_file(p) for p in Path(folder).glob("*.pt")}))
    os.replace(tmp, Path(folder) / CHECKSUMS)


def verified_checkpoint(path: Path) -> bool:
    """True when ``path`` exists and matches the sha256 that :func:`record_checkpoints` wrote beside it."""
    sums = Path(path).parent / CHECKSUMS
    if not Path(path).is_file() or not sums.is_file():
        return False
    try:
        recorded = parse_sums(sums.read_text(errors="replace"), str(sums))
    except IntegrityError:  # a garbled record trusts nothing
        return False
    return recorded.get(Path(path).name) == sha256_file(path)


def val_args(recipe: Recipe) -> dict[str, Any]:
    """How ultralytics validated the final weights during training (to reproduce it with ``YOLO(...).val``)."""
    return {"imgsz": recipe.imgsz, "batch": recipe.batch * 2, "conf": 0.001, "iou": 0.7, "split": "val", "rect": True}


def short_budget_warning(recipe: Recipe, n_train: int) -> str | None:
    """A warning when the budget is too short for ultralytics' warm-up and gradient accumulation, else None.

    ultralytics warms the learning rate up over ``max(warmup_epochs * batches_per_epoch, 100)`` iterations and
    steps the optimizer every ``round(nbs / batch)`` batches. On a small dataset with few epochs the whole run can
    be warm-up, with a few dozen optimizer steps: measured here on a 96-image set, YOLOv8-S for 12 epochs at batch 8
    reached mAP50-95 0.05 with ultralytics' defaults (nbs 64, warm-up 3 epochs) and 0.68 with nbs 8, no warm-up.
    """
    per_epoch = max(math.ceil(n_train * recipe.fraction / recipe.batch), 1)
    total = per_epoch * recipe.epochs
    warmup = max(round(recipe.warmup_epochs * per_epoch), 100) if recipe.warmup_epochs > 0 else 0
    accumulate = max(round(recipe.nbs / recipe.batch), 1)
    steps = total // accumulate
    if 2 * warmup < total and (accumulate == 1 or steps >= 300):
        return None
    return (
        f"{n_train} training image(s) at batch {recipe.batch} for {recipe.epochs} epoch(s) make {total} iterations, "
        f"{min(warmup, total)} of them learning-rate warm-up, and {steps} optimizer step(s) (one every "
        f"{accumulate} batches, train.nbs={recipe.nbs}): too few to train from scratch; for a budget this short set "
        f"train.warmup_epochs=0 and train.nbs={recipe.batch}"
    )
