"""Number formatting and the comparison-matrix columns shared by the HTML page and the Markdown summary.

Accuracy fractions are shown in points (x100, e.g. mAP50-95 0.4123 -> ``41.2``); deltas signed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.report.metrics_file import variant_id
from pipeline.tolerances import DIRECTIONS, Direction


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # pct | dpct | num3 | int | ms | mb | gflops | ratio | text
    title: str = ""


MATRIX_COLUMNS: tuple[Column, ...] = (
    Column("params", "Params (M)", "params", "trainable parameters, millions"),
    Column("size_mb", "Size (MB)", "mb", "model file size"),
    Column("map50", "mAP50", "pct", "COCO mAP at IoU 0.5, points"),
    Column("map50_95", "mAP50-95", "pct", "COCO mAP at IoU 0.5:0.95, points"),
    Column(
        "delta_map50_95_vs_fp32", "Δ FP32", "dpct", "mAP50-95 change vs the same model in FP32 (ONNX Runtime), points"
    ),
    Column(
        "delta_map50_95_vs_teacher",
        "Δ teacher",
        "dpct",
        "mAP50-95 change vs the teacher in the same runtime, precision and recipe, points",
    ),
    Column("precision_at_op", "P@op", "pct", "precision at the operating point (recall target)"),
    Column("recall_at_op", "R@op", "pct", "recall at the operating point"),
    Column("fppi_at_op", "FPPI@op", "num3", "false positives per image at the operating point"),
    Column("lamr", "LAMR", "pct", "log-average miss rate over FPPI 1e-2..1e0, points"),
    Column("fa_per_hour", "FA/h", "int", "false alarms per hour of video at the operating point"),
    Column("dece", "D-ECE", "pct", "detection expected calibration error, points"),
    Column("latency_p50_ms", "p50 ms", "ms", "end-to-end latency (JPEG to boxes), median"),
    Column("latency_p99_ms", "p99 ms", "ms", "end-to-end latency, 99th percentile"),
    Column("latency_ratio", "× ref", "ratio", "p50 latency / the reference variant's p50 (same run)"),
)
SUMMARY_KEYS = (
    "map50_95",
    "delta_map50_95_vs_fp32",
    "delta_map50_95_vs_teacher",
    "fppi_at_op",
    "lamr",
    "fa_per_hour",
    "dece",
    "latency_p50_ms",
    "latency_ratio",
)


#: Units of the matrix's number kinds, for labels outside the matrix (regression checks).
KIND_UNITS = {"pct": "points", "dpct": "points", "ms": "ms", "mb": "MB", "ratio": "× ref"}


def column_kind(key: str) -> str:
    """The :func:`fmt` kind of a metric, as in the comparison matrix (``num`` for a metric that is not a column)."""
    return next((c.kind for c in MATRIX_COLUMNS if c.key == key), "num")


def check_kinds(metric: str, check_kind: str) -> tuple[str, str, str]:
    """:func:`fmt` kinds of a regression check's (value and baseline, delta, tolerance), in the matrix's units.

    Fractions shown in points in the matrix (mAP, precision and recall at the operating point, LAMR, D-ECE) are
    in points here too, delta signed; latency checks (``check_kind == "latency_ratio"``) are ratios to the
    reference variant and their growth / allowed growth factors.
    """
    if check_kind == "latency_ratio":
        return "ratio", "ratio", "ratio"
    kind = column_kind(metric)
    return kind, "dpct" if kind == "pct" else kind, kind


def check_metric_label(metric: str, check_kind: str) -> str:
    """``map50_95 (points)``: a regression check's metric with the unit its numbers are shown in."""
    if check_kind == "latency_ratio":
        return f"{metric} (× ref)"
    unit = KIND_UNITS.get(column_kind(metric))
    return f"{metric} ({unit})" if unit else metric


def fmt(value: Any, kind: str) -> str:
    """Text of a cell; ``—`` for null / not measured."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if kind == "text" or isinstance(value, (str, bool)):
        return str(value)
    v = float(value)
    if kind == "pct":
        return f"{100 * v:.1f}"
    if kind == "dpct":
        return f"{100 * v:+.1f}"
    if kind == "num3":
        return f"{v:.3f}"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "params":
        return f"{v / 1e6:.1f}"
    if kind in ("ms", "mb", "gflops"):
        return f"{v:.2f}" if v < 100 else f"{v:.1f}"
    if kind == "db":
        return f"{v:.1f}"
    if kind == "num4":
        return f"{v:.4f}"
    if kind == "ratio":
        return f"{v:.2f}×"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def latency_ratios(rows: Sequence[Mapping[str, Any]], reference: str | None) -> dict[str, float | None]:
    """variant id -> p50 latency / reference p50 latency (None where either is missing)."""
    ref = next((r for r in rows if variant_id(r) == reference), None)
    ref_ms = ref.get("latency_p50_ms") if ref else None
    out: dict[str, float | None] = {}
    for r in rows:
        ms = r.get("latency_p50_ms")
        out[variant_id(r)] = ms / ref_ms if (ms is not None and ref_ms) else None
    return out


def direction(key: str) -> Direction | None:
    """Which way is better for a matrix column (None: neither, e.g. deltas and sizes are not ranked)."""
    if key == "latency_ratio":
        return Direction.LOWER
    if key == "size_mb":
        return Direction.LOWER
    return DIRECTIONS.get(key)


#: Values taken at the operating point: comparable only between rows that reached the target recall (a collapsed
#: model with no detections has 0 false alarms at recall 0, which is not a better operating point).
AT_OP_KEYS = frozenset({"fppi_at_op", "fa_per_hour", "precision_at_op", "recall_at_op"})


def comparable(row: Mapping[str, Any], key: str) -> bool:
    """Whether ``row[key]`` can be ranked: measured, and for operating-point values, the operating point reached."""
    return row.get(key) is not None and not (key in AT_OP_KEYS and row.get("op_reached") is False)


def best_values(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    """Per column, the best non-null value among ``rows`` (direction-aware).

    Left out: columns without a direction, operating-point values of rows that did not reach the operating
    point (:func:`comparable`), and columns where the best value is shared by more than half the rows (e.g.
    recall at the operating point, equal to the target everywhere): highlighting them would say nothing.
    """
    out: dict[str, float] = {}
    for key in keys:
        d = direction(key)
        values = [float(r[key]) for r in rows if comparable(r, key)]
        if d is None or len(values) < 2:
            continue
        best = max(values) if d is Direction.HIGHER else min(values)
        ties = sum(abs(v - best) <= 1e-12 * max(1.0, abs(best)) for v in values)
        if ties * 2 <= len(values):
            out[key] = best
    return out


def md_cell(text: str) -> str:
    """Markdown table cell: pipes escaped, newlines flattened."""
    return text.replace("|", "\\|").replace("\n", " ")
