"""Markdown summary of a run (and of its regression gate), short enough for a GitHub step summary / PR comment.

At most ~70 lines: the gate verdict, the comparison matrix (key columns, :data:`MAX_ROWS` rows), the paired
edgekd-vs-ultralytics and distillation tests, and the failed checks (:data:`MAX_FAILURES`); everything else is in
report.html.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.compare import Comparison
from pipeline.report.fmt import (
    MATRIX_COLUMNS,
    SUMMARY_KEYS,
    check_kinds,
    check_metric_label,
    fmt,
    latency_ratios,
    md_cell,
)
from pipeline.report.metrics_file import variant_id
from pipeline.report.tables import paired_rows

MAX_ROWS = 24
MAX_FAILURES = 12


def gate_line(comparison: Comparison | None) -> str:
    if comparison is None:
        return "_No baseline given: nothing compared (`edgekd compare CURRENT BASELINE`)._"
    c = comparison.counts()
    tail = f"{c['pass']} passed, {c['skip']} skipped, {c['new']} new row(s); tolerances: {comparison.tolerances}"
    if comparison.regressed:
        return f"**Regression gate: ❌ {c['fail']} regression(s)** vs `{comparison.baseline}` ({tail})"
    return f"**Regression gate: ✅ within tolerance** vs `{comparison.baseline}` ({tail})"


def _matrix(metrics: Mapping[str, Any]) -> list[str]:
    rows = metrics["rows"]
    ratios = latency_ratios(rows, metrics.get("reference"))
    cols = [c for c in MATRIX_COLUMNS if c.key in SUMMARY_KEYS]
    lines = [
        "| variant | " + " | ".join(c.label for c in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for row in rows[:MAX_ROWS]:
        vid = variant_id(row)
        values = {**row, "latency_ratio": ratios.get(vid)}
        cells = [fmt(values.get(c.key), c.kind) for c in cols]
        mark = " (ref)" if vid == metrics.get("reference") else ""
        lines.append(f"| `{vid}`{mark} | " + " | ".join(cells) + " |")
    if len(rows) > MAX_ROWS:
        lines.append(f"\n_… {len(rows) - MAX_ROWS} more row(s) in report.html_")
    return lines


def _paired(metrics: Mapping[str, Any]) -> list[str]:
    """The edgekd-vs-ultralytics and distillation tests (INT8 vs FP32 is in the matrix's Δ FP32 and the HTML)."""
    entries = metrics.get("paired") or []
    rows = paired_rows(entries, ("edgekd_vs_ultralytics", "distillation"))
    if not rows:
        return []
    conf = f"{entries[0]['confidence']:.0%}"
    head = (
        f"Paired bootstrap over the {entries[0]['n_images']} validation images (mAP50-95 points, {conf} CI; "
        "it covers which images were drawn, not the training seed):"
    )
    lines = ["", head, "", "| test | a − b | Δ | CI | verdict |", "|---|---|---:|---:|---|"]
    lines += [f"| {t} | `{a}` − `{b}` | {d} | {ci} | {v} |" for t, a, b, d, ci, v in rows]
    return lines


def _failures(comparison: Comparison) -> list[str]:
    fails = comparison.failures
    if not fails:
        return []
    lines = [
        "",
        "#### Regressions",
        "",
        "| variant | metric | current | baseline | delta | tolerance |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for c in fails[:MAX_FAILURES]:
        if c.metric == "row":
            lines.append(f"| `{c.variant}` | row | missing | present | — | — |")
            continue
        value, delta, tolerance = check_kinds(c.metric, c.kind)
        cells = [fmt(c.value, value), fmt(c.baseline, value), fmt(c.delta, delta), fmt(c.tolerance, tolerance)]
        label = md_cell(check_metric_label(c.metric, c.kind))
        lines.append(f"| `{c.variant}` | {label} | " + " | ".join(md_cell(x) for x in cells) + " |")
    if len(fails) > MAX_FAILURES:
        lines.append(f"\n_… {len(fails) - MAX_FAILURES} more regression(s): see the JUnit file_")
    return lines


def render_summary(metrics: Mapping[str, Any], comparison: Comparison | None = None) -> str:
    """The Markdown text (<= ~60 lines)."""
    prov = metrics["provenance"]
    run = prov.get("run", "?")
    lines = [
        f"### edgekd — run `{md_cell(str(run))}`",
        "",
        gate_line(comparison),
        "",
        "mAP, LAMR, D-ECE and Δ in points; FPPI/FA per hour at the operating point; latency end to end, "
        f"× ref = p50 / `{metrics.get('reference') or 'none'}` (same run).",
        "",
        *_matrix(metrics),
        *_paired(metrics),
    ]
    if comparison is not None:
        lines += _failures(comparison)
        new = comparison.new_rows
        if new:
            shown = ", ".join(f"`{v}`" for v in new[:8]) + (" …" if len(new) > 8 else "")
            lines += ["", f"New rows (not gated): {shown}"]
        lines += [f"\n_Note: {md_cell(n)}._" for n in comparison.notes]
    machine = prov["machine"]
    lines += [
        "",
        f"<sub>config {prov['config_hash'][:12]} · {md_cell(str(machine['cpu']))} · {machine['cores']} cores · "
        f"Python {machine['python']} · full report: report.html</sub>",
    ]
    return "\n".join(lines) + "\n"
