"""build_metrics: defaults, deltas (vs a slow reference), reference choice, curve thinning, provenance."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from deploy.errors import InputError
from pipeline.report.metrics_file import (
    ROW_KEYS,
    build_metrics,
    choose_reference,
    make_provenance,
    thin_curves,
    variant_id,
)

PROV = {
    "config_hash": hashlib.sha256(b"x").hexdigest(),
    "packages": {"edgekd": "0.1.0"},
    "machine": {"platform": "Linux", "cpu": "test cpu", "cores": 2, "python": "3.11"},
}


def row(model, runtime, precision, recipe=None, **values):
    return {"model": model, "runtime": runtime, "precision": precision, "recipe": recipe, **values}


def slow_fp32_delta(rows, target):
    """Obvious reference: the model's ONNX Runtime FP32 float row, else any FP32 row with an mAP."""
    for want_runtime, want_recipes in (("onnxruntime", (None, "float", "edgekd")), ("onnxruntime", None), (None, None)):
        for r in rows:
            if (
                r["model"] == target["model"]
                and r["precision"] == "fp32"
                and r.get("map50_95") is not None
                and (want_runtime is None or r["runtime"] == want_runtime)
                and (want_recipes is None or r.get("recipe") in want_recipes)
            ):
                return round(target["map50_95"] - r["map50_95"], 6)
    return None


def slow_teacher_delta(rows, target):
    for r in rows:
        same = all(r.get(k) == target.get(k) for k in ("runtime", "precision", "recipe"))
        if r["model"] == "teacher" and same and r.get("map50_95") is not None:
            return round(target["map50_95"] - r["map50_95"], 6)
    return None


def test_variant_id():
    assert variant_id(row("s", "onnxruntime", "fp32")) == "s/onnxruntime/fp32"
    assert variant_id(row("s", "openvino", "int8", "ptq")) == "s/openvino/int8/ptq"


def test_rows_filled_sorted_and_deltas_match_reference():
    rng = np.random.default_rng(0)
    rows = []
    for model in ("distill", "teacher", "student"):
        for runtime in ("openvino", "onnxruntime"):
            for precision, recipe in (("int8", "ptq"), ("fp32", None)):
                rows.append(row(model, runtime, precision, recipe, map50_95=float(rng.uniform(0.2, 0.5))))
    rows.append(row("student", "tensorrt", "int8", "qdq", map50_95=0.3))  # no teacher twin: null vs teacher
    rows.append(row("orphan", "onnxruntime", "int8", "ptq", map50_95=0.3))  # no FP32 row of its own
    rows.append(row("peer", "openvino", "fp32", "ultralytics", map50_95=0.31))  # only FP32 row: used
    rows.append(row("peer", "openvino", "int8", "ultralytics", map50_95=0.29))
    rows.append(
        row("student", "onnxruntime", "fp32", "ultralytics", map50_95=0.1)
    )  # a peer never beats the float export
    obj = build_metrics(rows, {}, PROV, source="test")
    out = obj["rows"]
    assert [r["model"] for r in out][:4] == ["teacher"] * 4  # teacher first
    assert all(set(ROW_KEYS) <= set(r) for r in out)
    for r in out:
        assert r["delta_map50_95_vs_fp32"] == slow_fp32_delta(out, r), variant_id(r)
        assert r["delta_map50_95_vs_teacher"] == slow_teacher_delta(out, r), variant_id(r)
    by_id = {variant_id(r): r for r in out}
    assert by_id["orphan/onnxruntime/int8/ptq"]["delta_map50_95_vs_fp32"] is None
    assert by_id["student/tensorrt/int8/qdq"]["delta_map50_95_vs_teacher"] is None
    assert by_id["peer/openvino/int8/ultralytics"]["delta_map50_95_vs_fp32"] == -0.02
    student = by_id["student/openvino/int8/ptq"]
    assert student["delta_map50_95_vs_teacher"] == round(
        student["map50_95"] - by_id["teacher/openvino/int8/ptq"]["map50_95"], 6
    )


