"""report.html (self-contained, escaped, every section), summary.md (short), JUnit, plots and their helpers."""

from __future__ import annotations

import base64
import copy
import itertools
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.compare import compare_metrics
from pipeline.report.fmt import best_values, fmt, latency_ratios
from pipeline.report.html import render_html
from pipeline.report.junit import to_junit
from pipeline.report.metrics_file import load_metrics, variant_id
from pipeline.report.plots import pareto_front, pick_variants
from pipeline.report.summary import render_summary
from pipeline.tolerances import default_tolerances

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
EVIL = '<script>alert("x")</script>&'


@pytest.fixture(scope="module")
def metrics() -> dict:
    return load_metrics(FIXTURES / "current.json")


@pytest.fixture(scope="module")
def comparison(metrics):
    return compare_metrics(metrics, load_metrics(FIXTURES / "baseline.json"), default_tolerances())


@pytest.fixture(scope="module")
def page(metrics, comparison) -> str:
    return render_html(metrics, comparison)


# ---------------------------------------------------------------- helpers against slow references
def slow_front(points):
    """O(n^2): a point is on the front unless another is at least as fast and as accurate, and better in one."""
    out = []
    for i, (li, ai) in enumerate(points):
        dominated = any(
            (lj <= li and aj >= ai and (lj < li or aj > ai)) or (j < i and (lj, aj) == (li, ai))
            for j, (lj, aj) in enumerate(points)
            if j != i
        )
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: points[i][0])


def test_pareto_front_matches_brute_force():
    rng = random.Random(3)
    for n in (0, 1, 2, 5, 30):
        for _ in range(20):
            pts = [
                (rng.choice([1.0, 2.0, 3.0, rng.uniform(1, 9)]), rng.choice([0.3, rng.uniform(0, 1)])) for _ in range(n)
            ]
            assert pareto_front(pts) == slow_front(pts), pts


def test_best_values_direction_and_ties():
    rows = [
        {"map50_95": 0.4, "fppi_at_op": 0.5, "recall_at_op": 0.9},
        {"map50_95": 0.5, "fppi_at_op": 0.2, "recall_at_op": 0.9},
        {"map50_95": None, "fppi_at_op": 0.9, "recall_at_op": 0.9},
    ]
    best = best_values(rows, ["map50_95", "fppi_at_op", "recall_at_op", "params"])
    assert best == {"map50_95": 0.5, "fppi_at_op": 0.2}  # recall tied everywhere, params unranked
    # a collapsed row (no detections: 0 false alarms, operating point never reached) is not the best FPPI
    collapsed = {"map50_95": 0.0, "fppi_at_op": 0.0, "fa_per_hour": 0.0, "recall_at_op": 0.0, "op_reached": False}
    best = best_values([*rows, collapsed], ["map50_95", "fppi_at_op", "fa_per_hour"])
    assert best == {"map50_95": 0.5, "fppi_at_op": 0.2}


def test_fmt_and_ratios():
    assert fmt(None, "pct") == "—" and fmt(float("nan"), "ms") == "—"
    assert fmt(0.4123, "pct") == "41.2" and fmt(-0.0081, "dpct") == "-0.8" and fmt(54321.4, "int") == "54,321"
    rows = [
        {"model": "a", "runtime": "r", "precision": "p", "latency_p50_ms": 10.0},
        {"model": "b", "runtime": "r", "precision": "p", "latency_p50_ms": 25.0},
        {"model": "c", "runtime": "r", "precision": "p", "latency_p50_ms": None},
    ]
    assert latency_ratios(rows, "a/r/p") == {"a/r/p": 1.0, "b/r/p": 2.5, "c/r/p": None}
    assert set(latency_ratios(rows, None).values()) == {None}


def test_pick_variants_one_runtime_per_model_precision():
    ids = ["s/openvino/fp32", "s/onnxruntime/fp32", "s/onnxruntime/int8/ptq", "s/openvino/int8/ptq", "t/tensorrt/fp16"]
    assert pick_variants(ids) == ["s/onnxruntime/fp32", "s/onnxruntime/int8/ptq", "t/tensorrt/fp16"]
    assert len(pick_variants([f"m{i}/onnxruntime/fp32" for i in range(30)], limit=4)) == 4


# ---------------------------------------------------------------- the page
def test_page_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", page), "external asset referenced"
    assert "@import" not in page and "url(" not in page
    assert len(page.encode()) < 3_000_000


def test_page_has_every_section_and_embedded_figures(page, metrics):
    for sid in (
        "overview",
        "matrix",
        "gate",
        "false-alarms",
        "calibration",
        "latency",
        "paired",
        "quantization",
        "robustness",
        "distractors",
        "per-class",
        "training",
        "config",
        "environment",
    ):
        assert f'<section id="{sid}">' in page, sid
        assert f'href="#{sid}"' in page, sid
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 6  # MR-FPPI, PR, reliability, latency, accuracy vs latency, distractors
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    for row in metrics["rows"]:
        assert f"<code>{variant_id(row)}</code>" in page
    assert "Pareto" in page and "SQNR dB" in page and "night s3" in page and "timeofday=night" in page


