"""HTML tables of the report's secondary sections (sensitivity, robustness, distractors, per class, ...).

Every text cell is escaped with :func:`html.escape`; numbers go through :func:`pipeline.report.fmt.fmt`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.compare import Check, Status
from pipeline.report import plots
from pipeline.report.fmt import check_kinds, check_metric_label, fmt

e = html.escape
MAX_SENSITIVITY = 12  # layers shown per model x runtime
DETAILS_OVER = 40  # longer tables fold into <details>


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]], text_cols: int = 1) -> str:
    """``head``: escaped here; ``rows``: cells that are ALREADY html (use :func:`cell`)."""
    th = "".join(f'<th class="t">{e(h)}</th>' if i < text_cols else f"<th>{e(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def cell(value: Any, kind: str = "text") -> str:
    """One escaped ``<td>``: text and code left-aligned, numbers right-aligned, null greyed as ``—``."""
    classes = ["t"] if kind in ("text", "code") else []
    if value is None:
        classes.append("na")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    inner = f"<code>{e(str(value))}</code>" if kind == "code" and value is not None else e(fmt(value, kind))
    return f"<td{attr}>{inner}</td>"


def fold(table: str, n: int, what: str) -> str:
    return table if n <= DETAILS_OVER else f"<details><summary>{e(what)} ({n} rows)</summary>{table}</details>"


# ---------------------------------------------------------------- regression checks
def checks_table(checks: Sequence[Check]) -> str:
    rows = []
    for c in checks:
        value, delta, tolerance = check_kinds(c.metric, c.kind)
        status = {Status.FAIL: "fail", Status.SKIP: "skip"}.get(c.status, "")
        rows.append(
            [
                cell(c.variant, "code"),
                cell(check_metric_label(c.metric, c.kind), "text"),
                f'<td class="t {status}">{e(c.status.value)}</td>',
                cell(c.value, value),
                cell(c.baseline, value),
                cell(c.delta, delta),
                cell(c.tolerance, tolerance),
                cell(c.message, "text"),
            ]
        )
    return html_table(
        ["Variant", "Metric", "Status", "Current", "Baseline", "Δ / growth", "Tolerance", "Detail"], rows, 3
    )


# ---------------------------------------------------------------- sections
def sensitivity_table(entries: Sequence[Mapping[str, Any]]) -> str:
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for x in entries:
        groups.setdefault((x["model"], x["runtime"], x.get("recipe") or ""), []).append(x)
    parts = ['<div class="grid2">']
    for (model, runtime, recipe), items in groups.items():
        items = sorted(items, key=_sensitivity_key)
        rows = [
            [
                cell(str(x.get("rank") or i + 1)),
                cell(x["layer"], "code"),
                cell(x.get("op_type"), "text"),
                cell(x.get("sqnr_db"), "db"),
                cell(x.get("cosine"), "num4"),
                cell("yes" if x.get("kept_float") else ("no" if x.get("kept_float") is False else None), "text"),
            ]
            for i, x in enumerate(items[:MAX_SENSITIVITY])
        ]
        title = "/".join(p for p in (model, runtime, recipe) if p)
        more = f" — worst {MAX_SENSITIVITY} of {len(items)}" if len(items) > MAX_SENSITIVITY else ""
        parts.append(f"<div><h3>{e(title)}{e(more)}</h3>")
        parts.append(
            html_table(["Rank", "Tensor / layer", "Op", "SQNR dB", "Cosine", "Kept in float"], rows, 3) + "</div>"
        )
    return "".join(parts) + "</div>"


def fallback_table(fallback: Mapping[str, Any]) -> str:
    """One row per model: the fallback search's choice (how many layers stayed float, at what mAP and latency)."""
    rows = []
    for model, fb in fallback.items():
        if not isinstance(fb, Mapping):
            continue
        chosen = fb.get("chosen") or {}
        lat = fb.get("latency_ms") or {}
        order = sorted(lat, key=lambda k: (("fp32", "int8", "fallback") + (k,)).index(k))
        lat_text = " / ".join(f"{k} {fmt(lat[k], 'ms')}" for k in order) or None
        ok = fb.get("within_budget")
        rows.append([
            cell(model, "code"), cell(fb.get("budget_points"), "num"), cell(fb.get("fp32_map50_95"), "pct"),
            cell(chosen.get("k"), "int"), cell(chosen.get("map50_95"), "pct"), cell(chosen.get("drop_points"), "num"),
            cell(None if ok is None else ("yes" if ok else "no")), cell(lat_text),
        ])  # fmt: skip
    head = ["Model", "Budget (pts)", "FP32 mAP50-95", "Layers in float", "mAP50-95 after", "Drop (pts)", "Within budget",
            "Inference p50 ms"]  # fmt: skip
    return "<h3>Fallback search (most sensitive layers kept in float)</h3>" + html_table(head, rows)


