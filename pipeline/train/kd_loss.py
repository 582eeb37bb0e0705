"""edgekd's distillation loss for YOLOv8-style detectors (anchor-free head, DFL box distributions).

YOLOv8-L and YOLOv8-S share the strides 8/16/32, so at the same input size their dense predictions align one
to one: anchor ``a`` of the student and of the teacher look at the same image location. The loss is

    L = task_weight * L_task + cls_weight * L_cls + loc_weight * L_loc + feat_weight * L_feat

- ``L_task``: ultralytics' own v8 detection loss (CIoU box + BCE cls + DFL), with its TaskAlignedAssigner;
  ``task_weight < 1`` gives the "task-dampened" KD.
- ``L_cls`` (decision level): per-anchor, per-class Bernoulli KL between the teacher's and the student's sigmoid
  class scores at a temperature ``T`` (times ``T**2``), weighted per anchor toward anchors the assigner marks
  positive or the teacher is confident about.
- ``L_loc`` (localization level, Localization Distillation): KL between the teacher's and the student's DFL box
  distributions per box side, at a temperature, with the same anchor weights.
- ``L_feat`` (feature level): the student's neck features (P3/P4/P5, the Detect head's inputs) through a 1x1
  projector to the teacher's widths, then channel-wise distillation (CWD) or teacher-score-weighted MSE.
- Guard: on assigner-positive anchors where the teacher contradicts the ground truth (its top class is not the
  GT class, or its decoded box has IoU with the assigned GT box below ``guard_iou``) there is no soft target:
  those anchors get weight 0 in ``L_cls`` and ``L_loc``.

Shapes: ``B`` batch, ``A`` anchors (sum of H*W over the three levels), ``C`` classes, ``R`` DFL bins (16).
This module imports torch and ultralytics; only the training stages import it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.utils.loss import v8DetectionLoss

TASK_TERMS: tuple[str, ...] = ("box_loss", "cls_loss", "dfl_loss")
KD_TERMS: tuple[str, ...] = ("kd_cls", "kd_loc", "kd_feat")
LOSS_NAMES: tuple[str, ...] = TASK_TERMS + KD_TERMS
FEATURE_LOSSES: tuple[str, ...] = ("cwd", "mse")


@dataclass(frozen=True)
class KDSettings:
    """Every weight and temperature of the distillation loss (the ``distillation`` config section)."""

    task_weight: float = 1.0
    cls_weight: float = 1.0
    cls_temperature: float = 2.0
    loc_weight: float = 1.0
    loc_temperature: float = 2.0
    feat_weight: float = 1.0
    feat_loss: str = "cwd"
    feat_temperature: float = 1.0
    conf_threshold: float = 0.25
    guard: bool = True
    guard_iou: float = 0.5

    def __post_init__(self) -> None:
        if self.feat_loss not in FEATURE_LOSSES:
            raise ValueError(f"feat_loss {self.feat_loss!r}: expected one of {FEATURE_LOSSES}")
        for name in ("cls_temperature", "loc_temperature", "feat_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, dist: Any) -> KDSettings:
        """From a ``DistillationCfg`` (or anything with the same attributes)."""
        feat = getattr(dist.feat_loss, "value", dist.feat_loss)
        return cls(
            task_weight=dist.task_weight,
            cls_weight=dist.cls_weight,
            cls_temperature=dist.cls_temperature,
            loc_weight=dist.loc_weight,
            loc_temperature=dist.loc_temperature,
            feat_weight=dist.feat_weight,
            feat_loss=str(feat),
            feat_temperature=dist.feat_temperature,
            conf_threshold=dist.conf_threshold,
            guard=dist.guard,
            guard_iou=dist.guard_iou,
        )

    def only(self, term: str) -> KDSettings:
        """These settings with every KD weight but ``term``'s (``"cls"``, ``"loc"`` or ``"feat"``) set to 0."""
        if term not in ("cls", "loc", "feat"):
            raise ValueError(f"term {term!r}: expected 'cls', 'loc' or 'feat'")
        zeroed: dict[str, Any] = {f"{t}_weight": 0.0 for t in ("cls", "loc", "feat") if t != term}
        return replace(self, **zeroed)


