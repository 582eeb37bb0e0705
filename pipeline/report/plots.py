"""The report's figures as base64 PNG (matplotlib, Agg canvas created inside each function; no pyplot state).

Every function takes plain data from metrics.json and returns a base64 PNG string, or None when there is
nothing to draw. Figures are small (``DPI``) so that the self-contained page stays well under ~3 MB.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any

DPI = 90
MAX_LINES = 10
_PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
_MODEL_COLOURS = {
    "teacher": 0,
    "student": 1,
    "distill": 2,
    "distill_ultralytics": 3,
    "distill_cls": 4,
    "distill_loc": 5,
}
_PRECISION_STYLE = {"fp32": "-", "fp16": "-.", "bf16": "-.", "int8": "--", "mixed": ":"}
_RUNTIME_PREF = ("onnxruntime", "openvino", "tensorrt")
_RC: Any = {  # matplotlib rc keys (typed as Literal there)
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.titleweight": "bold",
    "axes.titlesize": 10,
}


def available() -> bool:
    """Whether matplotlib can be imported (it ships with the ``train`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def _figure(width: float = 6.4, height: float = 3.8, ncols: int = 1, nrows: int = 1, layout: Any = "constrained"):
    """A (figure, axes) pair on an Agg canvas, under the report's rc settings."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        yield fig, axes


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def colour(vid: str) -> str:
    model = vid.split("/", 1)[0]
    index = _MODEL_COLOURS.get(model, 6 + sum(map(ord, model)) % 4)
    return _PALETTE[index % len(_PALETTE)]


def linestyle(vid: str) -> str:
    parts = vid.split("/")
    return _PRECISION_STYLE.get(parts[2] if len(parts) > 2 else "", "-")


def pick_variants(ids: Sequence[str], limit: int = MAX_LINES) -> list[str]:
    """One runtime per model x precision x recipe (ONNX Runtime preferred), at most ``limit``, order kept."""
    chosen: dict[tuple[str, ...], str] = {}
    for vid in ids:
        model, runtime, *rest = vid.split("/")
        key = (model, *rest)
        old = chosen.get(key)
        rank = _RUNTIME_PREF.index(runtime) if runtime in _RUNTIME_PREF else len(_RUNTIME_PREF)
        if old is None or rank < _rank_runtime(old):
            chosen[key] = vid
    keep = set(chosen.values())
    return [v for v in ids if v in keep][:limit]


def _rank_runtime(vid: str) -> int:
    runtime = vid.split("/")[1]
    return _RUNTIME_PREF.index(runtime) if runtime in _RUNTIME_PREF else len(_RUNTIME_PREF)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points (latency, accuracy) not dominated by another (lower-or-equal latency AND
    higher-or-equal accuracy, one strictly), sorted by latency. O(n log n)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# ---------------------------------------------------------------- curves
def mr_fppi_plot(curves: Mapping[str, Mapping[str, Any]], lamr: Mapping[str, float | None]) -> str | None:
    """Miss rate vs FPPI, log-log, the LAMR range 1e-2..1e0 shaded; legend shows LAMR."""
    ids = pick_variants([v for v, c in curves.items() if c.get("mr_fppi", {}).get("fppi")])
    if not ids:
        return None
    with _figure() as (fig, axes):
        ax = axes[0, 0]
        ax.axvspan(1e-2, 1.0, color="#999999", alpha=0.08, lw=0)
        for vid in ids:
            c = curves[vid]["mr_fppi"]
            pts = [(f, m) for f, m in zip(c["fppi"], c["miss_rate"], strict=False) if f > 0 and m > 0]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            value = lamr.get(vid)
            label = f"{vid}  (LAMR {100 * value:.1f})" if value is not None else vid
            ax.plot(xs, ys, linestyle(vid), color=colour(vid), lw=1.5, label=label, drawstyle="steps-post")
        ax.set(xscale="log", yscale="log", xlabel="false positives per image", ylabel="miss rate")
        ax.set_title("Miss rate vs FPPI (shaded: LAMR range)")
        ax.set_ylim(top=1.0)
        ax.legend(loc="lower left")
        return _png(fig)


def pr_plot(curves: Mapping[str, Mapping[str, Any]], ap: Mapping[str, float | None]) -> str | None:
    ids = pick_variants([v for v, c in curves.items() if c.get("pr", {}).get("recall")])
    if not ids:
        return None
    with _figure() as (fig, axes):
        ax = axes[0, 0]
        for vid in ids:
            c = curves[vid]["pr"]
            value = ap.get(vid)
            label = f"{vid}  (mAP50 {100 * value:.1f})" if value is not None else vid
            ax.plot(c["recall"], c["precision"], linestyle(vid), color=colour(vid), lw=1.5, label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        ax.set_title("Precision-recall (IoU 0.5, all classes)")
        ax.legend(loc="lower left")
        return _png(fig)


def reliability_bars(r: Mapping[str, Any]) -> list[tuple[float, float, float, float]]:
    """``(left, width, height, alpha)`` of each reliability-diagram bar; darker bars hold more detections.

    ``r`` lists every confidence bin in order (:func:`pipeline.evaluation.curve_set`): bin ``i`` of ``n`` spans
    ``[i / n, (i + 1) / n)``, so a calibrated model's bars meet the diagonal. Empty bins get no bar.
    """
    counts, precision = list(r.get("count") or []), list(r.get("precision") or [])
    n, total = len(counts), max(1, sum(c or 0 for c in counts))
    return [
        (i / n, 1 / n, float(precision[i]), 0.35 + 0.65 * min(1.0, 4 * counts[i] / total))
        for i in range(n)
        if counts[i] and precision[i] is not None
    ]


def reliability_plot(curves: Mapping[str, Mapping[str, Any]], dece: Mapping[str, float | None]) -> str | None:
    """Small multiples: per confidence bin, precision (bars) vs the diagonal; bar shade = detection count."""
    ids = pick_variants([v for v, c in curves.items() if c.get("reliability", {}).get("count")], limit=8)
    if not ids:
        return None
    ncols = min(4, len(ids))
    nrows = (len(ids) + ncols - 1) // ncols
    width, height = 2.1 * ncols + 0.5, 2.2 * nrows + 0.4
    with _figure(width, height, ncols=ncols, nrows=nrows, layout=None) as (fig, axes):
        # fixed margins: constrained layout costs ~1 s on 8 panels
        fig.subplots_adjust(
            left=0.45 / width,
            right=1 - 0.1 / width,
            bottom=0.45 / height,
            top=1 - 0.45 / height,
            wspace=0.3,
            hspace=0.55,
        )
        for k, ax in enumerate(axes.flat):
            if k >= len(ids):
                ax.set_visible(False)
                continue
            vid = ids[k]
            for left, bar_width, p, alpha in reliability_bars(curves[vid]["reliability"]):
                ax.bar(
                    left, p, width=bar_width, align="edge", color=colour(vid), alpha=alpha, edgecolor="white", lw=0.5
                )
            ax.plot([0, 1], [0, 1], color="#555555", lw=0.8, ls=":")
            ax.set(xlim=(0, 1), ylim=(0, 1))
            value = dece.get(vid)
            model, rest = vid.split("/", 1)
            tail = "" if value is None else f"  D-ECE {100 * value:.1f}"
            ax.set_title(f"{model}\n{rest}{tail}", fontsize=7)
            ax.tick_params(labelsize=7)
        fig.supxlabel("confidence", fontsize=8)
        fig.supylabel("precision", fontsize=8)
        return _png(fig)


# ---------------------------------------------------------------- latency
def latency_plot(latency: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> str | None:
    """Per variant: a violin of the end-to-end samples where recorded, and p50/p90/p99 markers."""
    ids = [v for v in order if v in latency and latency[v].get("p50_ms") is not None]
    if not ids:
        return None
    height = 0.9 + 0.32 * len(ids)
    with _figure(width=6.4, height=height) as (fig, axes):
        ax = axes[0, 0]
        ys = list(range(len(ids)))[::-1]
        for y, vid in zip(ys, ids, strict=True):
            lat = latency[vid]
            samples = lat.get("samples_ms") or []
            if len(samples) >= 5:
                parts = _hviolin(ax, samples, y)
                for body in parts["bodies"]:
                    body.set_facecolor(colour(vid))
                    body.set_alpha(0.35)
            ax.plot([lat["p50_ms"], lat.get("p99_ms") or lat["p50_ms"]], [y, y], color=colour(vid), lw=1)
            for key, marker in (("p50_ms", "o"), ("p90_ms", "^"), ("p99_ms", "s")):
                if lat.get(key) is not None:
                    ax.plot(
                        lat[key], y, marker, color=colour(vid), ms=5, mfc="white" if key != "p50_ms" else colour(vid)
                    )
        ax.set_yticks(ys, ids, fontsize=7)
        ax.set_xlabel("end-to-end latency, ms (● p50  ▲ p90  ■ p99)")
        ax.set_title("Latency distribution per variant")
        ax.grid(axis="y", alpha=0)
        return _png(fig)


def _hviolin(ax: Any, samples: Sequence[float], y: float) -> Any:
    """A horizontal violin (``orientation=`` since matplotlib 3.10, ``vert=False`` before)."""
    try:
        return ax.violinplot([samples], positions=[y], orientation="horizontal", widths=0.8, showextrema=False)
    except TypeError:
        return ax.violinplot([samples], positions=[y], vert=False, widths=0.8, showextrema=False)


def accuracy_latency_plot(rows: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> str | None:
    """mAP50-95 vs p50 latency; the Pareto front (no variant both faster and more accurate) joined and ringed."""
    pts = [(vid, r["latency_p50_ms"], r["map50_95"]) for vid, r in zip(ids, rows, strict=True)]
    pts = [p for p in pts if p[1] is not None and p[2] is not None]
    if not pts:
        return None
    front = pareto_front([(p[1], p[2]) for p in pts])
    markers = {"fp32": "o", "fp16": "D", "bf16": "D", "int8": "s", "mixed": "P"}
    with _figure(width=6.4, height=4.0) as (fig, axes):
        ax = axes[0, 0]
        fx = [pts[i][1] for i in front]
        fy = [100 * pts[i][2] for i in front]
        ax.plot(fx, fy, "-", color="#444444", lw=1, drawstyle="steps-post", label="Pareto front", zorder=1)
        ax.scatter(fx, fy, s=140, facecolors="none", edgecolors="#444444", lw=1.2, zorder=2)
        for vid, ms, acc in pts:
            prec = vid.split("/")[2]
            ax.scatter(ms, 100 * acc, marker=markers.get(prec, "o"), color=colour(vid), s=36, zorder=3)
        listing = []
        for k, i in enumerate(front, 1):
            vid, ms, acc = pts[i]
            ax.annotate(str(k), (ms, 100 * acc), textcoords="offset points", xytext=(6, 5), fontsize=8, weight="bold")
            listing.append(f"{k}  {vid}")
        ax.text(
            0.99,
            0.02,
            "Pareto front:\n" + "\n".join(listing),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            multialignment="left",
            fontsize=7,
            family="monospace",
            bbox={"boxstyle": "round", "fc": "white", "ec": "#cccccc", "alpha": 0.9},
        )
        for prec, m in (("fp32", "o"), ("fp16", "D"), ("int8", "s")):
            ax.scatter([], [], marker=m, color="#777777", s=30, label=prec)
        xs = [p[1] for p in pts]
        if max(xs) / max(min(xs), 1e-9) > 4:
            from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(right=max(xs) * 1.6 if ax.get_xscale() == "log" else max(xs) * 1.25)
        ax.set(xlabel="end-to-end latency p50, ms", ylabel="mAP50-95 (points)")
        ax.set_title("Accuracy vs latency")
        ax.legend(loc="upper left")
        return _png(fig)


def distractor_plot(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """False alarms at the operating point per distractor kind, one bar per variant (at most 6)."""
    if not entries:
        return None
    kinds = sorted({e["kind"] for e in entries})
    ids = pick_variants(list(dict.fromkeys(e["variant"] for e in entries)), limit=6)
    counts = {(e["variant"], e["kind"]): e["false_alarms"] for e in entries}
    with _figure(width=6.4, height=3.2) as (fig, axes):
        ax = axes[0, 0]
        width = 0.8 / max(1, len(ids))
        for j, vid in enumerate(ids):
            xs = [i + (j - (len(ids) - 1) / 2) * width for i in range(len(kinds))]
            hatch = "//" if "/int8" in vid else None
            ax.bar(xs, [counts.get((vid, k), 0) for k in kinds], width, color=colour(vid), hatch=hatch, label=vid)
        ax.set_xticks(range(len(kinds)), kinds)
        ax.set(ylabel="false alarms at op")
        ax.set_title("False alarms on distractors")
        ax.legend(ncols=2)
        return _png(fig)
