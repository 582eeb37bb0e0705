"""Hand-built cases with known answers: IoU, Caltech matching with ignore regions, FPPI, LAMR, operating point,
D-ECE, breakdowns by height / condition / distractor, and mAP on trivial cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deploy.errors import InputError
from deploy.metrics.calibration import bin_index, reliability
from deploy.metrics.evaluate import EvalOptions, evaluate
from deploy.metrics.fppi import REFERENCE_FPPI, build_curve, lamr, operating_point, recall_at_fppi
from deploy.metrics.matching import FP, IGNORED, TP, iou_matrix, match_image


def coco(images: int, anns: list[tuple], cats=("pedestrian",), attrs=None) -> dict:
    """anns: (image_id, category_id, [x, y, w, h]) or (..., {"iscrowd": 1}) tuples."""
    out = {
        "images": [
            {
                "id": i,
                "file_name": f"images/val/{i:06d}.jpg",
                "width": 200,
                "height": 100,
                "attributes": (attrs or {}).get(i, {}),
            }
            for i in range(1, images + 1)
        ],
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(cats)],
        "annotations": [],
    }
    for n, a in enumerate(anns, 1):
        extra = a[3] if len(a) > 3 else {}
        x, y, w, h = a[2]
        out["annotations"].append(
            {"id": n, "image_id": a[0], "category_id": a[1], "bbox": list(a[2]), "area": w * h, "iscrowd": 0, **extra}
        )
    return out


def det(image_id: int, bbox, score: float, cat: int = 1) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": list(bbox), "score": score}


# ------------------------------------------------------------------------------------------------------ IoU
def test_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], float)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], float)
    got = iou_matrix(a, b)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got[0], [50 / 150, 1.0, 0.0])
    np.testing.assert_allclose(got[1], [0.0, 0.0, 0.0])  # zero-area box: IoU 0, no division warning
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


# ------------------------------------------------------------------------------------------------- matching
GT1, GT2 = [0, 0, 10, 10], [2, 0, 12, 10]  # overlapping boxes, IoU 8/12


def test_greedy_matching_takes_highest_iou_unmatched_box():
    dets = np.array([[1.5, 0, 11.5, 10], [2, 0, 12, 10], [0, 0, 10, 10]], float)  # sorted by score already
    status, gt_det = match_image(dets, np.array([GT1, GT2], float), np.zeros((0, 4)))
    # det 0: IoU 8.5/11.5 with GT1, 9.5/12 with GT2 -> GT2; det 1: GT2 taken -> GT1 (8/12); det 2: both taken -> FP
    assert status.tolist() == [TP, TP, FP]
    assert gt_det.tolist() == [1, 0]


def test_unmatched_detection_on_ignore_region_is_ignored():
    dets = np.array([[1.5, 0, 11.5, 10], [2, 0, 12, 10], [0, 0, 10, 10], [100, 0, 110, 10], [104, 0, 114, 10]], float)
    ignore = np.array([[0, 0, 10, 10], [100, 0, 110, 10]], float)
    status, _ = match_image(dets, np.array([GT1, GT2], float), ignore)
    # det 3 covers the 2nd ignore region (IoU 1); det 4 overlaps it with IoU 6/14 < 0.5 -> FP
    assert status.tolist() == [TP, TP, IGNORED, IGNORED, FP]


def test_ignore_region_absorbs_many_and_is_never_missed():
    gt = coco(1, [(1, 1, [0, 0, 10, 10], {"iscrowd": 1}), (1, 1, [50, 0, 10, 10], {"ignore": 1})])
    dets = [det(1, [0, 0, 10, 10], 0.9), det(1, [0.5, 0, 10, 10], 0.8), det(1, [50, 0, 10, 10], 0.7)]
    res = evaluate(gt, dets)
    row = res["per_class"]["pedestrian"]
    assert row["n_gt"] == 0 and row["n_ignore"] == 2
    assert row["tp_at_op"] == 0 and row["fp_at_op"] == 0  # all three ignored, the `ignore` flag counts too
    assert row["lamr"] is None  # no positives: undefined, not 0 or 1


def test_matching_is_per_class_and_uses_score_order():
    gt = coco(1, [(1, 1, [0, 0, 10, 10]), (1, 2, [0, 0, 10, 10])], cats=("pedestrian", "car"))
    # listed worst first: the 0.9 detection must take the box, the 0.3 one becomes the FP
    dets = [det(1, [0, 0, 10, 10], 0.3), det(1, [0, 0, 10, 10], 0.9), det(1, [0, 0, 10, 10], 0.5, cat=2)]
    res = evaluate(gt, dets, EvalOptions(recall_target=1.0))
    ped, car = res["per_class"]["pedestrian"], res["per_class"]["car"]
    assert ped["op_threshold"] == 0.9 and ped["precision_at_op"] == 1.0 and ped["fppi_at_op"] == 0.0
    assert car["tp_at_op"] == 1 and car["op_threshold"] == 0.5


# --------------------------------------------------------------------------------------- FPPI, LAMR, op point
def ladder() -> tuple[np.ndarray, np.ndarray]:
    """TP, FP alternating from 0.9 down to 0.4: 4 positives, 10 images."""
    return np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), np.array([1, 0, 1, 0, 1, 0], bool)


def test_recall_at_reference_points_and_lamr():
    curve = build_curve(*ladder(), n_pos=4, n_images=10)
    np.testing.assert_allclose(curve.recall, [0.25, 0.25, 0.5, 0.5, 0.75, 0.75])
    np.testing.assert_allclose(curve.fppi, [0, 0.1, 0.1, 0.2, 0.2, 0.3])
    assert len(REFERENCE_FPPI) == 9 and REFERENCE_FPPI[0] == pytest.approx(0.01) and REFERENCE_FPPI[-1] == 1.0
    rec = recall_at_fppi(curve)
    np.testing.assert_allclose(rec, [0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 0.75])
    want = math.exp((4 * math.log(0.75) + 2 * math.log(0.5) + 3 * math.log(0.25)) / 9)
    assert lamr(curve) == pytest.approx(want, abs=1e-12)


def test_operating_point_reached_and_not_reached():
    curve = build_curve(*ladder(), n_pos=4, n_images=10)
    op = operating_point(curve, 0.5)
    assert (op.threshold, op.reached, op.recall, op.fppi) == (0.7, True, 0.5, 0.1)
    assert op.precision == pytest.approx(2 / 3)
    op = operating_point(curve, 0.9)
    assert not op.reached and op.max_recall == 0.75
    assert (op.threshold, op.recall, op.fppi, op.precision) == (0.5, 0.75, 0.2, 0.6)


def test_tied_scores_form_one_threshold():
    curve = build_curve(np.array([0.9, 0.5, 0.5]), np.array([True, False, True]), n_pos=2, n_images=4)
    assert curve.thresholds.tolist() == [0.9, 0.5]
    assert curve.tp.tolist() == [1, 2] and curve.fp.tolist() == [0, 1]


def test_all_false_positives_give_lamr_one_and_fppi_counts_all_images():
    gt = coco(4, [(1, 1, [0, 0, 10, 10])])  # images 2..4 have no boxes but count in FPPI
    dets = [det(2, [0, 0, 10, 10], 0.9), det(3, [0, 0, 10, 10], 0.8)]
    row = evaluate(gt, dets)["per_class"]["pedestrian"]
    assert row["lamr"] == 1.0 and row["max_recall"] == 0.0 and not row["op_reached"]
    assert row["fppi_at_op"] == 0.25 and row["op_threshold"] == 0.9  # strictest threshold of the max recall (0)


def test_end_to_end_ladder_through_evaluate():
    boxes = [[i * 20, 0, 10, 10] for i in range(4)]
    gt = coco(10, [(1, 1, b) for b in boxes])
    dets = [
        det(1, boxes[0], 0.9), det(2, [0, 0, 10, 10], 0.8), det(1, boxes[1], 0.7),
        det(3, [0, 0, 10, 10], 0.6), det(1, boxes[2], 0.5), det(4, [0, 0, 10, 10], 0.4),
    ]  # fmt: skip
    res = evaluate(gt, dets, EvalOptions(recall_target=0.5, fps=30))
    row = res["per_class"]["pedestrian"]
    assert row["op_threshold"] == 0.7 and row["recall_at_op"] == 0.5 and row["fppi_at_op"] == pytest.approx(0.1)
    assert row["fa_per_hour"] == pytest.approx(0.1 * 30 * 3600)
    want = math.exp((4 * math.log(0.75) + 2 * math.log(0.5) + 3 * math.log(0.25)) / 9)
    assert row["lamr"] == pytest.approx(want)
    assert res["overall"]["lamr"] == pytest.approx(want)  # single class: mean == class value
    assert res["thresholds"] == {"pedestrian": 0.7}


def test_empty_detections_zero_recall_lamr_one():
    gt = coco(3, [(1, 1, [0, 0, 10, 10]), (2, 1, [5, 5, 20, 20])])
    res = evaluate(gt, [])
    row = res["per_class"]["pedestrian"]
    assert row["recall_at_op"] == 0.0 and row["lamr"] == 1.0 and row["op_reached"] is False
    assert row["op_threshold"] is None and row["fppi_at_op"] == 0.0 and row["dece"] is None
    assert row["map50"] == 0.0 and res["overall"]["map50_95"] == 0.0
    assert res["overall"]["recall_at_op"] == 0.0 and res["overall"]["lamr"] == 1.0


def test_overall_is_class_mean_over_classes_with_ground_truth():
    gt = coco(2, [(1, 1, [0, 0, 10, 10]), (1, 2, [50, 0, 10, 10]), (2, 2, [0, 0, 10, 10])], cats=("a", "b", "c"))
    dets = [det(1, [0, 0, 10, 10], 0.9, 1), det(1, [50, 0, 10, 10], 0.8, 2), det(2, [80, 0, 10, 10], 0.7, 2)]
    dets.append(det(2, [0, 0, 10, 10], 0.6, 3))  # class c: no ground truth -> reported, left out of the means
    res = evaluate(gt, dets, EvalOptions(recall_target=1.0))
    a, b, c = (res["per_class"][k] for k in "abc")
    assert a["recall_at_op"] == 1.0 and b["recall_at_op"] == 0.5 and c["recall_at_op"] is None
    assert res["overall"]["recall_at_op"] == pytest.approx(0.75)
    assert b["op_threshold"] == 0.8 and b["fppi_at_op"] == 0.0  # max recall first reached before the 0.7 FP
    assert res["overall"]["fppi_at_op"] == 0.0 and res["overall"]["max_recall"] == pytest.approx(0.75)
    assert res["overall"]["op_reached"] is False and res["overall"]["n_gt"] == 3
    assert res["curves"]["pooled"]["op"]["recall"] == pytest.approx(2 / 3)  # pooled: 2 of 3 boxes found


# ---------------------------------------------------------------------------------------------------- D-ECE
def test_dece_known_value():
    conf = np.array([0.95, 0.95, 0.15, 0.15, 0.55])
    tp = np.array([1, 0, 0, 0, 1], bool)
    rel = reliability(conf, tp, n_bins=10)
    assert rel.dece == pytest.approx(0.45 * 2 / 5 + 0.15 * 2 / 5 + 0.45 / 5)
    assert rel.count.tolist() == [0, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert rel.precision[9] == 0.5 and np.isnan(rel.precision[0])
    d = rel.as_dict()
    assert d["precision"][0] is None and d["mean_confidence"][9] == pytest.approx(0.95)
    assert bin_index(np.array([0.0, 0.1, 0.999, 1.0]), 10).tolist() == [0, 1, 9, 9]
    assert reliability(np.zeros(0), np.zeros(0, bool)).dece is None


def test_perfectly_calibrated_detections_have_zero_dece():
    conf = np.array([0.75] * 4)
    assert reliability(conf, np.array([1, 1, 1, 0], bool)).dece == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------------ breakdowns
def test_height_bins_and_conditions():
    anns = [(1, 1, [0, 0, 10, 30]), (1, 1, [20, 0, 10, 70]), (2, 1, [0, 0, 10, 150]), (2, 1, [50, 0, 10, 40])]
    gt = coco(2, anns, attrs={1: {"timeofday": "day"}, 2: {"timeofday": "night"}})
    gt["images"][1]["attributes"]["weather"] = "rainy"
    dets = [det(1, [0, 0, 10, 30], 0.9), det(2, [0, 0, 10, 150], 0.8), det(1, [20, 0, 10, 70], 0.2)]
    dets.append(det(2, [100, 0, 10, 10], 0.85))  # a night false alarm above the operating point
    res = evaluate(gt, dets, EvalOptions(recall_target=0.5))
    assert res["per_class"]["pedestrian"]["op_threshold"] == 0.8
    h = res["breakdown"]["height"]["per_class"]["pedestrian"]
    assert h["[0,50)"] == {"n_gt": 2, "recall_at_op": 0.5, "recall_all": 0.5}
    assert h["[50,100)"] == {"n_gt": 1, "recall_at_op": 0.0, "recall_all": 1.0}
    assert h["[100,inf)"] == {"n_gt": 1, "recall_at_op": 1.0, "recall_all": 1.0}
    cond = res["breakdown"]["conditions"]
    assert set(cond) == {"timeofday", "weather"}
    assert cond["timeofday"]["day"]["recall_at_op"] == 0.5 and cond["timeofday"]["day"]["fppi_at_op"] == 0.0
    assert cond["timeofday"]["night"]["fppi_at_op"] == 1.0 and cond["timeofday"]["night"]["n_images"] == 1
    assert cond["weather"]["(missing)"]["n_images"] == 1 and cond["weather"]["rainy"]["n_gt"] == 2


def test_distractor_false_alarms_per_kind():
    gt = coco(2, [(1, 1, [0, 0, 10, 10])])
    distractors = {
        "kinds": ["pole", "sign", "mannequin"],
        "distractors": [
            {"id": 1, "image_id": 1, "bbox": [100, 0, 10, 40], "kind": "pole"},
            {"id": 2, "image_id": 2, "bbox": [0, 0, 100, 100], "kind": "sign"},
            {"id": 3, "image_id": 2, "bbox": [150, 0, 20, 20], "kind": "pole"},
        ],
    }
    dets = [
        det(1, [0, 0, 10, 10], 0.9),  # TP
        det(1, [104, 0, 10, 10], 0.8),  # IoU 60/440 < 0.3 with the pole, but 60% inside it -> pole
        det(2, [10, 10, 10, 10], 0.85),  # inside the big sign (IoU 0.01) -> sign
        det(2, [150, 0, 20, 14], 0.7),  # IoU 0.7 with the second pole -> pole
        det(2, [300, 0, 10, 10], 0.95),  # far from everything -> FP not on a distractor
        det(2, [150, 0, 20, 20], 0.01),  # below the operating point: not counted
    ]
    res = evaluate(gt, dets, EvalOptions(recall_target=1.0), distractors)
    assert res["per_class"]["pedestrian"]["op_threshold"] == 0.9
    d = res["breakdown"]["distractors"]
    assert d["fp_at_op"] == 1 and d["fp_at_op_on_distractors"] == 0  # only the far 0.95 FP scores >= 0.9
    dets[0]["score"] = 0.6  # now the op threshold is 0.6: four FPs above it
    d = evaluate(gt, dets, EvalOptions(recall_target=1.0), distractors)["breakdown"]["distractors"]
    assert d["fp_at_op"] == 4 and d["fp_at_op_on_distractors"] == 3
    assert d["per_kind"]["pole"]["fp_at_op"] == 2 and d["per_kind"]["pole"]["distractors_hit"] == 2
    assert d["per_kind"]["sign"]["fp_at_op"] == 1 and d["per_kind"]["mannequin"]["fp_at_op"] == 0
    assert d["per_kind"]["pole"]["fp_per_distractor"] == 1.0 and d["per_kind"]["mannequin"]["fp_per_distractor"] is None
    assert d["per_kind"]["pole"]["per_class"] == {"pedestrian": 2}


# ------------------------------------------------------------------------------------------------------- mAP
def test_map_perfect_and_half():
    gt = coco(2, [(1, 1, [0, 0, 10, 10]), (2, 1, [0, 0, 20, 20]), (1, 2, [50, 50, 10, 10])], cats=("a", "b"))
    perfect = [det(1, [0, 0, 10, 10], 0.9, 1), det(2, [0, 0, 20, 20], 0.8, 1), det(1, [50, 50, 10, 10], 0.7, 2)]
    res = evaluate(gt, perfect)
    assert res["overall"]["map50"] == pytest.approx(1.0) and res["overall"]["map50_95"] == pytest.approx(1.0)
    res = evaluate(gt, perfect[:2])  # class b never detected: AP 0; mean 0.5
    assert res["per_class"]["b"]["map50"] == 0.0 and res["overall"]["map50"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda g, d: d.append(det(99, [0, 0, 1, 1], 0.5)), "image_id 99"),
        (lambda g, d: d.append(det(1, [0, 0, 1, 1], 0.5, cat=7)), "category_id 7"),
        (lambda g, d: d.append({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}), "no 'score'"),
        (lambda g, d: d.append(det(1, [0, 0, -1, 1], 0.5)), "negative width"),
        (lambda g, d: d.append(det(1, [0, 0, 1], 0.5)), "4 finite numbers"),
        (lambda g, d: d.append(det(1, [0, 0, 1, 1], float("nan"))), "finite number"),
        (lambda g, d: g.pop("categories"), "no 'categories'"),
        (lambda g, d: g["annotations"].append({"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1]}), "image_id 5"),
        (lambda g, d: g.update(images=[]), "'images' is empty"),
    ],
)
def test_bad_input_is_named(mutate, needle):
    gt = coco(2, [(1, 1, [0, 0, 10, 10])])
    dets = [det(1, [0, 0, 10, 10], 0.9)]
    mutate(gt, dets)
    with pytest.raises(InputError) as info:
        evaluate(gt, dets, sources=("GT.json", "DT.json", "D.json"))
    assert needle in str(info.value) and ("GT.json" in str(info.value) or "DT.json" in str(info.value))
    assert info.value.exit_code == 2


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="recall target"):
        EvalOptions(recall_target=1.5)
    with pytest.raises(InputError, match="fps"):
        EvalOptions(fps=0)


def test_inputs_are_not_mutated():
    gt = coco(1, [(1, 1, [0, 0, 10, 10])])
    dets = [det(1, [0, 0, 10, 10], 0.9)]
    before = (repr(gt), repr(dets))
    evaluate(gt, dets)
    assert (repr(gt), repr(dets)) == before
