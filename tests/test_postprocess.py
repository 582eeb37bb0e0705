"""deploy.postprocess: decode + class-aware NMS against slow references, torchvision and ultralytics."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.errors import InputError
from deploy.postprocess import (
    NmsParams,
    OutputLayout,
    batched_nms,
    cxcywh_to_xyxy,
    detect_layout,
    nms,
    postprocess,
)
from deploy.preprocess import letterbox_geometry


# ---------------------------------------------------------------- slow, obviously-correct references
def slow_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def slow_nms(boxes, scores, thr) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep: list[int] = []
    for i in order:
        if all(slow_iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def slow_class_nms(boxes, scores, classes, thr) -> list[int]:
    kept = []
    for c in sorted(set(classes.tolist())):
        idx = np.flatnonzero(classes == c)
        kept += [int(idx[k]) for k in slow_nms(boxes[idx], scores[idx], thr)]
    return sorted(kept, key=lambda i: (-float(scores[i]), i))


def random_boxes(n: int, seed: int, size: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(2, size / 3, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n + 0.5 / n  # distinct scores: no ties
    return boxes, scores


# ---------------------------------------------------------------- small pieces
def test_cxcywh_to_xyxy():
    out = cxcywh_to_xyxy(np.array([[10, 20, 4, 6], [0, 0, 0, 0]], np.float32))
    np.testing.assert_array_equal(out, [[8, 17, 12, 23], [0, 0, 0, 0]])
    assert cxcywh_to_xyxy(np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_nms_with_ties_zero_area_and_negative_scores_matches_slow():
    rng = np.random.default_rng(7)
    for trial in range(40):
        boxes, _ = random_boxes(60, trial)
        boxes[3] = [3, 3, 3, 3]  # zero area (IoU 0 with everything)
        boxes[4] = boxes[5]  # identical boxes
        scores = np.round(rng.uniform(-1, 1, 60), 1).astype(np.float32)  # many ties, some negative
        assert nms(boxes, scores, 0.5).tolist() == slow_nms(boxes, scores, 0.5)
        assert nms(boxes, scores, 0.5, max_keep=4).tolist() == slow_nms(boxes, scores, 0.5)[:4]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_slow_reference(seed, thr):
    boxes, scores = random_boxes(150, seed)
    assert nms(boxes, scores, thr).tolist() == slow_nms(boxes, scores, thr)


@pytest.mark.parametrize("seed", range(4))
def test_nms_matches_torchvision(seed):
    import torch
    import torchvision

    boxes, scores = random_boxes(400, seed, size=300)
    ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), ref)


def test_nms_max_keep_is_a_prefix_and_empty_is_empty():
    boxes, scores = random_boxes(200, 7)
    full = nms(boxes, scores, 0.6)
    np.testing.assert_array_equal(nms(boxes, scores, 0.6, max_keep=5), full[:5])
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)


@pytest.mark.parametrize("seed", range(4))
def test_class_aware_nms_matches_per_class_loop(seed):
    boxes, scores = random_boxes(200, seed)
    classes = np.random.default_rng(seed).integers(0, 3, 200)
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == slow_class_nms(boxes, scores, classes, 0.5)


def test_identical_boxes_of_different_classes_both_survive():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    keep = batched_nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 0]), 0.5)
    assert keep.tolist() == [0, 1]


# ---------------------------------------------------------------- full decode vs ultralytics
def raw_prediction(nc: int, anchors: int, seed: int, size=(96, 160)) -> np.ndarray:
    """(1, 4 + nc, A): cx, cy, w, h in input pixels + class probabilities."""
    rng = np.random.default_rng(seed)
    cxcy = rng.uniform(0, 1, (2, anchors)) * np.array([[size[1]], [size[0]]])
    wh = rng.uniform(3, 50, (2, anchors))
    scores = rng.uniform(0, 1, (nc, anchors)) ** 3
    return np.concatenate([cxcy, wh, scores])[None].astype(np.float32)


def ultralytics_reference(pred: np.ndarray, meta, params: NmsParams) -> np.ndarray:
    """ultralytics' non_max_suppression + scale_boxes -> (K, 6) x1 y1 x2 y2 conf cls."""
    import torch
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    out = non_max_suppression(
        torch.from_numpy(pred),
        params.conf,
        params.iou,
        agnostic=False,
        multi_label=False,
        max_det=params.max_det,
        max_nms=params.max_nms,
    )[0]
    out[:, :4] = scale_boxes(meta.input_shape, out[:, :4], meta.orig_shape)
    return out.numpy()


