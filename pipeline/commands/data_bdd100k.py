"""``edgekd data bdd100k``: BDD100K -> YOLO labels + data.yaml + COCO json (train and val).

:func:`register_bdd100k` adds the subcommand to the ``edgekd data`` subparsers (called from
``pipeline/commands/data.py``). The implementation is imported lazily.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from pipeline.data.bdd100k import ConversionReport

MAX_PROBLEMS_SHOWN = 20


def register_bdd100k(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bdd100k",
        help="convert BDD100K (per-image label folder or det_20 list) to the edgekd dataset layout",
        description=(
            "Convert BDD100K frames and labels into YOLO labels, data.yaml and COCO json (train and val). "
            "Problems (malformed labels, missing or corrupt images) are listed in OUT/conversion_report.json "
            "and conversion goes on, unless --strict."
        ),
    )
    p.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder of BDD100K .jpg frames")
    p.add_argument("--labels", required=True, type=Path, metavar="PATH",
                   help="folder of per-image label .json files, or a det_20 list .json")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder to create")
    p.add_argument("--classes", choices=["vru", "all"], default="vru",
                   help="vru: pedestrian, rider, bicycle, motorcycle; all: the ten det_20 classes (default vru)")  # fmt: skip
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F", help="share of images in val (0.2)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="split seed (0)")
    p.add_argument("--strict", action="store_true", help="stop at the first problem (exit 2), writing nothing")
    p.set_defaults(func=_bdd100k)
    return p


def _bdd100k(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipeline.data.bdd100k import convert_bdd100k

    console = Console(highlight=False)
    report = convert_bdd100k(
        args.images, args.labels, args.out,
        classes=args.classes, val_fraction=args.val_fraction, seed=args.seed, strict=args.strict,
        log=lambda line: console.print(line, markup=False, soft_wrap=True),
    )  # fmt: skip
    print_summary(report, console)
    return 0


def print_summary(report: ConversionReport, console: Console | None = None) -> None:
    """Images per split, boxes and ignore regions per class, zero-area drops and problems, as rich tables."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(highlight=False)
    table = Table(title=f"BDD100K -> {escape(str(report.out))} ({report.preset})", title_justify="left")
    for col in ("class", "train boxes", "val boxes", "ignore regions", "zero-area dropped"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name in report.classes:
        ignore = sum(report.ignore_regions[s][name] for s in report.ignore_regions)
        table.add_row(name, str(report.boxes["train"][name]), str(report.boxes["val"][name]), str(ignore),
                      str(report.zero_area[name]))  # fmt: skip
    console.print(table)
    dropped = ", ".join(f"{k} {v}" for k, v in report.dropped_categories.items()) or "none"
    console.print(
        f"images: train {report.images['train']}, val {report.images['val']} ({report.image_mode}); "
        f"dropped categories: {escape(dropped)}; objects without box2d skipped: {report.skipped_no_box}",
        soft_wrap=True,
    )
    if not report.problems:
        console.print("[green]no problems[/]")
        return
    console.print(f"[bold yellow]{len(report.problems)} problem(s):[/]")
    for p in report.problems[:MAX_PROBLEMS_SHOWN]:
        console.print(f"  [yellow]{p.kind.value}[/] {escape(p.file)}: {escape(p.reason)}", soft_wrap=True)
    more = len(report.problems) - MAX_PROBLEMS_SHOWN
    tail = f"{more} more; " if more > 0 else ""
    console.print(
        f"[yellow]{tail}all listed in {escape(str(report.out / 'conversion_report.json'))}[/]", soft_wrap=True
    )
