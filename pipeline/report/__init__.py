"""Reports of a run: metrics.json (schema), report.html, summary.md and JUnit XML.

- :mod:`pipeline.report.metrics_file`: build / validate / load / write ``metrics.json``;
- :mod:`pipeline.report.html`: the self-contained page; :mod:`pipeline.report.plots` its figures;
- :mod:`pipeline.report.summary`: the short Markdown summary; :mod:`pipeline.report.junit`: JUnit XML;
- :mod:`pipeline.report.collect`: gather a run's stage outputs into metrics rows and tables.

Nothing here imports torch; matplotlib is imported inside the plotting functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.compare import Comparison


def write_report(
    metrics: dict[str, Any],
    out: Path,
    comparison: Comparison | None = None,
) -> dict[str, Path]:
    """Write report.html and summary.md (and junit.xml when ``comparison`` is given) into ``out``."""
    from pipeline.report.html import render_html
    from pipeline.report.junit import to_junit
    from pipeline.report.summary import render_summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "html": out / "report.html",
        "summary": out / "summary.md",
    }
    written["html"].write_text(render_html(metrics, comparison))
    written["summary"].write_text(render_summary(metrics, comparison))
    if comparison is not None:
        written["junit"] = out / "junit.xml"
        written["junit"].write_text(to_junit(comparison))
    return written
