"""Benchmark one or several model files: the JSON written by ``edgekd bench`` and the ``bench`` stage.

Each variant gets warm-up then timed runs of the whole frame (JPEG decode + letterbox,
inference, decode + NMS), p50/p90/p99/mean/std per step, throughput at batch 1 and at a
larger batch where the model accepts it, memory, file size, and its compute-bound floor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.hwfloor import MatmulRate, count_macs, floor_ms, measure_matmul
from deploy.latency import batch_throughput, decode_jpeg, file_size_mb, rss_mb, run_interleaved


@dataclass(frozen=True)
class Variant:
    """One thing to time: a model file on a backend."""

    id: str
    path: Path
    backend: str | None = None
    precision: str | None = None  # what the file is meant to be (fp32, fp16, int8)
    macs_from: Path | None = None  # the float ONNX to count MACs on (defaults to ``path`` if .onnx)
    meta: Mapping[str, Any] | None = None


def hardware_floor(threads: int, seconds: float = 2.0) -> dict[str, MatmulRate]:
    """Sustained int8 and fp32 matmul rates of this machine on ONNX Runtime."""
    return {p: measure_matmul(p, threads=threads, seconds=seconds) for p in ("int8", "fp32")}


def benchmark_variants(
    variants: list[Variant],
    jpeg: bytes,
    *,
    threads: int,
    runs: int,
    warmup: int,
    batch: int = 4,
    rates: dict[str, MatmulRate] | None = None,
    load: Callable[[Variant, int], Any] | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time every variant interleaved; return {variant id: result dict}."""
    from deploy.detector import Detector

    def default_load(v: Variant, n_threads: int) -> Any:
        return Detector(v.path, backend=v.backend, threads=n_threads)

    load = load or default_load
    detectors, memory = {}, {}
    for v in variants:
        before = rss_mb()["rss_mb"]
        detectors[v.id] = load(v, threads)
        memory[v.id] = round(rss_mb()["rss_mb"] - before, 1)
    samples = run_interleaved(detectors, jpeg, runs=runs, warmup=warmup, on_step=on_step)
    image = decode_jpeg(jpeg)
    results = {}
    for v in variants:
        det = detectors[v.id]
        summary = samples[v.id].summary()
        result: dict[str, Any] = {
            "id": v.id,
            "model_file": v.path.name,
            "backend": getattr(det, "backend_name", v.backend),
            "precision": v.precision,
            "executed_precision": getattr(det, "executed_precision", None),
            "imgsz": list(getattr(det, "imgsz", ())),
            "threads": threads,
            "runs": runs,
            "warmup": warmup,
            **summary,
            "throughput": _throughput(det, image, batch, summary, runs=max(3, runs // 5)),
            "size_mb": file_size_mb(v.path),
            "load_rss_mb": memory[v.id],
            **dict(v.meta or {}),
        }
        result["floor"] = _floor(v, summary["inference"]["p50_ms"], rates)
        results[v.id] = result
    for key, value in rss_mb().items():
        for r in results.values():
            r[f"process_{key}"] = value
    return results


def _throughput(det: Any, image: np.ndarray, batch: int, summary: dict, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"batch1_fps": round(1e3 / summary["inference"]["p50_ms"], 2), "batch": batch}
    try:
        out["batch_fps"] = round(batch_throughput(det, image, batch, runs=runs), 2)
    except Exception as exc:  # a static batch-1 model rejects a larger batch; record why
        out["batch_fps"] = None
        out["batch_note"] = f"batch {batch} not accepted by this model ({type(exc).__name__}); export with a dynamic batch"
    return out


def _floor(v: Variant, p50_ms: float, rates: dict[str, MatmulRate] | None) -> dict[str, Any] | None:
    source = v.macs_from or (v.path if v.path.suffix == ".onnx" else None)
    if rates is None or source is None:
        return None
    macs = count_macs(source)
    rate = rates["int8" if (v.precision or "").startswith("int8") else "fp32"]
    floor = floor_ms(macs, rate)
    return {
        "macs": macs,
        "gmacs": round(macs / 1e9, 3),
        "rate_precision": rate.precision,
        "rate_gmacs_per_s": round(rate.gmacs_per_s, 1),
        "floor_ms": round(floor, 3),
        "efficiency": round(floor / p50_ms, 4) if p50_ms > 0 else None,
    }


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
