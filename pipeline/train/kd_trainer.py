"""edgekd's distillation on ultralytics' own trainer: a teacher-student wrapper and a ``DetectionTrainer``.

:class:`KDModel` subclasses ultralytics' ``DistillationModel`` (ultralytics 8.4.190) so that the trainer's
distillation plumbing applies unchanged: the frozen teacher is excluded from training and from the EMA, the
checkpoints ultralytics writes at the end are unwrapped to the plain student ``DetectionModel`` (no teacher, no
projector), and the validator runs the student. Only the loss is edgekd's: :class:`pipeline.train.kd_loss.KDLoss`
computed from the student's and the teacher's dense predictions on the same letterboxed batch (the teacher in eval
mode, without gradients) and the neck features the Detect head receives (no forward hooks needed).

The wrapper is built before ``trainer.train()`` and assigned to ``trainer.model``, so ultralytics' multi-GPU DDP
launcher, which pickles ``trainer.model`` for its workers, carries the teacher and the settings along.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.nn.distill_model import DistillationModel
from ultralytics.nn.tasks import DetectionModel, load_checkpoint
from ultralytics.utils.torch_utils import copy_attr, unwrap_model

from pipeline.train.kd_loss import KDLoss, KDSettings


def head_channels(model: Any) -> list[int]:
    """Input channels of each level of a YOLOv8 Detect head (the neck widths P3, P4, P5)."""
    head = model.model[-1]
    return [int(branch[0].conv.in_channels) for branch in head.cv2]


def check_pair(student: Any, teacher: Any) -> None:
    """Raise ValueError unless teacher and student have aligned YOLOv8-style (DFL, one-to-many) heads."""
    s, t = student.model[-1], teacher.model[-1]
    problems = []
    if getattr(s, "one2one_cv2", None) is not None or getattr(t, "one2one_cv2", None) is not None:
        problems.append("end-to-end (one-to-one) heads are not supported; use YOLOv8-style models")
    if s.nl != t.nl:
        problems.append(f"detection levels differ: student {s.nl}, teacher {t.nl}")
    if s.nc != t.nc:
        problems.append(f"classes differ: student nc={s.nc}, teacher nc={t.nc}")
    if s.reg_max != t.reg_max:
        problems.append(f"DFL bins differ: student reg_max={s.reg_max}, teacher reg_max={t.reg_max}")
    if s.stride.tolist() != t.stride.tolist():
        problems.append(f"strides differ: student {s.stride.tolist()}, teacher {t.stride.tolist()}")
    if problems:
        raise ValueError("teacher and student cannot be distilled: " + "; ".join(problems))


class KDModel(DistillationModel):
    """Student + frozen teacher + 1x1 feature projectors, trained with :class:`KDLoss`.

    Forward on an image tensor runs the student; forward on a batch dict returns the loss (training: with the KD
    terms; evaluation or without a teacher, e.g. the EMA copy: the task terms and zeros).
    """

    def __init__(self, student: DetectionModel, teacher: DetectionModel, settings: KDSettings) -> None:
        nn.Module.__init__(self)  # DistillationModel.__init__ loads, hooks and probes; none of that is needed here
        check_pair(student, teacher)
        self.student_model: Any = student
        self.teacher_model: Any = teacher
        self.settings = settings
        self.dis = 0.0
        self.feats_idx: list[int] = []  # no feature hooks: the Detect head returns its inputs as preds["feats"]
        self.teacher_feats_idx: list[int] = []
        self._teacher_feats: dict[int, torch.Tensor] = {}
        self._student_feats: dict[int, torch.Tensor] = {}
        self._teacher_hooks: list = []
        self._student_hooks: list = []
        student.criterion = None  # the student's criterion slot holds the KDLoss (ultralytics strips it on save)
        copy_attr(self, student)
        pairs = zip(head_channels(student), head_channels(teacher), strict=True)
        device = next(student.parameters()).device
        self.projector = (
            nn.ModuleList(nn.Conv2d(cs, ct, kernel_size=1) for cs, ct in pairs)
            if settings.feat_weight > 0
            else nn.ModuleList()
        ).to(device)
        self._freeze_teacher()

    def kd_criterion(self) -> KDLoss:
        """The student's criterion, a :class:`KDLoss` (built on first use, after the trainer set ``args``)."""
        criterion = getattr(self.student_model, "criterion", None)
        if not isinstance(criterion, KDLoss):
            criterion = KDLoss(self.student_model, self.settings)
            self.student_model.criterion = criterion
        return criterion

    def loss(self, batch: dict[str, torch.Tensor], preds: Any = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        criterion = self.kd_criterion()
        if self.training and self.teacher_model is not None:
            with torch.no_grad():
                teacher_out = self.teacher_model(batch["img"])  # eval mode: (decoded, raw dict)
            student_preds = self.student_model(batch["img"])  # train mode: raw dict with "feats"
            return criterion(student_preds, batch, teacher_out, self.projector)
        if preds is None:
            preds = self.student_model(batch["img"])
        return criterion(preds, batch)


class KDTrainer(DetectionTrainer):
    """``DetectionTrainer`` whose ``model`` may be a prebuilt :class:`KDModel` (``trainer.model = KDModel(...)``)."""

    resume_ckpt: dict[str, Any] | None = None  # the checkpoint a resumed KD run restores (optimizer, EMA, epoch)

    def setup_model(self) -> Any:
        if isinstance(self.model, nn.Module):  # prebuilt KDModel: hand ultralytics the checkpoint to resume from
            return self.resume_ckpt
        return super().setup_model()

    def set_model_attributes(self) -> None:
        super().set_model_attributes()
        model = unwrap_model(cast(nn.Module, self.model))
        student = getattr(model, "student_model", None)
        if student is not None:  # the loss reads the hyperparameters from the student
            student.nc = self.data["nc"]
            student.names = self.data["names"]
            student.args = self.args


def load_detection_model(path: Path) -> DetectionModel:
    """Load a DetectionModel checkpoint (the caller has verified its sha256: this unpickles it), eval mode, FP32."""
    model, _ = load_checkpoint(str(path))
    if not isinstance(model, DetectionModel):
        raise ValueError(f"{path}: expected an ultralytics DetectionModel checkpoint, got {type(model).__name__}")
    return model.float().eval()


def build_kd_trainer(
    overrides: dict[str, Any], student_spec: str, teacher_path: Path, settings: KDSettings
) -> KDTrainer:
    """A trainer whose model is ``KDModel(student, teacher)``.

    ``student_spec`` is a model ``.yaml`` or a ``.pt`` path (both verified by the caller before this unpickles
    them), ``teacher_path`` a teacher checkpoint.
    """
    trainer = KDTrainer(overrides=overrides)
    if trainer.resume:  # overrides["resume"] = the stage's own last.pt: a KDModel whose teacher was stripped
        saved, ckpt = load_checkpoint(str(trainer.args.resume))
        student = trainer.get_model(cfg=cast(dict, saved.student_model.yaml), weights=saved.student_model, verbose=False)
        model = KDModel(student, load_detection_model(teacher_path), settings)
        model.projector.load_state_dict(saved.projector.state_dict())
        trainer.model, trainer.resume_ckpt = cast(Any, model), ckpt
        return trainer
    if student_spec.lower().endswith((".pt", ".pth")):
        weights = load_detection_model(Path(student_spec))
        student = trainer.get_model(cfg=cast(dict, weights.yaml), weights=weights, verbose=False)
    else:
        student = trainer.get_model(cfg=student_spec, verbose=False)
    trainer.model = cast(Any, KDModel(student, load_detection_model(teacher_path), settings))
    return trainer
