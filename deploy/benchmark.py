"""Benchmark one or several model files: the JSON written by ``edgekd bench`` and the ``bench`` stage.

Each variant gets warm-up then timed runs of the whole frame (JPEG decode + letterbox,
inference, decode + NMS), p50/p90/p99/mean/std per step, throughput at batch 1 and at a
larger batch (recording whether that batch ran as one call or as sequential chunks), memory,
file size, and its compute-bound floor. Several variants are timed interleaved (A B A B ...).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import InputError
from deploy.hwfloor import MatmulRate, count_macs, floor_ms, measure_matmul
from deploy.latency import (
    batch_mode,
    batch_throughput,
    decode_jpeg,
    file_size_mb,
    rss_mb,
    run_interleaved,
)
from deploy.provenance import usable_cores

INT8_EXECUTED = ("int8", "mixed")  # executed precisions timed against the int8 matmul rate
SAMPLE_DECIMALS = 4


@dataclass(frozen=True)
class Variant:
    """One thing to time: a model file on a backend.

    Attributes:
        id: unique key of the result (e.g. ``student/onnxruntime/int8/head_float``).
        path: the model file (.onnx, .xml, .engine, .pt with a loader that knows it).
        backend: registry name; None picks it from the extension.
        precision: what the file is meant to be (fp32, fp16, int8); the result also records what ran.
        macs_from: the float ONNX whose MACs define the floor (defaults to ``path`` if it is an .onnx).
        meta: copied into the result (model, runtime, precision, recipe, ...); wins over measured keys.
        options: extra keyword arguments for the loader (e.g. ``precision="bf16"`` for OpenVINO).
    """

    id: str
    path: Path
    backend: str | None = None
    precision: str | None = None
    macs_from: Path | None = None
    meta: Mapping[str, Any] | None = None
    options: Mapping[str, Any] | None = None


Loader = Callable[[Variant, int], Any]


def hardware_floor(threads: int, seconds: float = 2.0) -> dict[str, MatmulRate]:
    """Sustained int8 and fp32 matmul rates of this machine on ONNX Runtime (measure once per run)."""
    return {p: measure_matmul(p, threads=threads, seconds=seconds) for p in ("int8", "fp32")}


def rates_json(rates: Mapping[str, MatmulRate] | None) -> dict[str, Any] | None:
    """The ``floor`` entry of bench.json: {"int8": {"gmacs_per_s", "size", "threads"}, "fp32": {...}}."""
    if rates is None:
        return None
    return {
        k: {
            "gmacs_per_s": round(r.gmacs_per_s, 2),
            "mean_gmacs_per_s": round(r.mean_gmacs_per_s, 2) if r.mean_gmacs_per_s is not None else None,
            "size": r.size,
            "threads": r.threads,
            "op": _rate_op(k),
        }
        for k, r in rates.items()
    }


def _rate_op(precision: str) -> str:
    return "onnxruntime MatMulInteger u8 x s8" if precision == "int8" else "onnxruntime MatMul fp32"


def default_loader(v: Variant, threads: int) -> Any:
    """A :class:`deploy.detector.Detector` for ``v`` on its backend.

    ONNX Runtime sessions run without intra-op spinning: spinning threads keep cores busy after each
    run and, interleaved on a few cores, slow down whichever variant runs next (measured here: an INT8
    session interleaved with an FP32 one took 1.7x its time alone with spinning, 1.0x without).
    """
    from deploy.backends import backend_for
    from deploy.detector import Detector

    options = dict(v.options or {})
    if backend_for(v.path, v.backend) == "onnxruntime":
        options.setdefault("allow_spinning", False)
    return Detector(v.path, backend=v.backend, threads=threads, **options)


def check_settings(variants: list[Variant], *, threads: int, runs: int, warmup: int, batch: int) -> None:
    """InputError naming the first bad setting (counts, duplicate ids, empty list)."""
    if not variants:
        raise InputError("benchmark: no model to time; give at least one model file")
    for name, value, low in (("threads", threads, 1), ("runs", runs, 1), ("warmup", warmup, 0), ("batch", batch, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InputError(f"benchmark: {name}={value!r}, expected an integer >= {low}")
    ids = [v.id for v in variants]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"benchmark: variant ids {dupes} appear more than once; each model/backend pair once")


def benchmark_variants(
    variants: list[Variant],
    jpeg: bytes,
    *,
    threads: int,
    runs: int,
    warmup: int,
    batch: int = 4,
    rates: Mapping[str, MatmulRate] | None = None,
    load: Loader | None = None,
    on_step: Callable[[], None] | None = None,
    keep_samples: bool = True,
) -> dict[str, dict[str, Any]]:
    """Time every variant interleaved (A B A B ...); return {variant id: result dict}.

    Where a variant sits in the load order shifts its timing by a few percent (measured here: two OpenVINO
    INT8 models with the same compiled graph, the later-loaded one 2 % faster, either way round), so with
    several variants half of the runs happen with them loaded in the given order and half after reloading them
    in reverse order.

    Args:
        variants: what to time (ids unique).
        jpeg: the encoded frame decoded and letterboxed in every timed ``preprocess`` step.
        threads: runtime threads for every variant (and the matmul rates).
        runs, warmup: timed and untimed rounds; each round times every variant once.
        batch: the larger batch for throughput.
        rates: :func:`hardware_floor` rates; None: no floor.
        load: (variant, threads) -> a detector with preprocess/infer/postprocess (default :func:`default_loader`).
        keep_samples: also store the raw per-run milliseconds of ``inference`` and ``end_to_end``.
    """
    check_settings(variants, threads=threads, runs=runs, warmup=warmup, batch=batch)
    image = decode_jpeg(jpeg)  # fail on a bad image before loading any model
    load = load or default_loader
    detectors, memory = _load_all(variants, threads, load)
    second = runs // 2 if len(variants) > 1 else 0
    samples = run_interleaved(detectors, jpeg, runs=runs - second, warmup=warmup, on_step=on_step)
    if second:  # counterbalance: the other half of the runs with the variants loaded in reverse order
        detectors.clear()
        gc.collect()
        reloaded, _ = _load_all(variants[::-1], threads, load)
        more = run_interleaved(reloaded, jpeg, runs=second, warmup=warmup, on_step=on_step)
        for vid, extra in more.items():
            for step, values in extra.steps.items():
                samples[vid].steps[step].extend(values)
        detectors = {v.id: reloaded[v.id] for v in variants}
    results = {}
    for v in variants:
        det = detectors[v.id]
        summary = samples[v.id].summary()
        result = _base_result(v, det, threads, runs, warmup)
        result.update(summary)
        result["pre_post_share"] = pre_post_share(samples[v.id].steps)
        result["throughput"] = _throughput(det, image, batch, summary, runs=max(3, runs // 5))
        result["size_mb"] = file_size_mb(v.path) if v.path.is_file() else None
        result["load_rss_mb"] = memory[v.id]
        result["floor"] = _floor(v, result["executed_precision"], summary["inference"]["p50_ms"], rates)
        if keep_samples:
            steps = samples[v.id].steps
            result["samples_ms"] = {
                k: [round(x, SAMPLE_DECIMALS) for x in steps[k]] for k in ("inference", "end_to_end")
            }
        result.update(dict(v.meta or {}))
        results[v.id] = result
    process = rss_mb()
    for r in results.values():
        r.update({f"process_{k}": value for k, value in process.items()})
    return results


def _load_all(variants: list[Variant], threads: int, load: Loader) -> tuple[dict[str, Any], dict[str, float]]:
    """Load every variant in order: ({id: detector}, {id: RSS growth in MiB while loading it})."""
    detectors, memory = {}, {}
    for v in variants:
        before = rss_mb()["rss_mb"]
        detectors[v.id] = load(v, threads)
        memory[v.id] = round(rss_mb()["rss_mb"] - before, 1)
    return detectors, memory


def _base_result(v: Variant, det: Any, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    backend = getattr(det, "backend_name", None) or v.backend
    executed = getattr(det, "executed_precision", None)
    detail = getattr(getattr(det, "backend", None), "precision_detail", None)
    return {
        "id": v.id,
        "model_file": v.path.name,
        "backend": backend,
        "runtime": backend,
        "precision": v.precision or executed,
        "executed_precision": executed,
        "precision_detail": dict(detail) if isinstance(detail, Mapping) else None,
        "imgsz": [int(x) for x in getattr(det, "imgsz", ())],
        "conf": getattr(det, "conf", None),
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
    }


def pre_post_share(steps: Mapping[str, list[float]]) -> float | None:
    """(preprocess + postprocess) time as a share of end-to-end, from the means (they add up exactly)."""
    total = float(np.sum(steps["end_to_end"])) if steps["end_to_end"] else 0.0
    if total <= 0:
        return None
    return round((float(np.sum(steps["preprocess"])) + float(np.sum(steps["postprocess"]))) / total, 4)


def _throughput(det: Any, image: np.ndarray, batch: int, summary: Mapping[str, Any], runs: int) -> dict[str, Any]:
    def fps(step: str) -> float | None:
        p50 = summary[step]["p50_ms"]
        return round(1e3 / p50, 2) if p50 and p50 > 0 else None

    mode, note = batch_mode(det, batch)
    out: dict[str, Any] = {
        "batch1_fps": fps("inference"),
        "batch1_end_to_end_fps": fps("end_to_end"),
        "batch": batch,
        "batch_mode": mode,
    }
    try:
        out["batch_fps"] = round(batch_throughput(det, image, batch, runs=runs), 2)
    except Exception as exc:  # a runtime refusing this batch must not lose the other results; record why
        out["batch_fps"] = None
        note = f"batch {batch} failed on this model ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    if note:
        out["batch_note"] = note
    return out


def rate_for(executed: str | None, precision: str | None) -> str:
    """Which matmul rate bounds a variant: int8 when it executes (partly) int8, else fp32."""
    value = (executed if executed not in (None, "unknown") else precision) or ""
    return "int8" if value.startswith(INT8_EXECUTED) else "fp32"


def _floor(
    v: Variant, executed: str | None, p50_ms: float, rates: Mapping[str, MatmulRate] | None
) -> dict[str, Any] | None:
    source = v.macs_from or (v.path if v.path.suffix == ".onnx" else None)
    if rates is None or source is None:
        return None
    macs = count_macs(source)
    rate = rates[rate_for(executed, v.precision)]
    floor = floor_ms(macs, rate)
    return {
        "macs": macs,
        "gmacs": round(macs / 1e9, 3),
        "macs_from": Path(source).name,
        "rate_precision": rate.precision,
        "rate_gmacs_per_s": round(rate.gmacs_per_s, 1),
        "floor_ms": round(floor, 3),
        "efficiency": round(floor / p50_ms, 4) if p50_ms and p50_ms > 0 else None,
        "ratio_to_floor": round(p50_ms / floor, 3) if floor > 0 else None,
    }


def default_threads() -> int:
    """Default thread count: the cores this process may run on (:func:`deploy.provenance.usable_cores`)."""
    return usable_cores()
