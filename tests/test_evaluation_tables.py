"""Rows and tables of the evaluate stage, from evaluate() results on small hand-made cases."""

from __future__ import annotations

import pytest

from deploy.metrics.evaluate import EvalOptions, evaluate
from pipeline import evaluation as E
from pipeline.report.metrics_file import add_deltas


def _gt():
    images = [
        {
            "id": i,
            "file_name": f"images/val/{i}.jpg",
            "width": 100,
            "height": 100,
            "attributes": {"timeofday": "night" if i % 2 else "day"},
        }
        for i in (1, 2, 3, 4)
    ]
    anns = []
    for i in (1, 2, 3, 4):
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 20, 40], "area": 800, "iscrowd": 0})
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "car"}],
    }


def _dets():
    out = [{"image_id": i, "category_id": 1, "bbox": [10, 10, 20, 40], "score": 0.9 - 0.1 * i} for i in (1, 2, 3)]
    out.append({"image_id": 4, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.95})  # false alarm
    return out


def test_metric_row_and_per_class():
    result = evaluate(_gt(), _dets(), EvalOptions(recall_target=0.5))
    row = E.metric_row(
        {"model": "m", "runtime": "onnxruntime", "precision": "fp32", "recipe": "float"}, result, {"params": 1}
    )
    for key in E.ROW_METRICS:
        assert key in row
    assert row["params"] == 1 and row["model"] == "m"
    assert row["recall_at_op"] == pytest.approx(0.5)
    entries = E.per_class_entries("m/onnxruntime/fp32/float", result)
    assert {e["class"] for e in entries} == {"pedestrian", "car"}
    assert all(e["variant"] == "m/onnxruntime/fp32/float" for e in entries)


def test_curve_set_precision_recall_consistent():
    result = evaluate(_gt(), _dets(), EvalOptions())
    curves = E.curve_set(result)
    pr = curves["pr"]
    assert len(pr["recall"]) == len(pr["precision"]) == len(curves["mr_fppi"]["fppi"])
    # the highest-scoring detection is the false alarm: 0 TP, 1 FP at the first point that has a FP
    # at full recall (3 of 4 found), 3 TP and 1 FP -> precision 0.75
    assert max(pr["recall"]) == pytest.approx(0.75)
    assert pr["precision"][pr["recall"].index(max(pr["recall"]))] == pytest.approx(0.75)
    assert sum(curves["reliability"]["count"]) == 4


def test_per_condition_entries():
    result = evaluate(_gt(), _dets(), EvalOptions(recall_target=0.5))
    entries = E.per_condition_entries("v/a/b/c", result)
    values = {(e["attribute"], e["value"]) for e in entries}
    assert values == {("timeofday", "day"), ("timeofday", "night")}
    assert sum(e["n_images"] for e in entries) == 4


def test_add_deltas_on_evaluate_rows():
    """The evaluate stage's rows (recipe always set) get both delta keys, null where there is no reference."""
    rows = [
        {"model": "teacher", "runtime": "onnxruntime", "precision": "fp32", "recipe": "float", "map50_95": 0.5},
        {"model": "student", "runtime": "onnxruntime", "precision": "fp32", "recipe": "float", "map50_95": 0.4},
        {"model": "student", "runtime": "onnxruntime", "precision": "int8", "recipe": "head_float", "map50_95": 0.39},
        {"model": "teacher", "runtime": "onnxruntime", "precision": "int8", "recipe": "head_float", "map50_95": None},
    ]
    add_deltas(rows)
    assert rows[1]["delta_map50_95_vs_teacher"] == pytest.approx(-0.1)
    assert rows[2]["delta_map50_95_vs_fp32"] == pytest.approx(-0.01)
    assert rows[2]["delta_map50_95_vs_teacher"] is None
    assert rows[0]["delta_map50_95_vs_fp32"] == 0.0
    assert rows[3]["delta_map50_95_vs_fp32"] is None and rows[3]["delta_map50_95_vs_teacher"] is None


def test_subsets():
    gt = _gt()
    sub = E.subset_coco(gt, 2)
    assert [im["id"] for im in sub["images"]] == [1, 2]
    assert {a["image_id"] for a in sub["annotations"]} == {1, 2}
    dis = {
        "kinds": ["pole"],
        "distractors": [
            {"id": 1, "image_id": 1, "bbox": [0, 0, 5, 5], "kind": "pole"},
            {"id": 2, "image_id": 3, "bbox": [0, 0, 5, 5], "kind": "pole"},
        ],
    }
    assert [d["id"] for d in E.subset_distractors(dis, sub)["distractors"]] == [1]
    assert E.subset_distractors(None, sub) is None