def test_deltas_already_given_are_kept():
    rows = [
        row("teacher", "onnxruntime", "fp32", map50_95=0.5),
        row("student", "onnxruntime", "fp32", map50_95=0.4, delta_map50_95_vs_teacher=-0.123),
    ]
    out = build_metrics(rows, {}, PROV)["rows"]
    assert out[1]["delta_map50_95_vs_teacher"] == -0.123 and out[1]["delta_map50_95_vs_fp32"] == 0.0


def test_non_finite_become_null_and_numpy_scalars_plain():
    rows = [row("student", "onnxruntime", "fp32", map50=np.float32(0.5), lamr=float("nan"), params=np.int64(7))]
    obj = build_metrics(rows, {}, PROV)
    r = obj["rows"][0]
    assert r["lamr"] is None and isinstance(r["params"], int) and isinstance(r["map50"], float)
    json.dumps(obj, allow_nan=False)


def test_latency_table_fills_rows_and_reference_choice():
    rows = [row("teacher", "onnxruntime", "fp32"), row("student", "onnxruntime", "fp32")]
    lat = {"student/onnxruntime/fp32": {"p50_ms": 10.0, "p90_ms": 11.0, "p99_ms": 15.0, "samples_ms": [9.0, 10.0]}}
    obj = build_metrics(rows, {"latency": lat}, PROV)
    student = obj["rows"][1]
    assert (student["latency_p50_ms"], student["latency_p99_ms"]) == (10.0, 15.0)
    assert obj["reference"] == "student/onnxruntime/fp32"
    # without the default reference: the first timed float ONNX Runtime row, else the first timed row, else None
    assert (
        choose_reference(
            [row("a", "openvino", "fp32", latency_p50_ms=3.0), row("b", "onnxruntime", "fp32", latency_p50_ms=5.0)]
        )
        == "b/onnxruntime/fp32"
    )
    assert choose_reference([row("a", "openvino", "int8", latency_p50_ms=3.0)]) == "a/openvino/int8"
    assert choose_reference([row("a", "openvino", "int8")]) is None


def test_empty_run_is_valid():
    obj = build_metrics([], None, PROV, notes=["nothing ran"])
    assert obj["rows"] == [] and obj["reference"] is None and obj["notes"] == ["nothing ran"]


def test_bad_inputs_raise_input_error_naming_the_source():
    with pytest.raises(InputError, match="^unit: unknown table key"):
        build_metrics([], {"per_klass": []}, PROV, source="unit")
    with pytest.raises(InputError, match="rows\\[0\\].map50"):
        build_metrics([row("s", "onnxruntime", "fp32", map50=1.5)], {}, PROV, source="unit")
    with pytest.raises(InputError, match="reference"):
        build_metrics([row("s", "onnxruntime", "fp32")], {}, PROV, reference="x/y/z")


def test_thin_curves_keeps_ends_and_limit():
    n = 5000
    curves = {
        "pr": {"recall": list(np.linspace(0, 1, n)), "precision": list(np.linspace(1, 0, n))},
        "reliability": {"confidence": [0.5] * 3, "precision": [0.5] * 3, "count": [1, 2, 3]},
    }
    out = thin_curves(curves, limit=100)
    assert len(out["pr"]["recall"]) == 100
    assert out["pr"]["recall"][0] == 0 and out["pr"]["recall"][-1] == 1
    assert all(a < b for a, b in zip(out["pr"]["recall"], out["pr"]["recall"][1:], strict=False))
    assert out["reliability"]["count"] == [1, 2, 3]
    assert thin_curves({"pr": {"recall": [], "precision": []}})["pr"]["recall"] == []


def test_provenance_from_config_has_no_time_and_validates():
    from pipeline.cli import resolve_config

    cfg = resolve_config("smoke", [])
    prov = make_provenance(cfg)
    assert prov["config_hash"] == cfg.digest() and prov["config"]["run"]["name"] == "smoke"
    assert prov["machine"]["cores"] >= 1 and prov["machine"]["python"].count(".") == 2
    assert {"onnxruntime", "ultralytics", "torch", "edgekd"} <= set(prov["packages"])
    text = json.dumps(prov)
    assert not any(word in text for word in ("generated_at", "timestamp"))
    assert build_metrics([], {}, prov)["provenance"] == prov  # valid as it is
