"""``edgekd compare`` (the regression gate) and ``edgekd report`` (re-render a run's report).

Exit codes of ``compare``: 0 within tolerance, 1 on a regression, 2 on unusable input (missing file,
invalid JSON, schema mismatch, wrong schema_version, bad tolerances file) or an output that cannot be written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="regression gate: compare a metrics.json with a baseline (exit 1 on a regression)",
        description="Per row (model/runtime/precision[/recipe]) and metric: the delta and whether it is within "
        "tolerance. Accuracy and false-alarm metrics use absolute, direction-aware tolerances; latency is compared "
        "as the ratio to the run's reference variant, never as milliseconds across machines.",
    )
    p.add_argument("current", metavar="CURRENT", help="metrics.json of the run to check (or its run / report folder)")
    p.add_argument("baseline", metavar="BASELINE", help="metrics.json to compare against (or its folder)")
    p.add_argument("--tolerances", metavar="FILE", help="YAML/JSON overriding the shipped tolerances")
    p.add_argument("--md", metavar="OUT.md", help="write the Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--junit", metavar="OUT.xml", help="write JUnit XML, one test case per check")
    p.add_argument("--html", metavar="OUT.html", help="write the full HTML report of CURRENT with the gate")
    p.set_defaults(func=_compare)

    r = sub.add_parser("report", help="re-render report.html and summary.md from a run's metrics.json")
    r.add_argument(
        "--run", required=True, metavar="DIR", help="the run folder (runs/<name>), its report folder or a metrics.json"
    )
    r.add_argument("--out", metavar="DIR", help="where to write (default: the folder holding metrics.json)")
    r.add_argument("--baseline", metavar="FILE", help="also compare with this metrics.json (adds junit.xml)")
    r.add_argument("--tolerances", metavar="FILE", help="YAML/JSON overriding the shipped tolerances")
    r.set_defaults(func=_report)


def metrics_path(arg: str) -> Path:
    """A metrics.json path from a file, a report folder or a run folder (the first that exists)."""
    path = Path(arg)
    if path.is_dir():
        for candidate in (path / "metrics.json", path / "report" / "metrics.json"):
            if candidate.is_file():
                return candidate
        return path / "report" / "metrics.json" if (path / "manifest.json").is_file() else path / "metrics.json"
    return path


def load_tolerances(path: str | None):
    from pipeline.cli import read_yaml
    from pipeline.tolerances import default_tolerances, parse_tolerances

    if path is None:
        return default_tolerances()
    return parse_tolerances(read_yaml(Path(path), "tolerances file"), f"tolerances file {path!r}")


def _write(flag: str, path: str, text: str) -> None:
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as exc:
        raise write_error(flag, out, exc, "a writable file path (not a folder)") from exc


def write_error(flag: str, path: Path, exc: OSError, expected: str) -> InputError:
    """The :class:`InputError` (exit 2) for an output of ``flag`` that could not be written."""
    where = f": {exc.filename}" if exc.filename and str(exc.filename) != str(path) else ""
    return InputError(
        f"{flag} {path}: cannot write ({exc.strerror or exc}{where}); expected {expected}; "
        f"fix the path given to {flag} or its permissions"
    )


def _compare(args: argparse.Namespace) -> int:
    from pipeline.compare import compare_metrics
    from pipeline.report.metrics_file import load_metrics

    current_path, baseline_path = metrics_path(args.current), metrics_path(args.baseline)
    current = load_metrics(current_path, "current metrics file")
    baseline = load_metrics(baseline_path, "baseline metrics file")
    tol = load_tolerances(args.tolerances)
    comparison = compare_metrics(
        current, baseline, tol, current_name=str(current_path), baseline_name=str(baseline_path)
    )
    _outputs(args, current, comparison)
    _print(comparison)
    return 1 if comparison.regressed else 0


def _outputs(args: argparse.Namespace, current: dict, comparison) -> None:
    from pipeline.report.junit import to_junit
    from pipeline.report.summary import render_summary

    if args.md:
        _write("--md", args.md, render_summary(current, comparison))
    if args.junit:
        _write("--junit", args.junit, to_junit(comparison))
    if args.html:
        from pipeline.report.html import render_html

        _write("--html", args.html, render_html(current, comparison))


def _print(comparison) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    fails = comparison.failures
    if fails:
        table = Table(title="regressions", title_justify="left")
        table.add_column("variant", overflow="fold")
        table.add_column("metric")
        table.add_column("detail", overflow="fold")
        for c in fails[:40]:
            table.add_row(escape(c.variant), escape(c.metric), escape(c.message))
        console.print(table)
    for vid in comparison.new_rows:
        console.print(f"new row (not gated): {escape(vid)}")
    for note in comparison.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    c = comparison.counts()
    tail = f"{c['fail']} failed, {c['pass']} passed, {c['skip']} skipped, {c['new']} new row(s)"
    if comparison.regressed:
        console.print(f"[bold red]REGRESSION[/]: {tail}")
    else:
        console.print(f"[bold green]within tolerance[/]: {tail}")


def _report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report
    from pipeline.report.metrics_file import load_metrics

    path = metrics_path(args.run)
    metrics = load_metrics(path, "metrics file")
    comparison = None
    if args.baseline:
        from pipeline.compare import compare_metrics

        base_path = metrics_path(args.baseline)
        baseline = load_metrics(base_path, "baseline metrics file")
        comparison = compare_metrics(
            metrics, baseline, load_tolerances(args.tolerances), current_name=str(path), baseline_name=str(base_path)
        )
    out = Path(args.out) if args.out else path.parent
    try:
        written = write_report(metrics, out, comparison)
    except OSError as exc:
        flag = "--out" if args.out else "--run (report written next to metrics.json)"
        raise write_error(flag, out, exc, "a writable folder") from exc
    for kind, file in written.items():
        print(f"{kind}: {file}")
    return 0
