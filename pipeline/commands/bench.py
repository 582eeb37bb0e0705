"""``edgekd bench``: latency of one or several model files, timed interleaved on one real frame.

edgekd bench --model student.onnx --model student_int8.onnx --threads 2 --runs 50 --out bench.json
edgekd bench --model best.pt --backend torch --imgsz 640 --trust-weights
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deploy.benchmark import Variant
from deploy.errors import InputError
from pipeline.config import BenchmarkCfg

# the config's defaults, one source of truth
_DEFAULTS = BenchmarkCfg.model_validate({}).model_dump(include={"runs", "warmup", "threads", "batch", "conf"})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency benchmark: p50/p90/p99 per step, throughput, memory, hardware floor",
        description="Time model files end to end on one JPEG frame (decode + letterbox, inference, decode + NMS), "
        "interleaved A B A B when several are given; report percentiles per step, throughput at batch 1 and at "
        "--batch, peak RSS, file size and each model's compute-bound floor on this machine.",
    )
    p.add_argument("--model", action="append", required=True, type=Path, metavar="FILE",
                   help="a model file (.onnx, .xml, .engine, or .pt with --backend torch); repeat to compare")  # fmt: skip
    p.add_argument("--backend", action="append", choices=_backends(), metavar="B",
                   help=f"one of {', '.join(_backends())}: once for every model, or once per --model "
                   "(default: from the file extension)")  # fmt: skip
    p.add_argument("--imgsz", type=int, help="input size for --backend torch (runtime models keep their export size)")
    p.add_argument("--batch", type=int, default=_DEFAULTS["batch"], help="the larger batch for throughput")
    p.add_argument("--threads", type=int, default=_DEFAULTS["threads"], help="runtime threads")
    p.add_argument("--runs", type=int, default=_DEFAULTS["runs"], help="timed runs per model")
    p.add_argument("--warmup", type=int, default=_DEFAULTS["warmup"], help="untimed runs per model first")
    p.add_argument("--conf", type=float, default=_DEFAULTS["conf"],
                   help="detection threshold while timing (a deployment operating point; NMS work depends on it)")  # fmt: skip
    p.add_argument(
        "--image", type=Path, metavar="FILE", help="the JPEG to time (default: a synthetic 1280x720 frame, q90)"
    )
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                   help="ask OpenVINO/TensorRT for this precision (default: the model's own; f32 hint on OpenVINO)")  # fmt: skip
    p.add_argument(
        "--trust-weights", action="store_true", help="allow a .pt whose checksum is not in pipeline/train/registry.json"
    )
    p.add_argument("--no-floor", action="store_true", help="skip the hardware floor measurement (about 4 s)")
    p.add_argument("--floor-seconds", type=float, default=2.0, help="seconds per matmul rate measurement")
    p.add_argument(
        "--out", type=Path, metavar="FILE", help="write the JSON here (default: stdout; the table to stderr)"
    )
    p.set_defaults(func=_bench)


def _backends() -> tuple[str, ...]:
    from pipeline.bench import BACKEND_CHOICES

    return BACKEND_CHOICES


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipeline.bench import floor_lines, load_image, make_loader, run_benchmark, table

    _check_numbers(args)
    variants = build_variants(args.model, args.backend, args.precision, args.conf)
    if args.out is not None and args.out.is_dir():
        raise InputError(f"--out {str(args.out)!r} is a folder; expected a .json file path")
    jpeg, info = load_image(args.image)
    console = Console(stderr=args.out is None, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a log file: keep the table's columns readable
    payload = run_benchmark(
        variants, jpeg, info, threads=args.threads, runs=args.runs, warmup=args.warmup, batch=args.batch,
        floor=not args.no_floor, floor_seconds=args.floor_seconds,
        load=make_loader(trust_weights=args.trust_weights, imgsz=args.imgsz),
    )  # fmt: skip
    console.print(table(payload))
    for line in floor_lines(payload) + payload["notes"]:
        console.print(line)
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        console.print(f"wrote {args.out}")
    return 0


def _check_numbers(args: argparse.Namespace) -> None:
    for name, low in (("runs", 1), ("warmup", 0), ("threads", 1), ("batch", 1)):
        value = getattr(args, name)
        if value < low:
            raise InputError(f"--{name} {value}: expected an integer >= {low}")
    if args.imgsz is not None and (args.imgsz < 32 or args.imgsz % 32):
        raise InputError(f"--imgsz {args.imgsz}: expected a positive multiple of 32 (e.g. 640)")
    if not 0.0 <= args.conf <= 1.0:
        raise InputError(f"--conf {args.conf}: expected a number in [0, 1]")
    if not args.floor_seconds > 0:
        raise InputError(f"--floor-seconds {args.floor_seconds}: expected a positive number of seconds")


def build_variants(
    models: list[Path], backends: list[str] | None, precision: str | None, conf: float = 0.25
) -> list[Variant]:
    """One Variant per --model: backend from --backend (one for all, or one each), id ``<stem>/<backend>``."""
    from deploy.backends import EXTENSIONS
    from pipeline.bench import check_backend_file, file_precision

    backends = backends or []
    if len(backends) not in (0, 1, len(models)):
        raise InputError(
            f"--backend given {len(backends)} times for {len(models)} --model(s); give it once for all, "
            f"or once per --model in the same order"
        )
    chosen: list[str | None] = [backends[0]] * len(models) if len(backends) == 1 else list(backends)
    chosen = chosen or [None] * len(models)
    variants: list[Variant] = []
    for path, backend in zip(models, chosen, strict=True):
        check_backend_file(path, backend)
        name = backend or EXTENSIONS[path.suffix.lower()]
        options: dict[str, object] = {"conf": conf}
        if precision and name in ("openvino", "tensorrt"):
            options["precision"] = precision
        vid = _unique_id(path, name, variants)
        variants.append(Variant(vid, path, backend=name, precision=file_precision(path), options=options))
    return variants


def _unique_id(path: Path, backend: str, taken: list[Variant]) -> str:
    ids = {v.id for v in taken}
    for candidate in (f"{path.stem}/{backend}", f"{path.parent.name}/{path.stem}/{backend}"):
        if candidate not in ids:
            return candidate
    n = 2
    while f"{path.stem}/{backend}#{n}" in ids:
        n += 1
    return f"{path.stem}/{backend}#{n}"