def test_matrix_highlights_best_and_marks_reference(page):
    matrix = page.split('<section id="matrix">')[1].split("</section>")[0]
    assert matrix.count('class="best"') >= 5
    assert '<code>student/onnxruntime/fp32/float</code><span class="badge ref">ref</span>' in matrix
    assert '<td class="best">46.2</td>' in matrix  # teacher FP32 mAP50-95 is the best
    assert '<td class="neg">-6.0</td>' in matrix  # naive INT8 vs FP32


def test_every_text_is_escaped(metrics):
    evil = {k: copy.deepcopy(v) for k, v in metrics.items() if k not in ("curves", "latency")}  # figures not needed
    evil["notes"] = [EVIL]
    evil["per_class"][0]["class"] = EVIL
    evil["provenance"]["machine"]["cpu"] = EVIL
    evil["provenance"]["run"] = EVIL
    evil["provenance"]["config"] = {"run": {"name": EVIL}}
    evil["distractors"][0]["kind"] = EVIL
    evil["sensitivity"][0]["layer"] = EVIL
    page = render_html(evil)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page


def test_page_without_optional_tables(metrics):
    bare = {
        k: v
        for k, v in metrics.items()
        if k not in ("curves", "latency", "sensitivity", "robustness", "distractors", "training", "notes")
    }
    bare["per_class"], bare["per_condition"] = [], []
    page = render_html(bare)
    assert "No sensitivity analysis in this run." in page and "no data in this run" in page
    assert page.count("data:image/png") == 2  # latency percentiles and accuracy vs latency, from the rows alone
    empty = dict(bare, rows=[], reference=None)
    assert "No rows: nothing was evaluated." in render_html(empty)


def test_render_is_deterministic(metrics, comparison, page):
    assert render_html(metrics, comparison) == page


# ---------------------------------------------------------------- summary and JUnit
def test_summary_is_short_and_complete(metrics):
    baseline = load_metrics(FIXTURES / "baseline.json")
    text = render_summary(metrics, compare_metrics(metrics, baseline, default_tolerances()))
    assert len(text.splitlines()) <= 70
    assert "✅ within tolerance" in text and "`student/onnxruntime/fp32/float` (ref)" in text
    assert render_summary(metrics).count("No baseline given") == 1


def test_paired_tests_in_page_and_summary(page, metrics):
    section = page.split('<section id="paired">')[1].split("</section>")[0]
    assert "resampled with replacement 500 times" in section and "not the training seed" in section
    assert "<td>+1.82</td><td>[+0.51, +3.07]</td>" in section and ">better<" in section and ">worse<" in section
    text = render_summary(metrics)
    assert "Paired bootstrap over the 60 validation images" in text
    assert "| distillation | `distill/onnxruntime/fp32/float` − `student/onnxruntime/fp32/float` | +1.82 |" in text
    assert "int8_vs_fp32" not in text and "INT8 − FP32" not in text  # the matrix's Δ FP32 has it; the HTML lists it
    assert "Paired bootstrap" not in render_summary({k: v for k, v in metrics.items() if k != "paired"})


def test_summary_truncates_many_rows_and_failures(metrics):
    many = copy.deepcopy(metrics)
    extra = []
    for i, row in itertools.product(range(3), metrics["rows"]):
        extra.append(dict(row, model=f"{row['model']}{i}"))
    many["rows"] = metrics["rows"] + extra
    worse = copy.deepcopy(many)
    for row in worse["rows"]:
        if row["map50_95"] is not None:
            row["map50_95"] -= 0.1
    text = render_summary(worse, compare_metrics(worse, many, default_tolerances()))
    assert len(text.splitlines()) <= 70
    assert "more row(s) in report.html" in text and "more regression(s)" in text


def test_junit_one_case_per_check(metrics):
    worse = copy.deepcopy(metrics)
    worse["rows"][0]["lamr"] += 0.1
    worse["rows"].pop()  # a missing row
    cmp = compare_metrics(worse, metrics, default_tolerances())
    root = ET.fromstring(to_junit(cmp).split("\n", 1)[1])
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(cmp.checks) == int(suite.get("tests"))
    assert int(suite.get("failures")) == len(cmp.failures) == 2
    assert int(suite.get("skipped")) == len(suite.findall(".//skipped"))
    lamr = next(c for c in cases if c.get("name") == "lamr" and c.find("failure") is not None)
    assert lamr.get("classname") == "edgekd.compare.teacher.onnxruntime.fp32.float"
    assert "tolerance: 0.02" in lamr.find("failure").text
    row = next(c for c in cases if c.get("name") == "row")
    assert "missing" in row.find("failure").get("message")
