"""Stage ``report``: metrics.json + report.html + summary.md (+ junit.xml against ``report.baseline``).

Reads the JSON outputs of the upstream stages present in the run (shapes documented in
:mod:`pipeline.report.collect`): ``evaluate/metrics_rows.json``, ``evaluate/tables.json``,
``bench/bench.json``, ``quantize/sensitivity.json`` and the training stages' ``summary.json``.

Writes, relative to the stage folder:

- ``metrics.json``: validated against ``pipeline/schemas/metrics.schema.json``; no timestamps;
- ``report.html``: one self-contained page; ``summary.md``: the short Markdown summary;
- ``junit.xml``: one test case per regression check, when ``report.baseline`` is set (the stage itself
  never fails on a regression: ``edgekd compare`` is the gate);
- ``provenance.json``: the wall-clock side of provenance (when generated, stage timings). It is declared
  volatile, so it is neither hashed nor part of the cache check.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.report.metrics_file import PACKAGES
from pipeline.runner import Stage, StageContext
from pipeline.train import ARMS


def _report(ctx: StageContext) -> None:
    from pipeline.compare import compare_metrics
    from pipeline.report import write_report
    from pipeline.report.collect import collect
    from pipeline.report.metrics_file import build_metrics, load_metrics, make_provenance, variant_id, write_metrics

    cfg = ctx.cfg
    got = collect(ctx.inputs)
    ids = {variant_id(r) for r in got.rows}
    reference = got.reference
    if reference is not None and reference not in ids:
        got.notes.append(f"bench reference {reference!r} is not one of the rows; a reference was chosen instead")
        reference = None
    metrics = build_metrics(
        got.rows, got.tables, make_provenance(cfg), reference=reference, notes=got.notes, source="report stage"
    )
    write_metrics(metrics, ctx.out / "metrics.json")
    comparison = None
    if cfg.report.baseline is not None:
        baseline = load_metrics(cfg.report.baseline, "report.baseline")
        tol = _tolerances(cfg)
        comparison = compare_metrics(
            metrics, baseline, tol, current_name="this run", baseline_name=str(cfg.report.baseline)
        )
        counts = comparison.counts()
        verdict = "REGRESSION" if comparison.regressed else "within tolerance"
        ctx.log(f"[report] vs {cfg.report.baseline}: {verdict} ({counts['fail']} failed, {counts['pass']} passed)")
    write_report(metrics, ctx.out, comparison)
    (ctx.out / "provenance.json").write_text(json.dumps(_sidecar(ctx), indent=2, sort_keys=True) + "\n")
    ctx.log(f"[report] {len(metrics['rows'])} row(s); report.html, summary.md, metrics.json written")


def _tolerances(cfg: Config):
    from pipeline.cli import read_yaml
    from pipeline.tolerances import default_tolerances, parse_tolerances

    if cfg.report.tolerances is None:
        return default_tolerances()
    path: Path = cfg.report.tolerances
    return parse_tolerances(read_yaml(path, "report.tolerances"), f"report.tolerances {str(path)!r}")


def _sidecar(ctx: StageContext) -> dict[str, Any]:
    """Wall-clock facts kept OUT of metrics.json: when it was generated and how long the stages took."""
    seconds: dict[str, float] = {}
    manifest = ctx.run_dir / "manifest.json"
    if manifest.is_file():
        try:
            stages = json.loads(manifest.read_text()).get("stages", {})
            seconds = {k: v["seconds"] for k, v in stages.items() if isinstance(v, dict) and "seconds" in v}
        except (OSError, ValueError):
            pass
    return {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": ctx.cfg.digest(),
        "stage_seconds": seconds,
    }


def _external(cfg: Config) -> list[Path]:
    return [p for p in (cfg.report.baseline, cfg.report.tolerances) if p is not None]


STAGES = [
    Stage(
        name="report",
        func=_report,
        version="1",
        # metrics.json records the whole resolved config (provenance), so every section is a parameter
        params=tuple(Config.model_fields),
        upstream=("evaluate", "bench", "quantize", *ARMS),
        tools=PACKAGES + ("jsonschema",),
        external=_external,
        description="metrics.json, report.html, summary.md (+ junit.xml vs report.baseline)",
        volatile=("provenance.json",),
    )
]
