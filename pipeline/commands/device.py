"""``edgekd device bench --bundle DIR [--out DIR] [--runs N]``: the on-device benchmark of a deploy bundle.

Argument parsing and output only; the work is :func:`deploy.device_bench.run_device_bench` (no torch). The rows are
validated and written as ``metrics.json`` (the schema of :mod:`pipeline.report.metrics_file`), so that
``edgekd compare`` works on device results too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import help_without_action


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("device", help="on-device benchmark of a deploy bundle (Jetson; ONNX Runtime CPU elsewhere)")
    help_without_action(p)
    dsub = p.add_subparsers(dest="device_command", metavar="ACTION")
    b = dsub.add_parser(
        "bench",
        help="build TensorRT engines from a bundle, benchmark them and ONNX Runtime: accuracy, false alarms, "
        "latency, power and energy per frame; writes metrics.json",
    )
    b.add_argument("--bundle", type=Path, required=True, metavar="DIR", help="a folder made by `edgekd deploy bundle`")
    b.add_argument("--out", type=Path, default=Path("device_results"), metavar="DIR", help="results folder")
    b.add_argument("--runs", type=int, default=100, metavar="N", help="timed frames per variant (default 100)")
    b.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed frames first (default 10)")
    b.add_argument(
        "--min-seconds", type=float, default=2.0, help="shortest timed window per variant while power is sampled"
    )
    b.add_argument(
        "--runtimes", default="tensorrt,onnxruntime", help="comma-separated: tensorrt, onnxruntime, openvino"
    )
    b.add_argument("--power", default="auto", choices=["auto", "jtop", "tegrastats", "none"], help="power source")
    b.add_argument("--threads", type=int, default=None, help="CPU threads of the runtimes (default: theirs)")
    b.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT builder workspace (MiB)")
    b.add_argument(
        "--trtexec", type=Path, default=None, metavar="PATH",
        help="trtexec binary that also times each engine (default: PATH, then /usr/src/tensorrt/bin/trtexec)",
    )  # fmt: skip
    b.add_argument("--no-trtexec", action="store_true", help="time engines with CUDA events only")
    b.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from deploy.device_bench import DeviceBenchOptions, run_device_bench
    from pipeline.report.metrics_file import build_metrics, write_metrics

    err = Console(stderr=True, highlight=False)
    options = DeviceBenchOptions(
        runs=args.runs,
        warmup=args.warmup,
        min_seconds=args.min_seconds,
        runtimes=tuple(r.strip() for r in args.runtimes.split(",") if r.strip()),
        power=args.power,
        threads=args.threads,
        workspace_mb=args.workspace_mb,
        trtexec=args.trtexec,
        use_trtexec=not args.no_trtexec,
    )
    result = run_device_bench(
        args.bundle,
        args.out,
        options,
        log=lambda m: err.print(escape(m)),
        warn=lambda m: err.print(f"[bold yellow]warning:[/] {escape(m)}"),
    )
    out_file = args.out / "metrics.json"
    metrics = build_metrics(
        result.rows, result.tables, result.provenance, reference=result.reference, notes=result.notes,
        source=str(out_file),
    )  # fmt: skip
    write_metrics(metrics, out_file)
    _print_table(metrics["rows"], result.device.get("label", ""))
    print(f"wrote {out_file} and {args.out / 'device.json'}")
    return 0


def _print_table(rows: list[dict], device: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value, digits=3):
        return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))

    table = Table(title=f"device benchmark: {device}")
    for col in (
        "variant",
        "exec",
        "mAP50-95",
        "recall@op",
        "FPPI@op",
        "FA/h@bundle",
        "p50 ms",
        "p99 ms",
        "mJ/frame",
        "W",
    ):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        vid = "/".join([r["runtime"], r["precision"]] + ([r["recipe"]] if r.get("recipe") else []))
        table.add_row(
            vid, fmt(r.get("executed_precision")), fmt(r.get("map50_95")), fmt(r.get("recall_at_op")),
            fmt(r.get("fppi_at_op")), fmt(r.get("fa_per_hour_at_bundle_op"), 0), fmt(r.get("latency_p50_ms"), 2),
            fmt(r.get("latency_p99_ms"), 2), fmt(r.get("energy_mj_per_frame"), 1), fmt(r.get("power_w"), 2),
        )  # fmt: skip
    console = Console()
    Console(width=max(console.width, 140) if not console.is_terminal else None).print(table)
