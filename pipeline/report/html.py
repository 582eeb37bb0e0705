"""report.html: one self-contained page (inline CSS, figures as data: URIs, no scripts, no external assets).

Every piece of text from the metrics file goes through :func:`html.escape`. The tables and figures are
drawn from a valid metrics.json object alone, so ``edgekd report --run DIR`` can re-render a page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from pipeline.compare import Comparison, Status
from pipeline.report import plots, tables
from pipeline.report.fmt import MATRIX_COLUMNS, best_values, comparable, fmt, latency_ratios
from pipeline.report.metrics_file import variant_id

e = html.escape

SECTIONS = (
    ("overview", "Overview"),
    ("matrix", "Comparison matrix"),
    ("gate", "Regression gate"),
    ("false-alarms", "Miss rate & PR"),
    ("calibration", "Calibration"),
    ("latency", "Latency"),
    ("paired", "Paired differences"),
    ("quantization", "Quantization sensitivity"),
    ("robustness", "Robustness"),
    ("distractors", "Distractors"),
    ("per-class", "Per class"),
    ("training", "Training"),
    ("config", "Config"),
    ("environment", "Environment"),
)


def _css() -> str:
    return (resources.files("pipeline") / "report" / "style.css").read_text()


def section(sid: str, title: str, body: str, lead: str = "") -> str:
    lead_html = f'<p class="lead">{e(lead)}</p>' if lead else ""
    return f'<section id="{e(sid)}"><h2>{e(title)}</h2>{lead_html}{body}</section>'


def figure(png: str | None, caption: str, alt: str) -> str:
    if png is None:
        return f'<p class="empty">{e(alt)}: no data in this run.</p>'
    return (
        f'<figure><img alt="{e(alt)}" src="data:image/png;base64,{png}"><figcaption>{e(caption)}</figcaption></figure>'
    )


def empty(what: str) -> str:
    return f'<p class="empty">{e(what)}</p>'


# ---------------------------------------------------------------- header / overview
def _gate_badge(comparison: Comparison | None) -> str:
    if comparison is None:
        return '<span class="badge none">no baseline compared</span>'
    c = comparison.counts()
    if comparison.regressed:
        return f'<span class="badge fail">✗ {c["fail"]} regression(s)</span>'
    return f'<span class="badge ok">✓ within tolerance ({c["pass"]} checks)</span>'


def _header(metrics: Mapping[str, Any], comparison: Comparison | None, title: str) -> str:
    prov = metrics["provenance"]
    bits = [
        f"run <code>{e(str(prov.get('run', '?')))}</code>",
        f"profile <code>{e(str(prov.get('profile', '?')))}</code>",
        f"config <code>{e(prov['config_hash'][:12])}</code>",
        f"edgekd {e(str(prov.get('edgekd_version', '?')))}",
    ]
    return (
        f'<header><h1>{e(title)}</h1><div class="meta">{" · ".join(bits)} &nbsp; {_gate_badge(comparison)}</div>'
        "</header>"
    )


def _nav(present: set[str]) -> str:
    links = "".join(f'<a href="#{sid}">{e(label)}</a>' for sid, label in SECTIONS if sid in present)
    return f"<nav>{links}</nav>"


def _card(key: str, value: str, sub: str = "") -> str:
    size = " small" if len(value) > 12 else ""
    return (
        f'<div class="card"><div class="k">{e(key)}</div><div class="v{size}">{e(value)}</div>'
        f'<div class="s">{e(sub)}</div></div>'
    )


def _overview(metrics: Mapping[str, Any], comparison: Comparison | None) -> str:
    rows = metrics["rows"]
    ref = metrics.get("reference")
    scored = [r for r in rows if r.get("map50_95") is not None]
    cards = [_card("Variants", str(len(rows)), f"{len({r['model'] for r in rows})} models")]
    if scored:
        best = max(scored, key=lambda r: r["map50_95"])
        cards.append(_card("Best mAP50-95", fmt(best["map50_95"], "pct"), variant_id(best)))
    low = [r for r in rows if comparable(r, "fppi_at_op")]
    if low:
        best = min(low, key=lambda r: r["fppi_at_op"])
        cards.append(_card("Lowest FPPI @ op", fmt(best["fppi_at_op"], "num3"), variant_id(best)))
    timed = [r for r in rows if r.get("latency_p50_ms") is not None]
    if timed:
        fast = min(timed, key=lambda r: r["latency_p50_ms"])
        cards.append(_card("Fastest p50", f"{fmt(fast['latency_p50_ms'], 'ms')} ms", variant_id(fast)))
    cards.append(_card("Latency reference", ref or "none", "latency ratios are taken to it"))
    notes = metrics.get("notes") or []
    notes_html = '<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>" if notes else ""
    return section("overview", "Overview", f'<div class="cards">{"".join(cards)}</div>{notes_html}')


# ---------------------------------------------------------------- matrix
def _matrix(metrics: Mapping[str, Any]) -> str:
    rows = metrics["rows"]
    if not rows:
        return section("matrix", "Comparison matrix", empty("No rows: nothing was evaluated."))
    ref = metrics.get("reference")
    ratios = latency_ratios(rows, ref)
    values = [{**r, "latency_ratio": ratios.get(variant_id(r))} for r in rows]
    best = best_values(values, [c.key for c in MATRIX_COLUMNS])
    head = '<th class="t">Variant</th>' + "".join(f'<th title="{e(c.title)}">{e(c.label)}</th>' for c in MATRIX_COLUMNS)
    body, last_model = [], None
    for row in values:
        vid = variant_id(row)
        cls = ' class="group"' if last_model is not None and row["model"] != last_model else ""
        last_model = row["model"]
        badge = '<span class="badge ref">ref</span>' if vid == ref else ""
        executed = row.get("executed_precision")
        if executed and executed != row["precision"]:
            badge += f'<span class="badge exec" title="precision actually executed">ran {e(str(executed))}</span>'
        cells = [f'<td class="t"><code>{e(vid)}</code>{badge}</td>']
        for c in MATRIX_COLUMNS:
            v = row.get(c.key)
            klass = _cell_class(c.key, c.kind, v, best)
            title = f' title="GFLOPs {e(fmt(row.get("gflops"), "gflops"))}"' if c.key == "params" else ""
            cells.append(f"<td{klass}{title}>{e(fmt(v, c.kind))}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    table = f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    lead = (
        "One row per model × runtime × precision. mAP, precision/recall, LAMR, D-ECE and Δ in points; the operating "
        "point is where recall first reaches the target; latency is end to end (JPEG to boxes) on this machine. "
        "Best value per column highlighted; — = not measured here."
    )
    return section("matrix", "Comparison matrix", table, lead)


def _cell_class(key: str, kind: str, value: Any, best: Mapping[str, float]) -> str:
    if value is None:
        return ' class="na"'
    if key in best and abs(float(value) - best[key]) <= 1e-12 * max(1.0, abs(best[key])):
        return ' class="best"'
    if kind == "dpct":
        return ' class="neg"' if value < -5e-4 else (' class="pos"' if value > 5e-4 else "")
    return ""


# ---------------------------------------------------------------- gate
def _gate(comparison: Comparison | None) -> str:
    if comparison is None:
        return ""
    c = comparison.counts()
    lead = (
        f"{comparison.current} vs baseline {comparison.baseline}; tolerances: {comparison.tolerances}. "
        f"{c['fail']} failed, {c['pass']} passed, {c['skip']} skipped, {c['new']} new row(s)."
    )
    fails = [k for k in comparison.checks if k.status is Status.FAIL]
    parts = [f"<p>{_gate_badge(comparison)}</p>"]
    if fails:
        parts.append(tables.checks_table(fails))
    others = [k for k in comparison.checks if k.status is not Status.FAIL]
    if others:
        parts.append(
            f"<details><summary>All other checks ({len(others)})</summary>{tables.checks_table(others)}</details>"
        )
    if comparison.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in comparison.notes) + "</ul>")
    return section("gate", "Regression gate", "".join(parts), lead)


# ---------------------------------------------------------------- figures
def _by_id(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    return {variant_id(r): r.get(key) for r in rows}


def _figures(metrics: Mapping[str, Any]) -> list[str]:
    rows = metrics["rows"]
    ids = [variant_id(r) for r in rows]
    curves = {v: metrics["curves"][v] for v in ids if v in (metrics.get("curves") or {})}  # in row order
    if not plots.available():
        note = empty("Figures need matplotlib (pip install 'edgekd[train]'); tables below are complete.")
        return [section("false-alarms", "Miss rate & PR", note)]
    mr = plots.mr_fppi_plot(curves, _by_id(rows, "lamr"))
    pr = plots.pr_plot(curves, _by_id(rows, "map50"))
    out = [
        section(
            "false-alarms",
            "Miss rate vs FPPI and precision-recall",
            '<div class="grid2">'
            + figure(mr, "Caltech protocol, IoU ≥ 0.5, ignore regions neither TP nor FP; log-log.", "miss rate vs FPPI")
            + figure(pr, "All classes pooled; one runtime per model × precision.", "precision-recall curves")
            + "</div>",
            "Lower-left is better for miss rate vs FPPI. Solid: FP32, dash-dot: FP16, dashed: INT8.",
        )
    ]
    rel = plots.reliability_plot(curves, _by_id(rows, "dece"))
    out.append(
        section(
            "calibration",
            "Calibration (reliability diagrams)",
            figure(
                rel, "Precision per confidence bin vs the diagonal; darker bars hold more detections.", "reliability"
            ),
            "A calibrated detector's bars follow the dotted diagonal; D-ECE is their count-weighted gap.",
        )
    )
    lat = plots.latency_plot(metrics.get("latency") or _latency_from_rows(rows), ids)
    acc = plots.accuracy_latency_plot(rows, ids)
    out.append(
        section(
            "latency",
            "Latency",
            '<div class="grid2">'
            + figure(lat, "Violins where per-frame samples were recorded; markers p50 / p90 / p99.", "latency")
            + figure(
                acc,
                "Ringed and joined: the Pareto front (no variant is both faster and more accurate).",
                "accuracy vs latency",
            )
            + "</div>",
            "Measured interleaved on this machine; compare across machines only as ratios to the reference.",
        )
    )
    return out


def _latency_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        variant_id(r): {"p50_ms": r["latency_p50_ms"], "p90_ms": r["latency_p90_ms"], "p99_ms": r["latency_p99_ms"]}
        for r in rows
        if r.get("latency_p50_ms") is not None
    }


# ---------------------------------------------------------------- page
def render_html(metrics: Mapping[str, Any], comparison: Comparison | None = None) -> str:
    """The whole page as text; its Config section is the config recorded in the provenance."""
    prov = metrics["provenance"]
    title = f"edgekd report — {prov.get('run', 'run')}"
    body = [_overview(metrics, comparison), _matrix(metrics), _gate(comparison), *_figures(metrics)]
    body += tables.table_sections(metrics, section, figure, empty)
    body.append(section("config", "Config", f"<pre>{e(tables.config_yaml(prov))}</pre>"))
    body.append(section("environment", "Environment", tables.environment(prov)))
    body = [b for b in body if b]
    present = {sid for sid, _ in SECTIONS if f'<section id="{sid}"' in "".join(body)}
    foot = f"edgekd metrics.json schema {e(metrics['schema_version'])} · self-contained page, no external assets"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_css()}</style></head><body>"
        f"{_header(metrics, comparison, title)}{_nav(present)}<main>{''.join(body)}</main>"
        f"<footer>{foot}</footer></body></html>\n"
    )