# ---------------------------------------------------------------- pure terms
def bernoulli_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Elementwise KL(Bern(sigmoid(t/T)) || Bern(sigmoid(s/T))) * T**2; same shape as the inputs, >= 0.

    YOLOv8 scores are independent sigmoids (BCE), so the soft target of each class is a Bernoulli.
    """
    t = teacher_logits.detach() / temperature
    s = student_logits / temperature
    p = t.sigmoid()
    kl = F.binary_cross_entropy_with_logits(s, p, reduction="none") - F.binary_cross_entropy_with_logits(
        t, p, reduction="none"
    )
    return kl.clamp(min=0) * temperature**2


def dfl_kl(student_dist: torch.Tensor, teacher_dist: torch.Tensor, temperature: float) -> torch.Tensor:
    """Localization distillation: KL(softmax(t/T) || softmax(s/T)) per box side, averaged over the 4 sides, * T**2.

    Args:
        student_dist, teacher_dist: (..., 4, R) DFL logits.

    Returns:
        (...) per-anchor loss.
    """
    log_q = F.log_softmax(student_dist / temperature, dim=-1)
    log_p = F.log_softmax(teacher_dist.detach() / temperature, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean(-1) * temperature**2


def anchor_weights(teacher_conf: torch.Tensor, fg_mask: torch.Tensor, conf_threshold: float) -> torch.Tensor:
    """Per-anchor weight of the soft targets: 1 on assigner-positive anchors and where the teacher's top score is at
    least ``conf_threshold``, the teacher's top score elsewhere.

    Args:
        teacher_conf: (B, A) teacher's max class probability. fg_mask: (B, A) bool.

    Returns:
        (B, A) weights in [0, 1].
    """
    conf = teacher_conf.detach()
    w = torch.where(conf >= conf_threshold, torch.ones_like(conf), conf)
    return torch.maximum(w, fg_mask.to(w.dtype))


def pair_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """IoU of corresponding xyxy boxes: (..., 4) x (..., 4) -> (...)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + eps)


def guard_mask(
    teacher_logits: torch.Tensor,
    teacher_boxes: torch.Tensor,
    gt_cls: torch.Tensor,
    gt_boxes: torch.Tensor,
    fg_mask: torch.Tensor,
    iou_threshold: float,
) -> torch.Tensor:
    """Anchors where the teacher contradicts the ground truth (no soft target there).

    Args:
        teacher_logits: (B, A, C) class logits. teacher_boxes: (B, A, 4) xyxy pixels.
        gt_cls: (B, A) assigned GT class. gt_boxes: (B, A, 4) assigned GT xyxy pixels. fg_mask: (B, A) bool.

    Returns:
        (B, A) bool: assigner-positive and (teacher's top class != GT class or IoU < ``iou_threshold``).
    """
    wrong_cls = teacher_logits.argmax(-1) != gt_cls
    bad_box = pair_iou(teacher_boxes.detach(), gt_boxes) < iou_threshold
    return fg_mask & (wrong_cls | bad_box)


