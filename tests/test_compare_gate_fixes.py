"""Regression gate holes: latency lost in the current run, reference fallback, operating point not reached,
unwritable outputs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.compare import Status, compare_metrics
from pipeline.report.metrics_file import dumps_metrics, load_metrics, variant_id
from pipeline.tolerances import LATENCY_METRICS, default_tolerances

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
CURRENT, BASELINE = FIXTURES / "current.json", FIXTURES / "baseline.json"
VID = "distill/onnxruntime/fp32/float"
NAIVE = "student/onnxruntime/int8/naive"  # op_reached false in both fixtures


@pytest.fixture
def current() -> dict:
    return load_metrics(CURRENT)


@pytest.fixture
def baseline() -> dict:
    return load_metrics(BASELINE)


def rows_by_id(obj: dict) -> dict:
    return {variant_id(r): r for r in obj["rows"]}


def latency_checks(cmp, status: Status | None = None) -> list:
    return [c for c in cmp.checks if c.kind == "latency_ratio" and (status is None or c.status is status)]


# ---------------------------------------------------------------- 1. latency coverage and the reference
def test_current_run_without_latency_is_a_regression(current, baseline):
    for row in current["rows"]:
        row.update(dict.fromkeys(LATENCY_METRICS))
    current["reference"] = None
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert cmp.regressed
    assert {c.metric for c in cmp.failures} == set(default_tolerances().latency_factor)
    timed = [v for v, r in rows_by_id(baseline).items() if r["latency_p50_ms"] is not None]
    assert {c.variant for c in cmp.failures} == set(timed)  # the reference row too
    assert all("missing (null) in the current run" in c.message for c in cmp.failures)


def test_reference_absent_from_baseline_falls_back_to_the_baselines(current, baseline):
    ref, other = current["reference"], "student/openvino/fp32/float"
    baseline["rows"] = [r for r in baseline["rows"] if variant_id(r) != ref]
    baseline["reference"] = other
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert cmp.reference == other and not cmp.regressed
    assert len(latency_checks(cmp, Status.PASS)) > 20
    assert any(other in n and "used in both runs" in n for n in cmp.notes)
    rows_by_id(current)[VID]["latency_p50_ms"] *= 1.4
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert [(c.variant, c.metric) for c in cmp.failures] == [(VID, "latency_p50_ms")]
    assert other in cmp.failures[0].message


def test_reference_untimed_in_baseline_falls_back_to_a_variant_timed_in_both(current, baseline):
    ref = current["reference"]
    rows_by_id(baseline)[ref].update(dict.fromkeys(LATENCY_METRICS))
    baseline["reference"] = ref
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert cmp.reference not in (None, ref) and not cmp.regressed
    assert len(latency_checks(cmp, Status.PASS)) > 20


def test_no_reference_in_both_runs_fails_latency_checks(current, baseline):
    for obj in (current, baseline):
        obj["reference"] = None
        for row in obj["rows"]:
            row["latency_p50_ms"] = None  # only p90 / p99 measured: no variant to divide by
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert cmp.regressed and cmp.reference is None
    assert {c.metric for c in cmp.failures} == {"latency_p90_ms", "latency_p99_ms"}
    assert all("no reference variant" in c.message for c in cmp.failures)


# ---------------------------------------------------------------- 2. operating point not reached
def test_at_op_metrics_skipped_when_the_baseline_did_not_reach_it(current, baseline):
    row, base = rows_by_id(current)[VID], rows_by_id(baseline)[VID]
    base["op_reached"] = False
    row.update(fppi_at_op=base["fppi_at_op"] + 0.5, precision_at_op=base["precision_at_op"] - 0.3)
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert not cmp.regressed, [c.message for c in cmp.failures]
    skipped = {c.metric: c.message for c in cmp.checks if c.variant == VID and c.status is Status.SKIP}
    assert {"fppi_at_op", "precision_at_op", "fa_per_hour"} <= set(skipped) and "recall_at_op" not in skipped
    assert "operating point not reached in the baseline" in skipped["fppi_at_op"]
    row["recall_at_op"] = base["recall_at_op"] - 0.3  # the highest recall reached fell: still a regression
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert [(c.variant, c.metric) for c in cmp.failures] == [(VID, "recall_at_op")]


def test_losing_the_operating_point_is_a_regression(current, baseline):
    row = rows_by_id(current)[VID]
    row.update(op_reached=False, fppi_at_op=0.0, fa_per_hour=0.0)  # fewer false alarms only because recall fell
    cmp = compare_metrics(current, baseline, default_tolerances())
    failed = {c.metric: c.message for c in cmp.failures if c.variant == VID}
    assert {"fppi_at_op", "recall_at_op", "precision_at_op", "fa_per_hour"} <= set(failed)
    assert "the current run no longer does" in failed["fppi_at_op"]


def test_collapsed_naive_row_improving_passes(current):
    collapsed = copy.deepcopy(current)  # no detections: 0 false alarms at recall 0
    rows_by_id(collapsed)[NAIVE].update(fppi_at_op=0.0, fa_per_hour=0.0, recall_at_op=0.0, precision_at_op=0.0)
    rows_by_id(current)[NAIVE].update(fppi_at_op=0.5, fa_per_hour=54000.0, recall_at_op=0.3, precision_at_op=0.2)
    assert not compare_metrics(current, collapsed, default_tolerances()).regressed


def test_at_op_metrics_checked_when_both_reached(current, baseline):
    rows_by_id(current)[VID]["fppi_at_op"] = rows_by_id(baseline)[VID]["fppi_at_op"] + 0.5
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert [(c.variant, c.metric) for c in cmp.failures] == [(VID, "fppi_at_op")]


# ---------------------------------------------------------------- 3. unwritable outputs
@pytest.mark.parametrize("flag", ["--md", "--junit", "--html"])
def test_unwritable_output_is_exit_2_naming_flag_and_path(tmp_path, capsys, flag):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(["compare", str(CURRENT), str(BASELINE), flag, str(folder)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert flag in err and "a_folder" in err and "cannot write" in err


def test_output_under_a_file_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main(["compare", str(CURRENT), str(BASELINE), "--junit", str(blocker / "c.xml")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--junit" in err and "blocker" in err


def test_report_unwritable_out_is_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(dumps_metrics(load_metrics(CURRENT)))
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main(["report", "--run", str(run), "--out", str(blocker)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--out" in err and "blocker" in err and "cannot write" in err