def _sensitivity_key(x: Mapping[str, Any]) -> tuple:
    if x.get("rank") is not None:
        return (0, x["rank"])
    sqnr = x.get("sqnr_db")
    return (1, sqnr if sqnr is not None else float("inf"))


def pivot(
    entries: Sequence[Mapping[str, Any]], column: Callable[[Mapping[str, Any]], str], metric: str, kind: str = "pct"
) -> tuple[list[str], list[list[str]]]:
    """Rows = variant, columns = ``column(entry)``, cells = ``entry[metric]``."""
    cols = list(dict.fromkeys(column(x) for x in entries))
    table: dict[str, dict[str, Any]] = {}
    for x in entries:
        table.setdefault(x["variant"], {})[column(x)] = x.get(metric)
    make = heat_cell if kind == "dpct" else cell
    rows = [[cell(v, "code")] + [make(vals.get(c), kind) for c in cols] for v, vals in table.items()]
    return cols, rows


def heat_cell(value: Any, kind: str = "dpct") -> str:
    """A delta cell shaded red by how much worse it is (full colour at -0.15, i.e. 15 points)."""
    if value is None or value >= 0:
        return cell(value, kind)
    alpha = min(1.0, -float(value) / 0.15) * 0.55
    return f'<td class="neg" style="background: rgba(180, 35, 24, {alpha:.2f})">{e(fmt(value, kind))}</td>'


def first_metric(entries: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str | None:
    return next((k for k in keys if any(x.get(k) is not None for x in entries)), None)


_METRIC_LABEL = {"map50_95": "mAP50-95", "map50": "mAP50", "recall_at_op": "recall @ op", "lamr": "LAMR"}


def robustness_html(metrics: Mapping[str, Any]) -> str:
    parts = []
    rob = metrics.get("robustness") or []
    metric = first_metric(rob, ("map50_95", "map50", "recall_at_op", "lamr"))
    if rob and metric:
        label = lambda x: x["corruption"] + (f" s{x['severity']}" if x.get("severity") is not None else "")  # noqa: E731
        cols, rows = pivot(rob, label, metric)
        parts.append(f"<h3>Corruptions — {e(_METRIC_LABEL[metric])} (points)</h3>")
        parts.append(fold(html_table(["Variant", *cols], rows), len(rows), "Robustness table"))
        if any(x.get("delta_map50_95_vs_clean") is not None for x in rob):
            cols, rows = pivot(rob, label, "delta_map50_95_vs_clean", "dpct")
            parts.append("<h3>Change vs clean images — mAP50-95 (points)</h3>")
            parts.append(fold(html_table(["Variant", *cols], rows), len(rows), "Robustness deltas"))
    cond = metrics.get("per_condition") or []
    metric = first_metric(cond, ("map50_95", "recall_at_op", "lamr", "map50"))
    if cond and metric:
        cols, rows = pivot(cond, lambda x: f"{x['attribute']}={x['value']}", metric)
        parts.append(f"<h3>Per image condition — {e(_METRIC_LABEL[metric])} (points)</h3>")
        parts.append(fold(html_table(["Variant", *cols], rows), len(rows), "Per-condition table"))
    return "".join(parts)


def distractors_html(entries: Sequence[Mapping[str, Any]]) -> str:
    """Pivot: variant x kind -> false alarms at the operating point (and the distractor counts per kind)."""
    cols, rows = pivot(entries, lambda x: x["kind"], "false_alarms", "int")
    totals: dict[str, int] = {}
    for x in entries:
        if x.get("n_distractors") is not None:
            totals[x["kind"]] = max(totals.get(x["kind"], 0), x["n_distractors"])
    head = ["Variant", *(f"{c} (of {totals[c]})" if c in totals else c for c in cols)]
    return fold(html_table(head, rows), len(rows), "Distractor table")


def per_class_html(entries: Sequence[Mapping[str, Any]]) -> str:
    cols = (
        ("n_gt", "GT boxes", "int"),
        ("map50", "AP50", "pct"),
        ("map50_95", "AP50-95", "pct"),
        ("precision_at_op", "P@op", "pct"),
        ("recall_at_op", "R@op", "pct"),
        ("fppi_at_op", "FPPI@op", "num3"),
        ("lamr", "LAMR", "pct"),
        ("fa_per_hour", "FA/h", "int"),
        ("dece", "D-ECE", "pct"),
    )
    shown = [c for c in cols if any(x.get(c[0]) is not None for x in entries)]
    rows = [
        [cell(x["variant"], "code"), cell(x["class"])] + [cell(x.get(k), kind) for k, _, kind in shown] for x in entries
    ]
    full = html_table(["Variant", "Class", *(c[1] for c in shown)], rows, 2)
    parts = []
    for key, label in (("map50_95", "AP50-95"), ("lamr", "LAMR")):
        if any(x.get(key) is not None for x in entries):
            pcols, prows = pivot(entries, lambda x: x["class"], key)
            parts.append(f"<div><h3>{e(label)} by class (points)</h3>{html_table(['Variant', *pcols], prows)}</div>")
    if not parts:
        return fold(full, len(rows), "Per-class table")
    return f'<div class="grid2">{"".join(parts)}</div><details><summary>Every per-class metric ({len(rows)} rows)</summary>{full}</details>'


def training_html(entries: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            cell(x["model"], "code"),
            cell(x.get("params"), "params"),
            cell(x.get("gflops"), "gflops"),
            cell(x.get("epochs"), "int"),
            cell(x.get("train_seconds"), "int"),
            cell(x.get("map50"), "pct"),
            cell(x.get("map50_95"), "pct"),
        ]
        for x in entries
    ]
    return html_table(["Model", "Params (M)", "GFLOPs", "Epochs", "Train s", "val mAP50", "val mAP50-95"], rows)


