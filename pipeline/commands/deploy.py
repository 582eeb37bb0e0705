"""``edgekd deploy``: deployment commands. This module creates the family and ``build-engine``.

Other subcommands (``bundle``, ``verify``) hook into the family's subparsers returned by
:func:`deploy_subparsers`. The implementation lives on the deploy side (:mod:`deploy.trt_build`), imported
only when the command runs, so ``edgekd --help`` never imports TensorRT.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import help_without_action


def deploy_subparsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Create ``edgekd deploy`` and return its subparsers, for every deploy subcommand to register on."""
    parser = sub.add_parser("deploy", help="TensorRT engines, deploy bundles and their checksums")
    help_without_action(parser)
    return parser.add_subparsers(dest="deploy_command", metavar="ACTION")


def add_build_engine(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``edgekd deploy build-engine``."""
    p = dsub.add_parser(
        "build-engine",
        help="build a TensorRT engine (FP16, or INT8 from a Q/DQ ONNX) on this device",
        description="Build a serialized TensorRT engine from an ONNX model with the TensorRT 10 Python API. --int8 "
        "takes the Q/DQ ONNX of the quantize stage (quantize/<model>/tensorrt_head_float.onnx: explicit "
        "quantization, no calibrator); --fp16 takes the FP32 export. Writes <out>.edgekd.json beside the engine "
        "(class names, input size, preprocessing) for `edgekd eval` / `edgekd bench`.",
    )
    p.add_argument("--onnx", type=Path, required=True, metavar="F", help="the ONNX model")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="FP16 engine (default)")
    mode.add_argument("--int8", dest="precision", action="store_const", const="int8", help="INT8 engine from Q/DQ")
    p.add_argument(
        "--out", type=Path, metavar="F", help="engine file (default: the ONNX path with .<precision>.engine)"
    )
    p.add_argument("--timing-cache", type=Path, metavar="F", help="timing cache file, read if present, then updated")
    p.add_argument("--workspace-mb", type=int, default=1024, metavar="N", help="builder workspace limit (default 1024)")
    p.add_argument("--max-batch", type=int, default=1, metavar="N", help="largest batch for dynamic-batch models")
    p.add_argument("--calib-cache", type=Path, metavar="F", help="TensorRT < 10 implicit INT8 only: calibration cache")
    p.set_defaults(func=_build_engine, precision="fp16")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dsub = deploy_subparsers(sub)
    add_build_engine(dsub)
    from pipeline.commands.deploy_bundle import add_subcommands as add_bundle_verify

    add_bundle_verify(dsub)  # `edgekd deploy bundle` and `edgekd deploy verify`


def _build_engine(args: argparse.Namespace) -> int:
    from rich.console import Console

    from deploy.errors import InputError
    from deploy.trt_build import build_engine

    onnx = Path(args.onnx)
    if not onnx.is_file():
        raise InputError(
            f"--onnx {str(onnx)!r} does not exist; expected an ONNX model (e.g. runs/default/export/distill.onnx)"
        )
    if args.workspace_mb < 1 or args.max_batch < 1:
        raise InputError(
            f"--workspace-mb {args.workspace_mb} / --max-batch {args.max_batch}: expected positive integers"
        )
    out = args.out or onnx.with_suffix(f".{args.precision}.engine")
    info = build_engine(
        onnx,
        out,
        precision=args.precision,
        timing_cache=args.timing_cache,
        workspace_mb=args.workspace_mb,
        max_batch=args.max_batch,
        calibration_cache=args.calib_cache,
    )
    Console(highlight=False).print(
        f"[bold green]engine[/] {info.path} ({info.precision.value}, quantization {info.quantization}, "
        f"TensorRT {info.tensorrt}, {info.seconds:.1f} s)"
    )
    return 0
