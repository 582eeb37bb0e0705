"""``edgekd deploy bundle`` and ``edgekd deploy verify``, added to the ``deploy`` family of
:mod:`pipeline.commands.deploy` through :func:`add_subcommands`. Implementations: :mod:`deploy.bundle`,
:mod:`deploy.bundle_make` (no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_subcommands(dsub: argparse._SubParsersAction) -> None:
    """Register ``bundle`` and ``verify`` on the ``deploy`` family's subparsers."""
    b = dsub.add_parser(
        "bundle",
        help="gather a finished run's models, calibration set and a small evaluation set into a checksummed bundle",
        description="Copy RUN_DIR's FP32 ONNX, INT8 Q/DQ ONNX, TensorRT Q/DQ ONNX and OpenVINO IR of one model, its "
        "calibration manifest and N validation images with ground truth into DIR, with bundle.json (classes, input "
        "size, preprocessing, per-class thresholds, validated metrics, sha256 of every file) and SHA256SUMS.",
    )
    b.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run folder, e.g. runs/default")
    b.add_argument("--out", type=Path, required=True, metavar="DIR", help="the bundle folder to create")
    b.add_argument("--model", default="distill", help="which model of the run (default: distill)")
    b.add_argument("--images", type=int, default=32, metavar="N", help="validation images to bundle (default 32)")
    b.add_argument("--seed", type=int, default=0, help="seed of the image selection (default 0)")
    b.add_argument("--data", type=Path, metavar="DIR", help="dataset folder (default RUN_DIR/data)")
    b.add_argument("--recipe", action="append", dest="recipes", metavar="NAME", help="only these quantization recipes")
    b.add_argument("--recall-target", type=float, default=0.9, help="operating point recall (default 0.9)")
    b.add_argument("--fps", type=float, default=30.0, help="frame rate for false alarms per hour (default 30)")
    b.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for the reference detections")
    b.add_argument("--force", action="store_true", help="replace an existing bundle in DIR")
    b.set_defaults(func=_bundle)

    v = dsub.add_parser(
        "verify",
        help="check every checksum of a bundle and that its FP32 model reproduces the recorded detections",
    )
    v.add_argument("bundle", type=Path, metavar="DIR", help="a bundle folder made by `edgekd deploy bundle`")
    v.add_argument("--no-parity", action="store_true", help="checksums only (skip re-running the model)")
    v.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for the parity check")
    v.set_defaults(func=_verify)


def _bundle(args: argparse.Namespace) -> int:
    from deploy.bundle_make import BundleOptions, make_bundle

    options = BundleOptions(
        model=args.model,
        n_images=args.images,
        seed=args.seed,
        data=args.data,
        recipes=tuple(args.recipes) if args.recipes else None,
        recall_target=args.recall_target,
        fps=args.fps,
        threads=args.threads,
        force=args.force,
    )
    manifest = make_bundle(args.run_dir, args.out, options)
    arts = ", ".join(a["id"] for a in manifest["artifacts"])
    print(
        f"bundle {args.out}: {arts}; {manifest['eval']['images']} evaluation images; thresholds from {manifest['thresholds']['source']}"
    )
    for note in manifest.get("notes", []):
        print(f"note: {note}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from deploy.bundle import verify_bundle

    report = verify_bundle(args.bundle, parity=not args.no_parity, threads=args.threads, log=print)
    for rel in report.unlisted:
        print(f"note: {rel} is not listed in SHA256SUMS (added after bundling)")
    print(f"bundle {args.bundle}: OK")
    return 0
