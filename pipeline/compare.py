"""The regression gate: compare two valid metrics.json objects (``edgekd compare``).

Rows are matched by variant id (``model/runtime/precision[/recipe]``). For each matched row:

- accuracy and false-alarm metrics: ``delta = current - baseline``; the worsening (``-delta`` where
  higher is better, ``+delta`` where lower is better) may not exceed the absolute tolerance;
- latency: never absolute milliseconds across machines. Each run's row latency is divided by the
  latency of the run's reference variant (``reference``, measured in the same run, so the machine
  cancels out); ``growth = ratio_current / ratio_baseline`` may not exceed the latency factor. The
  reference must be a row of both runs (:func:`pick_reference`); with none, latency checks fail;
- values at the operating point (:data:`AT_OP_KEYS`) are skipped when the baseline row did not reach it
  (``op_reached`` false: a collapsed model's 0 false alarms at recall 0 are not comparable), except the recall
  (then the highest reached), and fail when the baseline reached it and the current row does not.

A metric measured in the baseline but null in the current run is a regression (coverage lost); a
metric null in the baseline is skipped. Rows missing in the current run are regressions; new rows
are reported, never failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pipeline.report.fmt import AT_OP_KEYS
from pipeline.report.metrics_file import choose_reference, variant_id
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
    reference = pick_reference(current, baseline, cur_rows, base_rows)
    checks: list[Check] = []
    for vid, base in base_rows.items():
        row = cur_rows.get(vid)
        if row is None:
            checks.append(Check(vid, "row", Status.FAIL, "row", message=f"row {vid} is in the baseline but missing"))
            continue
        for metric, allowed in tol.absolute.items():
            at_op = _at_operating_point(vid, metric, row, base, allowed)
            checks.append(at_op or check_absolute(vid, metric, row.get(metric), base.get(metric), allowed))
        for metric, factor in tol.latency_factor.items():
            checks.append(_latency(vid, metric, factor, cur_rows, base_rows, reference))
    for vid in cur_rows:
        if vid not in base_rows:
            checks.append(Check(vid, "row", Status.NEW, "row", message=f"new row {vid} (no baseline to compare with)"))
    return Comparison(
        tuple(checks),
        current=current_name,
        baseline=baseline_name,
        reference=reference,
        tolerances=tol.source,
        notes=tuple(_notes(current, baseline, reference)),
    )


def pick_reference(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    cur_rows: Mapping[str, Mapping[str, Any]],
    base_rows: Mapping[str, Mapping[str, Any]],
) -> str | None:
    """The latency reference used in both runs: a variant that is a row of both.

    In order: the current run's or else the baseline's reference when timed in both runs; else the preferred
    variant timed in both (:func:`choose_reference`); else either reference if a row of both, even untimed
    (its latency checks then say what is missing); else None (latency checks fail).
    """
    shared = [v for v in (current.get("reference"), baseline.get("reference")) if v in cur_rows and v in base_rows]
    timed = [r for v, r in cur_rows.items() if v in base_rows and _timed(r) and _timed(base_rows[v])]
    first_timed = next((v for v in shared if _timed(cur_rows[v]) and _timed(base_rows[v])), None)
    return first_timed or choose_reference(timed) or next(iter(shared), None)


def _timed(row: Mapping[str, Any]) -> bool:
    return bool(row.get("latency_p50_ms"))


def _notes(current: Mapping[str, Any], baseline: Mapping[str, Any], reference: str | None) -> list[str]:
    notes = []
    cp, bp = current["provenance"], baseline["provenance"]
    if cp["config_hash"] != bp["config_hash"]:
        notes.append("the runs used different configs (config_hash differs)")
    if cp["machine"] != bp["machine"]:
        notes.append("the runs ran on different machines; latency is compared only as ratios to the reference")
    cur_ref, base_ref = current.get("reference"), baseline.get("reference")
    used = (
        f"{reference} is used in both runs"
        if reference
        else "no reference variant is shared by both runs: latency checks fail"
    )
    if cur_ref != base_ref:
        notes.append(f"reference variants differ (current {cur_ref}, baseline {base_ref}); {used}")
    elif reference != cur_ref:
        notes.append(f"the reference {cur_ref} is not timed in both runs; {used}")
    return notes


def _at_operating_point(
    vid: str, metric: str, row: Mapping[str, Any], base: Mapping[str, Any], allowed: float
) -> Check | None:
    """For a ``metric`` taken at the operating point: a failure when the baseline reached it and the current run
    does not (the recall target is lost), a skip when the baseline did not reach it; else None (check the values)."""
    if metric not in AT_OP_KEYS:
        return None
    kwargs = {"value": row.get(metric), "baseline": base.get(metric), "tolerance": allowed}
    if base.get("op_reached") is False:
        if metric == "recall_at_op":
            return None  # the highest recall reached: still comparable, and a drop is a regression
        msg = f"{metric}: operating point not reached in the baseline (values at it are not comparable)"
        return Check(vid, metric, Status.SKIP, message=msg, **kwargs)
    if row.get("op_reached") is False:
        msg = f"{metric}: the baseline reaches the operating point (recall target), the current run no longer does"
        return Check(vid, metric, Status.FAIL, message=msg, **kwargs)
    return None


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
    cur_rows: Mapping[str, Mapping[str, Any]],
    base_rows: Mapping[str, Mapping[str, Any]],
    reference: str | None,
) -> Check:
    def skip(reason: str) -> Check:
        return Check(vid, metric, Status.SKIP, "latency_ratio", tolerance=factor, message=f"{metric}: {reason}")

    def fail(reason: str) -> Check:
        return Check(vid, metric, Status.FAIL, "latency_ratio", tolerance=factor, message=f"{metric}: {reason}")

    b, c = base_rows[vid].get(metric), cur_rows[vid].get(metric)
    if b is None:
        return skip("not measured in the baseline")
    if c is None:
        return fail(
            f"latency missing (null) in the current run, measured in the baseline ({num(b)} ms); expected every "
            "variant timed in the baseline to be timed again: check the bench stage's log for this variant"
        )
    if reference is None:
        return fail(
            "no reference variant is a row of both runs (and timed), so no latency ratio can be compared; "
            "expected a shared reference: time the baseline's reference variant again or refresh the baseline"
        )
    if vid == reference:
        return skip("the reference variant (ratio 1 by definition)")
    b_ref, c_ref = base_rows[reference].get(metric), cur_rows[reference].get(metric)
    if not b_ref:
        return skip(f"not measured in the baseline for the reference {reference}")
    if not c_ref:
        return fail(
            f"latency of the reference {reference} missing (null) in the current run, measured in the baseline "
            f"({num(b_ref)} ms); expected the reference to be timed: check the bench stage's log for it"
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