@pytest.mark.parametrize(
    ("seed", "params", "orig"),
    [
        (0, NmsParams(conf=0.001, iou=0.7, max_det=300), (720, 1280)),
        (1, NmsParams(conf=0.25, iou=0.45, max_det=100), (480, 200)),
        (2, NmsParams(conf=0.05, iou=0.7, max_det=20, max_nms=50), (96, 160)),
    ],
)
def test_postprocess_matches_ultralytics(seed, params, orig):
    pred = raw_prediction(nc=3, anchors=1000, seed=seed)
    meta = letterbox_geometry(orig, (96, 160))
    ref = ultralytics_reference(pred, meta, params)
    fused = postprocess({"output0": pred}, [meta], nc=3, params=params)[0]
    split = postprocess({"boxes": pred[:, :4], "scores": pred[:, 4:]}, [meta], nc=3, params=params)[0]
    for det in (fused, split):
        assert len(det) == len(ref) > 0
        np.testing.assert_allclose(det.xyxy, ref[:, :4], rtol=1e-6, atol=1e-3)
        np.testing.assert_array_equal(det.confidence, ref[:, 4])
        np.testing.assert_array_equal(det.class_id, ref[:, 5].astype(np.int64))


def test_postprocess_batch_and_extra_channels():
    preds = np.concatenate([raw_prediction(2, 300, 0), raw_prediction(2, 300, 1)])
    with_extra = np.concatenate([preds, np.ones((2, 5, 300), np.float32)], 1)  # e.g. mask coefficients
    metas = [letterbox_geometry((96, 160), (96, 160))] * 2
    a = postprocess({"output0": preds}, metas, nc=2)
    b = postprocess({"output0": with_extra}, metas, nc=2)
    single = postprocess({"output0": preds[1:]}, metas[:1], nc=2)[0]
    assert len(a) == 2 and len(a[0]) and len(a[1])
    np.testing.assert_array_equal(a[1].xyxy, single.xyxy)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.xyxy, y.xyxy)


def test_postprocess_ignores_padding_rows_and_rejects_short_batches():
    pred = np.concatenate([raw_prediction(2, 100, 0), np.zeros((1, 6, 100), np.float32)])
    meta = letterbox_geometry((96, 160), (96, 160))
    assert len(postprocess({"output0": pred}, [meta], nc=2)) == 1
    with pytest.raises(InputError, match="outputs for 2 image"):
        postprocess({"output0": pred}, [meta] * 3, nc=2)


def test_empty_inputs():
    meta = letterbox_geometry((96, 160), (96, 160))
    pred = raw_prediction(3, 50, 0)
    pred[:, 4:] = 0.0
    det = postprocess({"output0": pred}, [meta], nc=3, params=NmsParams(conf=0.1))[0]
    assert len(det) == 0 and det.xyxy.shape == (0, 4)
    assert postprocess({"output0": pred}, [], nc=3) == []
    zero_anchors = postprocess({"boxes": np.zeros((1, 4, 0)), "scores": np.zeros((1, 3, 0))}, [meta], nc=3)
    assert len(zero_anchors[0]) == 0


def test_conf_is_strictly_greater_than():
    pred = np.zeros((1, 5, 2), np.float32)
    pred[0, :4] = [[10, 20], [10, 20], [5, 5], [5, 5]]
    pred[0, 4] = [0.5, 0.50001]
    det = postprocess({"output0": pred}, [letterbox_geometry((32, 32), (32, 32))], nc=1, params=NmsParams(conf=0.5))
    assert det[0].confidence.tolist() == [np.float32(0.50001)]


def test_end2end_layout():
    rows = np.array([[[1, 2, 11, 12, 0.9, 2], [3, 4, 13, 14, 0.2, 0], [0, 0, 0, 0, 0, 0]]], np.float32)
    meta = letterbox_geometry((64, 64), (32, 32))  # x2 back to the original
    outputs = {"output0": rows}
    assert detect_layout(outputs, nc=80) is OutputLayout.END2END
    det = postprocess(outputs, [meta], nc=80, params=NmsParams(conf=0.25))[0]
    np.testing.assert_allclose(det.xyxy, [[2, 4, 22, 24]])
    assert det.class_id.tolist() == [2]


def test_layout_errors_are_clear():
    with pytest.raises(InputError, match="no known layout"):
        detect_layout({"x": np.zeros((1, 3, 10))}, nc=3)
    meta = letterbox_geometry((32, 32), (32, 32))
    with pytest.raises(InputError, match="3 class name"):
        postprocess({"boxes": np.zeros((1, 4, 8)), "scores": np.zeros((1, 5, 8))}, [meta], nc=3)


@pytest.mark.parametrize("kwargs", [{"conf": -0.1}, {"iou": 1.5}, {"max_det": 0}, {"max_nms": 0}])
def test_bad_params(kwargs):
    with pytest.raises(InputError):
        NmsParams(**kwargs)
