"""The regression gate: direction-aware absolute checks, latency ratios, rows, tolerances, the CLI and its outputs."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deploy.errors import ConfigError
from pipeline.cli import main
from pipeline.compare import Status, check_absolute, check_ratio, compare_metrics
from pipeline.report.metrics_file import dumps_metrics, load_metrics
from pipeline.tolerances import DIRECTIONS, default_tolerances, parse_tolerances

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
CURRENT, BASELINE = FIXTURES / "current.json", FIXTURES / "baseline.json"
VID = "distill/onnxruntime/fp32/float"


@pytest.fixture(scope="module")
def current() -> dict:
    return load_metrics(CURRENT)


@pytest.fixture(scope="module")
def baseline() -> dict:
    return load_metrics(BASELINE)


def rows_by_id(obj):
    from pipeline.report.metrics_file import variant_id

    return {variant_id(r): r for r in obj["rows"]}


def planted(obj: dict) -> dict:
    """False alarms up and accuracy down on one variant."""
    bad = copy.deepcopy(obj)
    r = rows_by_id(bad)[VID]
    r["fppi_at_op"] += 0.2
    r["fa_per_hour"] += 0.2 * 30 * 3600
    r["map50_95"] -= 0.03
    return bad


# ---------------------------------------------------------------- units
@pytest.mark.parametrize(
    "metric,value,base,allowed,status",
    [
        ("map50_95", 0.40, 0.41, 0.01, Status.PASS),  # exactly at the tolerance
        ("map50_95", 0.39, 0.41, 0.01, Status.FAIL),  # dropped 2 points
        ("map50_95", 0.50, 0.41, 0.01, Status.PASS),  # improved: never a failure
        ("fppi_at_op", 0.56, 0.50, 0.05, Status.FAIL),  # false alarms up
        ("fppi_at_op", 0.30, 0.50, 0.05, Status.PASS),  # false alarms down
        ("lamr", 0.42, 0.40, 0.01, Status.FAIL),
        ("dece", 0.05, 0.05, 0.0, Status.PASS),
        ("recall_at_op", 0.85, 0.9, 0.02, Status.FAIL),
        ("map50", None, 0.5, 0.01, Status.FAIL),  # coverage lost
        ("map50", 0.5, None, 0.01, Status.SKIP),  # not measured in the baseline
    ],
)
def test_check_absolute_is_direction_aware(metric, value, base, allowed, status):
    check = check_absolute("m/r/p", metric, value, base, allowed)
    assert check.status is status
    if status is Status.FAIL and value is not None:
        assert f"{value:.4g}" in check.message and f"{base:.4g}" in check.message and f"{allowed:g}" in check.message


def test_every_absolute_metric_has_a_direction():
    tol = default_tolerances()
    assert set(tol.absolute) | set(tol.latency_factor) == set(DIRECTIONS)


def test_check_ratio():
    assert check_ratio("v", "latency_p50_ms", 1.10, 1.0, 1.15, "ref").status is Status.PASS
    fail = check_ratio("v", "latency_p50_ms", 1.30, 1.0, 1.15, "ref")
    assert fail.status is Status.FAIL and fail.delta == pytest.approx(1.3)
    assert "1.300x" in fail.message and "1.15x" in fail.message


def test_identical_runs_pass(current):
    cmp = compare_metrics(current, current, default_tolerances())
    assert not cmp.regressed and cmp.counts()["pass"] > 100 and not cmp.new_rows


def test_slower_machine_is_not_a_regression_but_a_relatively_slower_variant_is(current, baseline):
    # the baseline fixture is ~35 % slower across the board: ratios unchanged -> within tolerance
    cmp = compare_metrics(current, baseline, default_tolerances())
    assert not cmp.regressed, [c.message for c in cmp.failures]
    assert any("different machines" in n for n in cmp.notes)
    slow = copy.deepcopy(current)
    r = rows_by_id(slow)[VID]
    r["latency_p50_ms"] *= 1.4  # this variant alone got slower relative to the reference
    cmp = compare_metrics(slow, baseline, default_tolerances())
    assert [(c.variant, c.metric) for c in cmp.failures] == [(VID, "latency_p50_ms")]
    # the reference row itself is never checked as a ratio
    ref = current["reference"]
    assert all(c.status is Status.SKIP for c in cmp.checks if c.variant == ref and c.metric.startswith("latency"))


def test_planted_regression_fails_and_names_metrics(current):
    cmp = compare_metrics(planted(current), current, default_tolerances())
    failed = {(c.variant, c.metric) for c in cmp.failures}
    assert {(VID, "fppi_at_op"), (VID, "fa_per_hour"), (VID, "map50_95")} <= failed
    assert all(c.variant == VID for c in cmp.failures)


def test_missing_rows_fail_and_new_rows_are_reported(current):
    fewer = copy.deepcopy(current)
    fewer["rows"] = [r for r in fewer["rows"] if not (r["model"] == "distill" and r["runtime"] == "tensorrt")]
    cmp = compare_metrics(fewer, current, default_tolerances())
    assert sorted((c.variant, c.metric) for c in cmp.failures) == [
        ("distill/tensorrt/fp16/float", "row"),
        ("distill/tensorrt/int8/head_float", "row"),
    ]
    assert cmp.regressed
    cmp = compare_metrics(current, fewer, default_tolerances())
    assert (
        sorted(cmp.new_rows) == ["distill/tensorrt/fp16/float", "distill/tensorrt/int8/head_float"]
        and not cmp.regressed
    )


# ---------------------------------------------------------------- tolerances
def test_tolerance_overrides_merge_and_null_disables():
    tol = parse_tolerances(
        {"absolute": {"map50_95": 0.002, "dece": None}, "latency_factor": {"latency_p99_ms": 2}}, "t.yaml"
    )
    assert tol.absolute["map50_95"] == 0.002 and "dece" not in tol.absolute
    assert tol.latency_factor["latency_p99_ms"] == 2.0 and tol.latency_factor["latency_p50_ms"] == 1.15
    assert tol.absolute["lamr"] == default_tolerances().absolute["lamr"]


def test_tolerance_problems_listed():
    with pytest.raises(ConfigError) as info:
        parse_tolerances(
            {
                "absolute": {"mAP": 0.1, "latency_p50_ms": 1.2, "lamr": -1, "dece": "x"},
                "latency_factor": {"latency_p50_ms": 0.5},
                "extra": 1,
            },
            "tol.yaml",
        )
    text = str(info.value)
    assert text.startswith("tol.yaml: 5 problem(s)")
    assert "unknown metric key(s) ['latency_p50_ms', 'mAP']" in text and "belong(s) under 'latency_factor'" in text
    assert "known: map50, map50_95" in text
    assert "absolute.lamr: got -1" in text and "absolute.dece: got 'x'" in text
    assert "latency_factor.latency_p50_ms: got 0.5, expected a growth factor >= 1" in text
    assert "unknown key(s) ['extra']" in text


# ---------------------------------------------------------------- CLI
def write(tmp_path: Path, name: str, obj: dict) -> Path:
    path = tmp_path / name
    path.write_text(dumps_metrics(obj))
    return path


def test_cli_exit_0_identical_and_writes_md_junit(tmp_path, capsys):
    md, xml = tmp_path / "out" / "compare.md", tmp_path / "out" / "compare.xml"
    assert main(["compare", str(CURRENT), str(BASELINE), "--md", str(md), "--junit", str(xml)]) == 0
    assert "within tolerance" in capsys.readouterr().out
    assert "✅ within tolerance" in md.read_text() and len(md.read_text().splitlines()) <= 60
    root = ET.parse(xml).getroot()
    suite = root.find("testsuite")
    assert int(suite.get("failures")) == 0 and int(suite.get("tests")) == len(suite.findall("testcase")) > 100


def test_cli_exit_1_on_planted_regression(tmp_path, current, capsys):
    bad = write(tmp_path, "bad.json", planted(current))
    md, xml = tmp_path / "c.md", tmp_path / "c.xml"
    assert main(["compare", str(bad), str(CURRENT), "--md", str(md), "--junit", str(xml)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "fppi_at_op" in out
    text = md.read_text()
    assert "❌ 3 regression(s)" in text and f"`{VID}` | map50_95" in text
    assert len(text.splitlines()) <= 60
    failures = ET.parse(xml).getroot().findall(".//testcase[failure]")
    names = {(f.get("classname"), f.get("name")) for f in failures}
    assert names == {("edgekd.compare." + VID.replace("/", "."), m) for m in ("map50_95", "fppi_at_op", "fa_per_hour")}
    failure = next(f for f in failures if f.get("name") == "fppi_at_op").find("failure")
    message = failure.get("message")
    base_fppi = rows_by_id(current)[VID]["fppi_at_op"]
    assert f"{base_fppi + 0.2:.4g}" in message and f"{base_fppi:.4g}" in message and "0.05" in message
    assert "delta: 0.2" in failure.text and "tolerance: 0.05" in failure.text


def test_cli_exit_2_on_unusable_input(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing.json"), str(BASELINE)]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["compare", str(CURRENT), str(FIXTURES / "old_schema.json")]) == 2
    err = capsys.readouterr().err
    assert "old_schema.json" in err and "schema_version" in err
    assert main(["compare", str(FIXTURES / "broken.json"), str(BASELINE)]) == 2
    assert "broken.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["compare", str(bad), str(BASELINE)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    tol = tmp_path / "tol.yaml"
    tol.write_text("absolute:\n  map_50_95: 0.01\n")
    assert main(["compare", str(CURRENT), str(BASELINE), "--tolerances", str(tol)]) == 2
    assert "map_50_95" in capsys.readouterr().err


def test_cli_tolerances_file_changes_the_verdict(tmp_path, current):
    slightly = copy.deepcopy(current)
    rows_by_id(slightly)[VID]["map50_95"] -= 0.005  # inside the default 0.01
    path = write(tmp_path, "cur.json", slightly)
    assert main(["compare", str(path), str(CURRENT)]) == 0
    strict = tmp_path / "strict.yaml"
    strict.write_text("absolute:\n  map50_95: 0.001\n")
    assert main(["compare", str(path), str(CURRENT), "--tolerances", str(strict)]) == 1


def test_cli_accepts_run_folders(tmp_path):
    run = tmp_path / "runs" / "x"
    (run / "report").mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    (run / "report" / "metrics.json").write_text(CURRENT.read_text())
    assert main(["compare", str(run), str(BASELINE)]) == 0


def test_report_command_rerenders(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "report").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"stages": {}}))
    (run / "report" / "metrics.json").write_text(CURRENT.read_text())
    assert main(["report", "--run", str(run)]) == 0
    assert (run / "report" / "report.html").stat().st_size > 10_000
    assert (run / "report" / "summary.md").is_file() and not (run / "report" / "junit.xml").exists()
    assert main(["report", "--run", str(run), "--baseline", str(BASELINE), "--out", str(tmp_path / "o")]) == 0
    ET.parse(tmp_path / "o" / "junit.xml")
    capsys.readouterr()
    assert main(["report", "--run", str(tmp_path / "empty")]) == 2
    assert "does not exist" in capsys.readouterr().err
