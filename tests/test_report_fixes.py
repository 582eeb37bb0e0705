"""Report fixes: reliability bars at their real confidence bins; gate checks in the matrix's units."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from deploy.metrics.calibration import reliability
from pipeline import evaluation as E
from pipeline.compare import Check, Comparison, Status
from pipeline.report import plots
from pipeline.report.fmt import MATRIX_COLUMNS
from pipeline.report.metrics_file import load_metrics, schema_problems, thin_curves
from pipeline.report.summary import render_summary
from pipeline.report.tables import checks_table
from pipeline.tolerances import ABSOLUTE_METRICS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
VID = "student/onnxruntime/fp32/float"


# ---------------------------------------------------------------- reliability diagram
def _calibrated_result() -> dict:
    """An evaluate() result whose detections are perfectly calibrated: 20 at 0.05 (1 TP), 20 at 0.95 (19 TP)."""
    conf = np.array([0.05] * 20 + [0.95] * 20)
    tp = np.array([True] + [False] * 19 + [True] * 19 + [False])
    rel = reliability(conf, tp, n_bins=10).as_dict()
    return {
        "params": {"n_images": 10},
        "per_class": {"pedestrian": {"n_gt": 20}},
        "curves": {"pooled": {"fppi": [0.0, 0.1], "miss_rate": [0.5, 0.0]}},
        "calibration": {"overall": rel},
    }


def test_curve_set_keeps_every_bin_in_order():
    rel = E.curve_set(_calibrated_result())["reliability"]
    assert rel["count"] == [20, 0, 0, 0, 0, 0, 0, 0, 0, 20]
    assert rel["confidence"][0] == pytest.approx(0.05) and rel["confidence"][9] == pytest.approx(0.95)
    assert rel["precision"][0] == pytest.approx(0.05) and rel["precision"][9] == pytest.approx(0.95)
    assert rel["confidence"][1:9] == [None] * 8 and rel["precision"][1:9] == [None] * 8
    assert set(rel) == {"confidence", "precision", "count"}  # the schema's keys, nothing more


def test_curve_set_reliability_still_valid_metrics_json():
    metrics = copy.deepcopy(load_metrics(FIXTURES / "current.json"))
    metrics["curves"][VID] = thin_curves(E.curve_set(_calibrated_result()))
    assert schema_problems(metrics) == []


def _drawn_bars(monkeypatch, curves) -> list[tuple[float, float, float]]:
    """(left, width, height) of every bar reliability_plot draws."""
    from matplotlib.axes import Axes

    bars: list[tuple[float, float, float]] = []
    real = Axes.bar

    def record(self, x, height, width=0.8, *args, **kwargs):
        bars.append((float(x), float(width), float(height)))
        return real(self, x, height, width, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", record)
    assert plots.reliability_plot(curves, {VID: 0.0}) is not None
    return bars


def test_calibrated_model_bars_lie_on_the_diagonal(monkeypatch):
    pytest.importorskip("matplotlib")
    bars = _drawn_bars(monkeypatch, {VID: E.curve_set(_calibrated_result())})
    assert len(bars) == 2
    for (left, width, height), (want_left, want_height) in zip(bars, ((0.0, 0.05), (0.9, 0.95)), strict=True):
        assert left == pytest.approx(want_left) and width == pytest.approx(0.1) and height == pytest.approx(want_height)
        assert left <= height <= left + width  # the diagonal crosses the bar's top


def test_reliability_bars_at_their_bins():
    full = {"confidence": [0.05, None, 0.55, None], "precision": [0.1, None, 0.5, None], "count": [30, 0, 1, 0]}
    bars = plots.reliability_bars(full)
    assert [(round(b[0], 6), b[1], b[2]) for b in bars] == [(0.0, 0.25, 0.1), (0.5, 0.25, 0.5)]
    assert bars[0][3] > bars[1][3]  # more detections, darker
    assert plots.reliability_bars({"confidence": [], "precision": [], "count": []}) == []


# ---------------------------------------------------------------- gate checks in the matrix's units
def _comparison() -> Comparison:
    checks = (
        Check(VID, "map50_95", Status.FAIL, value=0.3801, baseline=0.4123, delta=-0.0322, tolerance=0.01),
        Check(VID, "fppi_at_op", Status.FAIL, value=0.45, baseline=0.2, delta=0.25, tolerance=0.05),
        Check(VID, "latency_p50_ms", Status.FAIL, "latency_ratio", value=1.5, baseline=1.2, delta=1.25, tolerance=1.15),
    )
    return Comparison(checks, reference=VID)


def test_summary_gate_table_in_points():
    metrics = load_metrics(FIXTURES / "current.json")
    text = render_summary(metrics, _comparison())
    assert f"| `{VID}` | map50_95 (points) | 38.0 | 41.2 | -3.2 | 1.0 |" in text
    assert f"| `{VID}` | fppi_at_op | 0.450 | 0.200 | 0.250 | 0.050 |" in text
    assert f"| `{VID}` | latency_p50_ms (× ref) | 1.50× | 1.20× | 1.25× | 1.15× |" in text
    assert "0.3801" not in text and "0.0322" not in text


def test_html_gate_table_in_points():
    table = checks_table(_comparison().checks)
    assert "<td>38.0</td><td>41.2</td><td>-3.2</td><td>1.0</td>" in table
    assert '<td class="t">map50_95 (points)</td>' in table
    assert "<td>1.50×</td><td>1.20×</td><td>1.25×</td><td>1.15×</td>" in table
    assert "0.3801" not in table


def test_check_kinds_follow_the_matrix_columns():
    from pipeline.report.fmt import check_kinds, check_metric_label

    kinds = {c.key: c.kind for c in MATRIX_COLUMNS}
    for metric in ABSOLUTE_METRICS:
        value, delta, tolerance = check_kinds(metric, "absolute")
        assert value == tolerance == kinds[metric]
        assert delta == ("dpct" if kinds[metric] == "pct" else kinds[metric])
    assert check_metric_label("lamr", "absolute") == "lamr (points)"
    assert check_metric_label("fa_per_hour", "absolute") == "fa_per_hour"