PAIRED_KINDS = {
    "edgekd_vs_ultralytics": "edgekd INT8 − ultralytics INT8",
    "int8_vs_fp32": "INT8 − FP32",
    "distillation": "distillation",
}


def paired_rows(entries: Sequence[Mapping[str, Any]], kinds: Sequence[str]) -> list[list[Any]]:
    """[kind label, a, b, Δ points, CI text, verdict] of the ``entries`` of ``kinds``, in that order."""
    rows = []
    for kind in kinds:
        for x in (x for x in entries if x["kind"] == kind):
            ci = f"[{100 * x['ci_low']:+.2f}, {100 * x['ci_high']:+.2f}]"
            rows.append([PAIRED_KINDS[kind], x["a"], x["b"], f"{100 * x['delta_map50_95']:+.2f}", ci, x["verdict"]])
    return rows


def paired_html(entries: Sequence[Mapping[str, Any]]) -> str:
    head = ["Test", "a", "b", "Δ mAP50-95 (a − b)", f"{entries[0]['confidence']:.0%} CI", "Verdict"]
    rows = [
        [cell(test), cell(a, "code"), cell(b, "code"), f"<td>{e(delta)}</td>", f"<td>{e(ci)}</td>", cell(verdict)]
        for test, a, b, delta, ci, verdict in paired_rows(entries, list(PAIRED_KINDS))
    ]
    return html_table(head, rows, text_cols=3)


def table_sections(metrics: Mapping[str, Any], section: Callable, figure: Callable, empty: Callable) -> list[str]:
    out = []
    paired = metrics.get("paired") or []
    if paired:
        lead = (
            f"Same validation images ({paired[0]['n_images']}), resampled with replacement "
            f"{paired[0]['resamples']} times; a difference is called only when its interval excludes 0. The interval "
            "covers which images were drawn, not the training seed: repeat runs with other seeds for that."
        )
        out.append(section("paired", "Paired differences", paired_html(paired), lead))
    sens = metrics.get("sensitivity") or []
    fallback = (metrics.get("extra") or {}).get("fallback")
    body = sensitivity_table(sens) if sens else empty("No sensitivity analysis in this run.")
    if isinstance(fallback, Mapping) and fallback:
        body += fallback_table(fallback)
    out.append(
        section(
            "quantization",
            "Quantization sensitivity",
            body,
            "Per quantized tensor, INT8 error against FP32 on calibration frames (lower SQNR = more sensitive).",
        )
    )
    rob = robustness_html(metrics)
    out.append(section("robustness", "Robustness", rob or empty("No corruption or per-condition results.")))
    dis = metrics.get("distractors") or []
    if dis:
        png = plots.distractor_plot(dis) if plots.available() else None
        body = figure(png, "False alarms at the operating point overlapping a distractor, per kind.", "distractors")
        out.append(section("distractors", "Distractor false alarms", body + distractors_html(dis)))
    pc = metrics.get("per_class") or []
    out.append(section("per-class", "Per class", per_class_html(pc) if pc else empty("No per-class results.")))
    if metrics.get("training"):
        out.append(
            section("training", "Training", training_html(metrics["training"]), "Validator numbers from training.")
        )
    return out


def config_yaml(prov: Mapping[str, Any]) -> str:
    import yaml

    config = prov.get("config")
    if not config:
        return "# the resolved config was not recorded in this metrics file"
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def environment(prov: Mapping[str, Any]) -> str:
    machine = [[cell(k), cell(v)] for k, v in prov["machine"].items()]
    packages = [[cell(k), cell(v, "code")] for k, v in sorted(prov["packages"].items())]
    meta = [
        [cell(k), cell(prov[k], "code")]
        for k in ("config_hash", "run", "profile", "seed", "edgekd_version")
        if k in prov
    ]
    return (
        '<div class="grid2"><div><h3>Machine</h3>'
        + html_table(["Key", "Value"], machine, 2)
        + html_table(["Provenance", "Value"], meta, 2)
        + "</div><div><h3>Packages</h3>"
        + html_table(["Package", "Version"], packages, 2)
        + "</div></div>"
    )
