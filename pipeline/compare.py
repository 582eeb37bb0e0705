"""The regression gate: compare two valid metrics.json objects (``edgekd compare``).

Rows are matched by variant id (``model/runtime/precision[/recipe]``). For each matched row:

- accuracy and false-alarm metrics: ``delta = current - baseline``; the worsening (``-delta`` where
  higher is better, ``+delta`` where lower is better) may not exceed the absolute tolerance;
- latency: never absolute milliseconds across machines. Each run's row latency is divided by the
  latency of the run's reference variant (``reference``, measured in the same run, so the machine
  cancels out); ``growth = ratio_current / ratio_baseline`` may not exceed the latency factor.

A metric measured in the baseline but null in the current run is a regression (coverage lost); a
metric null in the baseline is skipped. Rows missing in the current run are regressions; new rows
are reported, never failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pipeline.report.metrics_file import variant_id
from pipeline.tolerances import DIRECTIONS, Direction, Tolerances

_EPS = 1e-9


def num(x: float) -> str:
    """Short text of a metric value: 4 significant digits, thousands as plain integers (54,000)."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    NEW = "new"


@dataclass(frozen=True)
class Check:
    """One regression check: a metric of a variant (or a whole row, ``metric == "row"``).

    For ``kind == "latency_ratio"``: ``value``/``baseline`` are latency / reference latency in each run,
    ``delta`` is their ratio (the growth) and ``tolerance`` the allowed growth factor. Otherwise ``delta``
    is ``value - baseline`` and ``tolerance`` the allowed worsening.
    """

    variant: str
    metric: str
    status: Status
    kind: str = "absolute"  # "absolute" | "latency_ratio" | "row"
    value: float | None = None
    baseline: float | None = None
    delta: float | None = None
    tolerance: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Comparison:
    checks: tuple[Check, ...]
    current: str = "current"
    baseline: str = "baseline"
    reference: str | None = None
    tolerances: str = "defaults"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def with_status(self, status: Status) -> list[Check]:
        return [c for c in self.checks if c.status is status]

    @property
    def failures(self) -> list[Check]:
        return self.with_status(Status.FAIL)

    @property
    def regressed(self) -> bool:
        return bool(self.failures)

    @property
    def missing_rows(self) -> list[str]:
        return [c.variant for c in self.checks if c.metric == "row" and c.status is Status.FAIL]

    @property
    def new_rows(self) -> list[str]:
        return [c.variant for c in self.checks if c.status is Status.NEW]

    def counts(self) -> dict[str, int]:
        return {s.value: len(self.with_status(s)) for s in Status}


def compare_metrics(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tol: Tolerances,
    *,
    current_name: str = "current",
    baseline_name: str = "baseline",
) -> Comparison:
    """Every check of ``current`` against ``baseline`` (both already validated)."""
    cur_rows = {variant_id(r): r for r in current["rows"]}
    base_rows = {variant_id(r): r for r in baseline["rows"]}
    reference = current.get("reference")
    checks: list[Check] = []
    for vid, base in base_rows.items():
        row = cur_rows.get(vid)
        if row is None:
            checks.append(Check(vid, "row", Status.FAIL, "row", message=f"row {vid} is in the baseline but missing"))
            continue
        for metric, allowed in tol.absolute.items():
            checks.append(check_absolute(vid, metric, row.get(metric), base.get(metric), allowed))
        for metric, factor in tol.latency_factor.items():
            checks.append(_latency(vid, metric, factor, current, baseline, cur_rows, base_rows, reference))
    for vid in cur_rows:
        if vid not in base_rows:
            checks.append(Check(vid, "row", Status.NEW, "row", message=f"new row {vid} (no baseline to compare with)"))
    return Comparison(
        tuple(checks),
        current=current_name,
        baseline=baseline_name,
        reference=reference,
        tolerances=tol.source,
        notes=tuple(_notes(current, baseline)),
    )


