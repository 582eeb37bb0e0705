"""Stage ``bench``: every exported, quantized and peer model of the run timed interleaved on one frame.

Reads the run's artifacts through :func:`pipeline.artifacts.list_artifacts_in` (the same list, ids and sha256
checks as the evaluate stage): each model's FP32 ONNX, timed on ONNX Runtime and on OpenVINO (which reads the ONNX
directly, f32 hint) unless ``quantize`` holds an OpenVINO FP32/FP16 IR; the quantize stage's artifacts (TensorRT
ones only where TensorRT is installed and the artifact is an engine); ultralytics' exports from ``peers``.

Writes ``bench.json`` (see :mod:`pipeline.bench`) whose variant ids are
``<model>/<runtime>/<precision>/<recipe>``, recipe one of float | head_float (edgekd INT8) | naive | fallback | ultralytics (the names of
:mod:`pipeline.artifacts`), and whose
``reference`` is ``student/onnxruntime/fp32/float`` when the run has it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from deploy.errors import StageError
from pipeline.artifacts import Artifact, list_artifacts_in
from pipeline.config import Config
from pipeline.runner import Stage, StageContext

REFERENCE = "student/onnxruntime/fp32/float"
RUNTIME_FILES = {"onnxruntime": (".onnx",), "openvino": (".xml", ".onnx"), "tensorrt": (".engine", ".plan")}


def collect(inputs: Mapping[str, Path]) -> tuple[list[Artifact], list[str]]:
    """Everything to time in the run (:func:`pipeline.artifacts.list_artifacts_in`), plus notes on what was left
    out and why. Each model's FP32 ONNX is also timed on OpenVINO (which reads it directly, f32 hint) unless the
    quantize stage made an OpenVINO FP32 IR of it."""
    from deploy.backends import is_available

    if "export" not in inputs:
        return [], []
    if not (inputs["export"] / "export.json").is_file():
        raise StageError(f"bench: no model file found in {inputs['export']} (no export.json); rerun export")
    arts = list_artifacts_in(inputs, include_tensorrt=True)
    has_ir = {(a.model, a.precision) for a in arts if a.runtime == "openvino" and a.recipe == "float"}
    openvino = [
        replace(a, runtime="openvino")
        for a in arts
        if a.rel.startswith("export/") and (a.model, a.precision) not in has_ir
    ]
    exported = [a for a in arts if a.rel.startswith("export/")]
    ordered = exported + openvino + [a for a in arts if not a.rel.startswith("export/")]
    kept, notes, seen = [], [], set()
    for a in ordered:
        why = _skip_reason(a, is_available)
        if why or a.id in seen:
            notes.append(f"{a.id} ({a.rel}): {why or 'listed twice; timed once'}")
            continue
        seen.add(a.id)
        kept.append(a)
    return kept, notes


def _skip_reason(a: Artifact, is_available: Any) -> str | None:
    if a.runtime not in RUNTIME_FILES:
        return f"unknown runtime {a.runtime!r}; not timed"
    if not is_available(a.runtime):
        return f"{a.runtime} is not installed on this machine; not timed (time it on the target device)"
    if a.path.suffix.lower() not in RUNTIME_FILES[a.runtime]:
        return (
            f"a {a.path.suffix} file for {a.runtime} needs an engine built on the device "
            f"(`edgekd deploy build-engine`, `edgekd device bench`); not timed here"
        )
    return None


def to_variants(arts: list[Artifact], conf: float) -> list[Any]:
    """Variants for the harness; each model's FP32 export is the MAC source of all its variants."""
    from deploy.benchmark import Variant

    variants = []
    for a in arts:
        macs = a.float_onnx
        meta = {"model": a.model, "runtime": a.runtime, "precision": a.precision, "recipe": a.recipe, "artifact": a.rel}
        variants.append(Variant(a.id, a.path, backend=a.runtime, precision=a.precision, macs_from=macs, meta=meta,
                                options={"conf": conf}))  # fmt: skip
    return variants


def choose_reference(ids: list[str]) -> str | None:
    if REFERENCE in ids:
        return REFERENCE
    return next((i for i in ids if i.endswith("/onnxruntime/fp32/float")), None)


def _bench(ctx: StageContext) -> None:
    from pipeline.bench import BENCH_SCHEMA, load_image, run_benchmark

    cfg = ctx.cfg.benchmark
    arts, notes = collect(ctx.inputs)
    if not arts and "export" in ctx.inputs:
        raise StageError(f"bench: no model file found in {ctx.inputs['export']} (export.json or *.onnx); rerun export")
    if not arts:
        payload: dict[str, Any] = {"schema": BENCH_SCHEMA, "floor": None, "reference": None, "variants": {},
                                   "notes": [*notes, "no export stage in this run: nothing to time"]}  # fmt: skip
    else:
        variants = to_variants(arts, cfg.conf)
        jpeg, info = load_image(cfg.image, seed=ctx.cfg.run.seed)
        ctx.log(f"[bench] {len(variants)} variant(s) x {cfg.runs} runs, interleaved, {cfg.threads} thread(s)")
        payload = run_benchmark(
            variants, jpeg, info, threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup, batch=cfg.batch,
            reference=choose_reference([v.id for v in variants]), notes=notes,
        )  # fmt: skip
    (ctx.out / "bench.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    for note in payload["notes"]:
        ctx.log(f"[bench] note: {note}")


def _external(cfg: Config) -> list[Path]:
    return [cfg.benchmark.image] if cfg.benchmark.image is not None else []


STAGES = [
    Stage(
        "bench",
        _bench,
        version="2",
        params=(
            "benchmark.runs",
            "benchmark.warmup",
            "benchmark.threads",
            "benchmark.batch",
            "benchmark.conf",
            "benchmark.image",
            "run.seed",
        ),  # fmt: skip
        upstream=("export", "quantize", "peers"),
        tools=("onnxruntime", "openvino", "tensorrt", "opencv-python-headless", "numpy"),
        external=_external,
        description="latency p50/p90/p99 per step, throughput, hardware floor, peers interleaved",
    )
]