def weighted_mean(per_anchor: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(loss * w) / max(sum(w), 1) over (B, A)."""
    return (per_anchor * weights).sum() / weights.sum().clamp(min=1.0)


def cwd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Channel-wise distillation (Shu et al., ICCV 2021): each channel's spatial softmax, KL teacher -> student.

    Args:
        student, teacher: (B, C, H, W), the student already projected to the teacher's C.

    Returns:
        scalar: KL summed over H*W, averaged over B*C, times T**2.
    """
    log_q = F.log_softmax(student.flatten(2) / temperature, dim=-1)
    log_p = F.log_softmax(teacher.detach().flatten(2) / temperature, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean() * temperature**2


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Teacher-score-weighted MSE: (B, C, H, W) x (B, C, H, W) with a (B, 1, H, W) weight map -> scalar."""
    err = (student - teacher.detach()).pow(2)
    return (err * mask).sum() / (mask.sum() * student.shape[1]).clamp(min=1e-9)


# ---------------------------------------------------------------- criterion
class KDLoss(v8DetectionLoss):
    """ultralytics' v8 detection loss plus edgekd's distillation terms.

    ``__call__(preds, batch, teacher_preds, projector)`` returns ``(loss_vector * batch_size, items)`` with the six
    terms of :data:`LOSS_NAMES` (each already multiplied by its weight, so the items add up to the optimized loss);
    without ``teacher_preds`` (validation) the KD terms are zero.
    """

    def __init__(self, model: nn.Module, settings: KDSettings) -> None:
        super().__init__(model)
        self.settings = settings
        self.loss_names: tuple[str, ...] = LOSS_NAMES  # type: ignore[assignment]

    def __call__(  # type: ignore[override]
        self,
        preds: Any,
        batch: dict[str, torch.Tensor],
        teacher_preds: Any = None,
        projector: nn.ModuleList | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        preds = self.parse_output(preds)
        batch_size = preds["boxes"].shape[0]
        assigned, task, _ = self.get_assigned_targets_and_loss(preds, batch)
        s = self.settings
        if teacher_preds is None:
            kd = torch.zeros(3, device=task.device, dtype=task.dtype)
        else:
            kd = torch.stack(self.kd_terms(preds, self.parse_output(teacher_preds), batch, assigned, projector))
        weights = torch.tensor([s.cls_weight, s.loc_weight, s.feat_weight], device=task.device, dtype=task.dtype)
        terms = torch.cat([task * s.task_weight, kd.to(task.dtype) * weights])
        return terms * batch_size, dict(zip(self.loss_names, terms.detach(), strict=True))

    def kd_terms(
        self,
        preds: dict[str, Any],
        teacher: dict[str, Any],
        batch: dict[str, torch.Tensor],
        assigned: tuple[torch.Tensor, ...],
        projector: nn.ModuleList | None,
    ) -> list[torch.Tensor]:
        """[L_cls, L_loc, L_feat] (unweighted; a term whose weight is 0 is not computed and is 0)."""
        fg_mask, target_gt_idx, target_bboxes, anchor_points, stride_tensor = assigned
        s = self.settings
        s_scores = preds["scores"].permute(0, 2, 1)  # (B, A, C)
        t_scores = teacher["scores"].detach().permute(0, 2, 1).to(s_scores.dtype)
        if s_scores.shape != t_scores.shape:
            raise ValueError(
                f"teacher and student predictions do not align: student {tuple(s_scores.shape)}, teacher "
                f"{tuple(t_scores.shape)} (B, anchors, classes); they need the same classes, strides and input size"
            )
        b, a, _ = s_scores.shape
        s_dist = preds["boxes"].permute(0, 2, 1).reshape(b, a, 4, self.reg_max)
        t_dist = teacher["boxes"].detach().permute(0, 2, 1).reshape(b, a, 4, self.reg_max).to(s_dist.dtype)
        t_conf = t_scores.sigmoid().amax(-1)  # (B, A)
        w = anchor_weights(t_conf, fg_mask, s.conf_threshold)
        if s.guard:
            t_boxes = self.bbox_decode(anchor_points, t_dist.reshape(b, a, -1)) * stride_tensor
            gt_cls = self.assigned_classes(preds, batch, target_gt_idx)
            w = w * ~guard_mask(t_scores, t_boxes, gt_cls, target_bboxes, fg_mask, s.guard_iou)
        zero = s_scores.new_zeros(())
        l_cls = weighted_mean(bernoulli_kl(s_scores, t_scores, s.cls_temperature).sum(-1), w) if s.cls_weight else zero
        l_loc = weighted_mean(dfl_kl(s_dist, t_dist, s.loc_temperature), w) if s.loc_weight else zero
        l_feat = self.feature_term(preds["feats"], teacher["feats"], t_conf, projector) if s.feat_weight else zero
        return [l_cls, l_loc, l_feat]

    def assigned_classes(
        self, preds: dict[str, Any], batch: dict[str, torch.Tensor], target_gt_idx: torch.Tensor
    ) -> torch.Tensor:
        """(B, A) class of the GT box each anchor is assigned to (meaningful on assigner-positive anchors only)."""
        feats = preds["feats"]
        stride0 = float(cast(Any, self.stride)[0])
        imgsz = torch.tensor(feats[0].shape[2:], device=self.device, dtype=torch.float32) * stride0
        targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]), 1)
        targets = self.preprocess(targets.to(self.device), target_gt_idx.shape[0], scale_tensor=imgsz[[1, 0, 1, 0]])
        labels = targets[..., 0].long()  # (B, n_max)
        if labels.shape[1] == 0:
            return torch.zeros_like(target_gt_idx)
        return labels.gather(1, target_gt_idx.clamp(max=labels.shape[1] - 1))

    def feature_term(
        self,
        s_feats: list[torch.Tensor],
        t_feats: list[torch.Tensor],
        t_conf: torch.Tensor,
        projector: nn.ModuleList | None,
    ) -> torch.Tensor:
        """Mean over the neck levels of CWD or score-weighted MSE between projected student and teacher features."""
        if projector is None or len(projector) != len(s_feats) or len(t_feats) != len(s_feats):
            raise ValueError("feature distillation needs one 1x1 projector per neck level")
        sizes = [f.shape[2] * f.shape[3] for f in t_feats]
        conf_maps = t_conf.split(sizes, dim=1)
        losses = []
        for proj, sf, tf, conf in zip(projector, s_feats, t_feats, conf_maps, strict=True):
            ps = proj(sf)
            tf = tf.detach().to(ps.dtype)
            if self.settings.feat_loss == "cwd":
                losses.append(cwd_loss(ps, tf, self.settings.feat_temperature))
            else:
                losses.append(masked_mse(ps, tf, conf.view(tf.shape[0], 1, *tf.shape[2:])))
        return torch.stack(losses).mean()
