"""The teacher-student wrapper on ultralytics' trainer plumbing: frozen teacher, EMA copy, plain saved student."""

from __future__ import annotations

import io
from copy import deepcopy

import pytest
import torch

from pipeline.train.kd_loss import LOSS_NAMES, KDLoss, KDSettings
from pipeline.train.kd_trainer import KDModel, check_pair, head_channels


def _models(student_yaml: str = "yolov8n.yaml", teacher_yaml: str = "yolov8s.yaml", nc: int = 3):
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    student = DetectionModel(student_yaml, nc=nc, verbose=False)
    teacher = DetectionModel(teacher_yaml, nc=nc, verbose=False).eval()
    student.args = get_cfg()
    return student, teacher


def _batch(size: int = 64) -> dict[str, torch.Tensor]:
    return {
        "img": torch.rand(2, 3, size, size),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[1.0], [2.0]]),
        "bboxes": torch.tensor([[0.4, 0.4, 0.4, 0.5], [0.6, 0.5, 0.3, 0.3]]),
    }


def test_wrapper_trains_student_and_projector_only():
    student, teacher = _models()
    model = KDModel(student, teacher, KDSettings())
    assert head_channels(student) == [64, 128, 256] and head_channels(teacher) == [128, 256, 512]
    assert [(p.in_channels, p.out_channels) for p in model.projector] == [(64, 128), (128, 256), (256, 512)]
    assert not any(p.requires_grad for p in model.teacher_model.parameters())
    model.train()
    assert model.student_model.training and not model.teacher_model.training
    loss, items = model(_batch())
    assert tuple(items) == LOSS_NAMES and all(items[t].item() > 0 for t in ("kd_cls", "kd_loc", "kd_feat"))
    loss.sum().backward()
    assert all(p.grad is None for p in model.teacher_model.parameters())
    assert model.projector[2].weight.grad is not None
    assert isinstance(model.criterion, KDLoss)  # lives in the student's criterion slot, which ultralytics strips


def test_no_projector_without_feature_term_and_pair_checks():
    student, teacher = _models()
    assert len(KDModel(student, teacher, KDSettings(feat_weight=0.0)).projector) == 0
    other, _ = _models(nc=4)
    with pytest.raises(ValueError, match="classes differ"):
        check_pair(other, teacher)


def test_ema_copy_and_checkpoint_unwrap_to_plain_student(tmp_path):
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import ModelEMA, strip_optimizer

    student, teacher = _models()
    model = KDModel(student, teacher, KDSettings())
    model.train()
    model(_batch())[0].sum().backward()
    ema = ModelEMA(model)  # ultralytics' EMA drops the teacher from its copy
    assert ema.ema.teacher_model is None
    ema.ema.eval()
    _, items = ema.ema.loss(_batch())  # validation-time loss: task terms, KD terms zero
    assert [items[t].item() for t in ("kd_cls", "kd_loc", "kd_feat")] == [0.0, 0.0, 0.0]
    assert items["cls_loss"].item() > 0

    ckpt = deepcopy(ema.ema).half()
    ckpt.criterion = None
    path = tmp_path / "best.pt"
    torch.save({"model": None, "ema": ckpt, "train_args": {}}, path)
    stripped = strip_optimizer(path)  # what ultralytics' final_eval does to best.pt / last.pt
    assert type(stripped["model"]) is DetectionModel
    assert sum(p.numel() for p in stripped["model"].parameters()) == sum(p.numel() for p in student.parameters())
    buffer = io.BytesIO()
    torch.save(stripped, buffer)
    assert b"kd_trainer" not in buffer.getvalue() and b"kd_loss" not in buffer.getvalue()


def test_every_kd_term_falls_when_the_student_is_optimized():
    """On a fixed batch, a few optimizer steps on the total loss lower each KD term (they are learnable)."""
    student, teacher = _models("yolov8n.yaml", "yolov8n.yaml")
    with torch.no_grad():  # an opinionated teacher: its own class and box preferences per level
        for branch in (*teacher.model[-1].cv3, *teacher.model[-1].cv2):
            branch[-1].bias.uniform_(-3.0, 3.0)
    model = KDModel(student, teacher, KDSettings(task_weight=0.0))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=2e-3)
    batch = _batch(size=32)
    history = []
    for _ in range(6):
        loss, items = model(batch)
        history.append({k: items[k].item() for k in ("kd_cls", "kd_loc", "kd_feat")})
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    first, last = history[0], history[-1]
    for term in ("kd_cls", "kd_loc", "kd_feat"):
        assert first[term] > 0 and last[term] < 0.95 * first[term], (term, first[term], last[term])