def _notes(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    notes = []
    cp, bp = current["provenance"], baseline["provenance"]
    if cp["config_hash"] != bp["config_hash"]:
        notes.append("the runs used different configs (config_hash differs)")
    if cp["machine"] != bp["machine"]:
        notes.append("the runs ran on different machines; latency is compared only as ratios to the reference")
    if current.get("reference") != baseline.get("reference"):
        notes.append(
            f"reference variants differ (current {current.get('reference')}, baseline {baseline.get('reference')}); "
            "the current one is used in both runs"
        )
    return notes


def check_absolute(vid: str, metric: str, value: Any, base: Any, allowed: float) -> Check:
    """Direction-aware absolute check of one metric."""
    if base is None:
        return Check(
            vid, metric, Status.SKIP, value=value, tolerance=allowed, message=f"{metric}: not measured in the baseline"
        )
    if value is None:
        return Check(
            vid,
            metric,
            Status.FAIL,
            value=None,
            baseline=base,
            tolerance=allowed,
            message=f"{metric}: measured in the baseline ({num(base)}) but missing (null) in the current run",
        )
    delta = float(value) - float(base)
    higher = DIRECTIONS[metric] is Direction.HIGHER
    worse = -delta if higher else delta
    status = Status.FAIL if worse > allowed + _EPS else Status.PASS
    word = "dropped" if higher else "rose"
    if status is Status.FAIL:
        msg = f"{metric} {word} by {num(abs(delta))}: {num(value)} vs baseline {num(base)}, allowed worsening {num(allowed)}"
    else:
        msg = f"{metric} {num(value)} vs baseline {num(base)} (delta {'+' if delta >= 0 else '-'}{num(abs(delta))}, allowed worsening {num(allowed)})"
    return Check(
        vid, metric, status, value=float(value), baseline=float(base), delta=delta, tolerance=allowed, message=msg
    )


def _latency(
    vid: str,
    metric: str,
    factor: float,
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    cur_rows: Mapping[str, Mapping[str, Any]],
    base_rows: Mapping[str, Mapping[str, Any]],
    reference: str | None,
) -> Check:
    def skip(reason: str) -> Check:
        return Check(vid, metric, Status.SKIP, "latency_ratio", tolerance=factor, message=f"{metric}: {reason}")

    if reference is None:
        return skip("no reference variant in the current run")
    if vid == reference:
        return skip("the reference variant (ratio 1 by definition)")
    if reference not in base_rows:
        return skip(f"reference {reference} is not a row of the baseline")
    b, b_ref = base_rows[vid].get(metric), base_rows[reference].get(metric)
    c, c_ref = cur_rows[vid].get(metric), cur_rows[reference].get(metric)
    if b is None or not b_ref:
        return skip("not measured in the baseline")
    if c is None or not c_ref:
        return Check(
            vid,
            metric,
            Status.FAIL,
            "latency_ratio",
            baseline=b / b_ref,
            tolerance=factor,
            message=f"{metric}: measured in the baseline but missing (null) in the current run (or its reference)",
        )
    return check_ratio(vid, metric, c / c_ref, b / b_ref, factor, reference)


def check_ratio(vid: str, metric: str, ratio: float, base_ratio: float, factor: float, reference: str) -> Check:
    """Latency as a ratio to the reference: fail when ``ratio / base_ratio > factor``."""
    growth = ratio / base_ratio if base_ratio > 0 else float("inf")
    status = Status.FAIL if growth > factor + _EPS else Status.PASS
    msg = (
        f"{metric}: {ratio:.3f}x the reference {reference} (baseline {base_ratio:.3f}x), "
        f"growth {growth:.3f}x, allowed {factor:g}x"
    )
    return Check(
        vid,
        metric,
        status,
        "latency_ratio",
        value=ratio,
        baseline=base_ratio,
        delta=growth,
        tolerance=factor,
        message=msg,
    )
