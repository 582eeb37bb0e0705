"""edgekd's distillation loss terms on random tensors, against slow obvious references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pipeline.config import build_config
from pipeline.train.kd_loss import (
    LOSS_NAMES,
    KDLoss,
    KDSettings,
    anchor_weights,
    bernoulli_kl,
    cwd_loss,
    dfl_kl,
    guard_mask,
    masked_mse,
    pair_iou,
    weighted_mean,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- pure terms
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_bernoulli_kl_matches_reference(temperature):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, generator=g) * 3, torch.randn(3, 5, generator=g) * 3
    out = bernoulli_kl(s, t, temperature)
    for i in range(3):
        for j in range(5):
            p, q = _sigmoid(t[i, j].item() / temperature), _sigmoid(s[i, j].item() / temperature)
            ref = (p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))) * temperature**2
            assert out[i, j].item() == pytest.approx(ref, rel=1e-4, abs=1e-6)


def test_bernoulli_kl_zero_when_equal_and_temperature_limit():
    x = torch.randn(4, 7) * 4
    assert torch.allclose(bernoulli_kl(x, x.clone(), 2.0), torch.zeros_like(x), atol=1e-6)
    s, t = torch.tensor([1.5, -2.0, 0.3], dtype=torch.float64), torch.tensor([-0.5, 1.0, 0.3], dtype=torch.float64)
    assert (bernoulli_kl(s, t, 1.0)[:2] > 0).all()
    # high temperature: KL(sigmoid(t/T) || sigmoid(s/T)) * T^2 -> (s - t)^2 / 8 (softer targets, logit matching)
    assert torch.allclose(bernoulli_kl(s, t, 1000.0), (s - t) ** 2 / 8, rtol=1e-2, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_dfl_kl_matches_reference(temperature):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 6, 4, 16, generator=g), torch.randn(2, 6, 4, 16, generator=g)
    out = dfl_kl(s, t, temperature)
    assert out.shape == (2, 6)
    for b in range(2):
        for a in range(6):
            sides = []
            for k in range(4):
                p = torch.softmax(t[b, a, k].double() / temperature, 0)
                q = torch.softmax(s[b, a, k].double() / temperature, 0)
                sides.append(float(sum(p[i] * math.log(p[i] / q[i]) for i in range(16))))
            assert out[b, a].item() == pytest.approx(sum(sides) / 4 * temperature**2, rel=1e-4)


def test_dfl_kl_zero_when_equal_and_temperature_limit():
    x = torch.randn(3, 4, 16)
    assert torch.allclose(dfl_kl(x, x.clone(), 2.0), torch.zeros(3), atol=1e-6)
    s, t = torch.randn(1, 4, 16), torch.randn(1, 4, 16)
    # high temperature: KL * T^2 -> Var_uniform(s - t) / 2 per side
    d = (s - t).double()
    limit = ((d - d.mean(-1, keepdim=True)) ** 2).mean(-1).mean(-1) / 2
    assert dfl_kl(s.double(), t.double(), 1e4).item() == pytest.approx(limit.item(), rel=1e-3)


def test_pair_iou_against_torchvision():
    from torchvision.ops import box_iou

    g = torch.Generator().manual_seed(2)
    xy = torch.rand(20, 2, generator=g) * 50
    a = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 40 + 1], 1)
    xy2 = xy + torch.randn(20, 2, generator=g) * 10
    b = torch.cat([xy2, xy2 + torch.rand(20, 2, generator=g) * 40 + 1], 1)
    assert torch.allclose(pair_iou(a, b), box_iou(a, b).diagonal(), atol=1e-6)
    assert pair_iou(a.view(4, 5, 4), b.view(4, 5, 4)).shape == (4, 5)


def test_anchor_weights():
    conf = torch.tensor([[0.9, 0.1, 0.25, 0.0]])
    fg = torch.tensor([[False, True, False, False]])
    assert anchor_weights(conf, fg, 0.25).tolist() == [[1.0, 1.0, 1.0, 0.0]]
    assert torch.allclose(anchor_weights(conf, torch.zeros_like(fg), 0.95), conf)


def test_guard_mask_marks_teacher_contradictions():
    # anchors: fg agreeing, fg wrong class, fg poor box, background wrong everything
    logits = torch.tensor([[[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]]])
    gt_box = torch.tensor([0.0, 0, 10, 10])
    t_boxes = torch.stack([gt_box, gt_box, torch.tensor([8.0, 8, 18, 18]), torch.tensor([50.0, 50, 60, 60])])[None]
    gt_boxes = gt_box.expand(1, 4, 4)
    gt_cls = torch.zeros(1, 4, dtype=torch.long)
    fg = torch.tensor([[True, True, True, False]])
    assert guard_mask(logits, t_boxes, gt_cls, gt_boxes, fg, 0.5).tolist() == [[False, True, True, False]]
    assert guard_mask(logits, t_boxes, gt_cls, gt_boxes, fg, 0.0).tolist() == [[False, True, False, False]]


def test_weighted_mean_and_empty():
    loss = torch.tensor([[1.0, 2.0, 3.0]])
    assert weighted_mean(loss, torch.tensor([[0.0, 1.0, 1.0]])).item() == pytest.approx(2.5)
    assert weighted_mean(loss, torch.zeros(1, 3)).item() == 0.0
    assert weighted_mean(torch.zeros(0, 0), torch.zeros(0, 0)).item() == 0.0


def test_cwd_loss_reference_and_invariances():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    ref = 0.0
    for b in range(2):
        for c in range(3):
            p = torch.softmax(t[b, c].flatten().double() / 2.0, 0)
            q = torch.softmax(s[b, c].flatten().double() / 2.0, 0)
            ref += float((p * (p / q).log()).sum())
    assert cwd_loss(s, t, 2.0).item() == pytest.approx(ref / 6 * 4.0, rel=1e-4)
    assert cwd_loss(t, t.clone(), 1.0).item() == pytest.approx(0.0, abs=1e-6)
    shift = torch.randn(1, 3, 1, 1, generator=g)  # a per-channel offset does not change a spatial softmax
    assert cwd_loss(s + shift, t, 1.0).item() == pytest.approx(cwd_loss(s, t, 1.0).item(), rel=1e-5)


def test_masked_mse_reference():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.rand(2, 1, 4, 4)
    ref = sum(
        float(mask[b, 0, i, j]) * float((s[b, c, i, j] - t[b, c, i, j]) ** 2)
        for b in range(2)
        for c in range(3)
        for i in range(4)
        for j in range(4)
    ) / (float(mask.sum()) * 3)
    assert masked_mse(s, t, mask).item() == pytest.approx(ref, rel=1e-4)
    assert masked_mse(t, t.clone(), mask).item() == 0.0


def test_settings_from_config_and_only():
    cfg = build_config({"distillation": {"cls_weight": 2.0, "feat_loss": "mse", "guard_iou": 0.3}})
    s = KDSettings.from_config(cfg.distillation)
    assert (s.cls_weight, s.feat_loss, s.guard_iou, s.loc_weight) == (2.0, "mse", 0.3, 1.0)
    only = s.only("loc")
    assert (only.cls_weight, only.loc_weight, only.feat_weight) == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        s.only("box")
    with pytest.raises(ValueError):
        KDSettings(feat_loss="l1")


# ---------------------------------------------------------------- criterion
def _criterion(settings: KDSettings) -> tuple[KDLoss, nn.Module]:
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    model.args = get_cfg()
    return KDLoss(model, settings), model


def _batch(bs: int = 2, size: int = 64) -> dict[str, torch.Tensor]:
    return {
        "img": torch.rand(bs, 3, size, size),
        "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
        "cls": torch.tensor([[0.0], [2.0], [1.0]]),
        "bboxes": torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.7, 0.6, 0.3, 0.3], [0.5, 0.5, 0.5, 0.5]]),
    }


def _identity_projector(channels: list[int]) -> nn.ModuleList:
    convs = []
    for c in channels:
        conv = nn.Conv2d(c, c, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.eye(c).view(c, c, 1, 1))
            conv.bias.zero_()
        convs.append(conv)
    return nn.ModuleList(convs)


def _detached(preds: dict) -> dict:
    return {
        k: ([f.detach().clone() for f in v] if isinstance(v, list) else v.detach().clone()) for k, v in preds.items()
    }


def test_kd_loss_zero_for_identical_teacher_and_gradients_flow():
    crit, model = _criterion(KDSettings())
    model.train()
    batch = _batch()
    preds = model(batch["img"])
    projector = _identity_projector([f.shape[1] for f in preds["feats"]])
    loss, items = crit(preds, batch, _detached(preds), projector)
    assert tuple(items) == LOSS_NAMES and loss.shape == (6,)
    for term in ("kd_cls", "kd_loc", "kd_feat"):
        assert items[term].item() == pytest.approx(0.0, abs=1e-6), term
    assert torch.allclose(loss[:3], crit.loss(preds, batch)[0])  # task terms are ultralytics' own

    teacher = _detached(preds)
    teacher["scores"] = teacher["scores"] + torch.randn_like(teacher["scores"])
    teacher["boxes"] = teacher["boxes"] + torch.randn_like(teacher["boxes"])
    teacher["feats"] = [f + torch.randn_like(f) for f in teacher["feats"]]
    loss, items = crit(preds, batch, teacher, projector)
    assert all(items[t].item() > 0 for t in ("kd_cls", "kd_loc", "kd_feat"))
    model.zero_grad()
    loss.sum().backward()
    assert projector[0].weight.grad is not None and projector[0].weight.grad.abs().sum() > 0
    head = model.model[-1]
    assert head.cv3[0][-1].weight.grad.abs().sum() > 0 and head.cv2[0][-1].weight.grad.abs().sum() > 0


def test_kd_loss_weights_scale_terms_and_no_teacher_gives_zeros():
    crit, model = _criterion(KDSettings(task_weight=0.5, cls_weight=2.0, loc_weight=0.0, feat_weight=0.0))
    model.train()
    batch = _batch()
    preds = model(batch["img"])
    teacher = _detached(preds)
    teacher["scores"] = teacher["scores"] + 1.0
    teacher["boxes"] = teacher["boxes"] + torch.randn_like(teacher["boxes"])
    loss, items = crit(preds, batch, teacher, None)  # no projector needed without the feature term
    base = KDLoss(model, KDSettings(cls_weight=1.0, loc_weight=0.0, feat_weight=0.0))
    _, ref = base(preds, batch, teacher, None)
    assert items["kd_cls"].item() == pytest.approx(2 * ref["kd_cls"].item(), rel=1e-5)
    assert items["box_loss"].item() == pytest.approx(0.5 * ref["box_loss"].item(), rel=1e-5)
    assert items["kd_loc"].item() == 0.0 and items["kd_feat"].item() == 0.0
    assert loss.sum().item() == pytest.approx(sum(v.item() for v in items.values()) * 2, rel=1e-5)  # x batch size
    _, val_items = crit(preds, batch)
    assert [val_items[t].item() for t in ("kd_cls", "kd_loc", "kd_feat")] == [0.0, 0.0, 0.0]


def test_guard_removes_soft_targets_where_teacher_contradicts_gt():
    settings = KDSettings(loc_weight=0.0, feat_weight=0.0, conf_threshold=1.0)
    crit, model = _criterion(settings)
    model.train()
    batch = _batch()
    preds = model(batch["img"])
    (fg, gt_idx, *_), _, _ = crit.get_assigned_targets_and_loss(preds, batch)
    assert fg.any()
    gt_cls = crit.assigned_classes(preds, batch, gt_idx)
    teacher = _detached(preds)
    scores = teacher["scores"].permute(0, 2, 1).clone()  # (B, A, C)
    wrong = (gt_cls + 1) % 3
    scores[fg] = -8.0
    scores[fg, wrong[fg]] = 8.0  # confident and wrong on every positive anchor, identical elsewhere
    teacher["scores"] = scores.permute(0, 2, 1).contiguous()
    _, guarded = crit(preds, batch, teacher, None)
    _, unguarded = KDLoss(model, KDSettings(loc_weight=0.0, feat_weight=0.0, conf_threshold=1.0, guard=False))(
        preds, batch, teacher, None
    )
    assert unguarded["kd_cls"].item() > 0.1
    assert guarded["kd_cls"].item() == pytest.approx(0.0, abs=1e-6)


def test_misaligned_teacher_is_rejected():
    crit, model = _criterion(KDSettings())
    model.train()
    batch = _batch()
    preds = model(batch["img"])
    teacher = _detached(preds)
    teacher["scores"] = teacher["scores"][:, :2]
    with pytest.raises(ValueError, match="do not align"):
        crit(preds, batch, teacher, None)
