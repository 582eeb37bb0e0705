"""``edgekd data synth | calib | bdd100k``: build datasets and calibration sets (implementations import lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import help_without_action


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate or convert datasets and calibration sets")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    help_without_action(p)

    s = data_sub.add_parser(
        "synth",
        help="generate procedural road scenes (pedestrian, cyclist, car + hard negatives), no downloads",
        description="Generate synthetic dash-camera frames in the edgekd dataset layout (data.yaml, YOLO labels, "
        "COCO json with attributes and ignore regions, distractor boxes). The same seed gives identical files.",
    )
    s.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder to create")
    s.add_argument("--train", type=int, default=800, metavar="N", help="training frames (800)")
    s.add_argument("--val", type=int, default=200, metavar="M", help="validation frames (200)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    s.add_argument("--size", default="640x384", metavar="WxH", help="frame size in pixels (640x384)")
    s.add_argument(
        "--reach", type=float, default=1.0, metavar="R",
        help="depth range of road users, in (0, 1] (1: out to 70 m; 0.3: within ~21 m, every object large)",
    )  # fmt: skip
    s.set_defaults(func=_synth)

    c = data_sub.add_parser(
        "calib",
        help="pick a reproducible, stratified calibration set of training images",
        description="Write a calibration manifest: a stratified sample (time of day x weather x rarest class) of "
        "the training images with their sha256, for INT8 quantization.",
    )
    c.add_argument("--data", required=True, type=Path, metavar="YAML", help="the dataset's data.yaml")
    c.add_argument("--n", type=int, default=300, metavar="N", help="images to pick (300)")
    c.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    c.add_argument(
        "--out", required=True, type=Path, metavar="JSON", help="manifest to write, e.g. calibration_data/x.json"
    )
    c.set_defaults(func=_calib)

    try:
        from pipeline.commands.data_bdd100k import register_bdd100k
    except ImportError:  # pragma: no cover - the BDD100K converter ships in the same package
        return
    register_bdd100k(data_sub)


def _synth(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pipeline.data.synth_writer import generate_dataset, parse_size

    width, height = parse_size(args.size)
    console = Console(stderr=True, highlight=False)
    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("frames", total=max(1, args.train) + max(1, args.val))
        info = generate_dataset(
            args.out, train=args.train, val=args.val, seed=args.seed, width=width, height=height, reach=args.reach,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    out = Console(highlight=False)
    for split, stats in info["splits"].items():
        boxes = ", ".join(f"{k} {v}" for k, v in stats["boxes"].items())
        kinds = ", ".join(f"{k} {v}" for k, v in stats["distractors"].items())
        out.print(
            f"{split}: {stats['images']} images; boxes: {boxes}; distractors: {kinds}", markup=False, soft_wrap=True
        )
    out.print(f"wrote {args.out} (seed {args.seed}, {width}x{height}, reach {args.reach})", markup=False)
    return 0


def _calib(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from deploy.errors import InputError
    from pipeline.data.calib import build_manifest, write_manifest

    if args.out.is_dir():
        raise InputError(
            f"--out {str(args.out)!r} is a folder; expected a .json file path, e.g. calibration_data/x.json"
        )
    manifest, warnings = build_manifest(
        args.data, n=args.n, seed=args.seed, manifest_dir=args.out.parent, data_label=str(args.data)
    )
    err = Console(stderr=True, highlight=False)
    for w in warnings:
        err.print(f"[bold yellow]warning:[/] {escape(w)}", soft_wrap=True)
    write_manifest(manifest, args.out)
    strata = sum(1 for s in manifest["strata"].values() if s["selected"])
    Console(highlight=False).print(
        f"wrote {args.out}: {manifest['n']} image(s) from {strata} of {len(manifest['strata'])} strata", markup=False
    )
    return 0
