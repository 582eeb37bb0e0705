"""Latency harness: warm-up, timed runs, percentiles, per-step breakdown, interleaving.

Times the whole frame, JPEG bytes to boxes, split into ``preprocess`` (JPEG decode +
letterbox), ``inference`` (the runtime call), ``postprocess`` (decode + NMS) and
``end_to_end``. Several variants are timed interleaved (A B A B ...) so that the
machine's drift (thermal, other load) hits all of them alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

STEPS = ("preprocess", "inference", "postprocess", "end_to_end")


class TimedDetector(Protocol):
    """What the harness needs from :class:`deploy.detector.Detector`."""

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]: ...

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]: ...

    def postprocess(self, outputs: dict[str, np.ndarray], metas: Any) -> list[Any]: ...


def summarize(samples_ms: np.ndarray) -> dict[str, float]:
    """Percentiles of (N,) latency samples in milliseconds. Empty input gives NaNs."""
    s = np.asarray(samples_ms, dtype=np.float64)
    if s.size == 0:
        return {k: float("nan") for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")} | {"n": 0}
    p50, p90, p99 = np.percentile(s, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(s.mean()),
        "std_ms": float(s.std(ddof=1)) if s.size > 1 else 0.0,
        "n": int(s.size),
    }


@dataclass
class Samples:
    """Per-step latency samples (milliseconds) of one variant."""

    steps: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in STEPS})

    def add(self, pre: float, inf: float, post: float) -> None:
        self.steps["preprocess"].append(pre)
        self.steps["inference"].append(inf)
        self.steps["postprocess"].append(post)
        self.steps["end_to_end"].append(pre + inf + post)

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: summarize(np.asarray(v)) for k, v in self.steps.items()}


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> BGR uint8 (H, W, 3); InputError when they do not decode (the Detector's own decoder)."""
    from deploy.preprocess import decode_jpeg as _decode

    return _decode(data)


def time_frame(
    det: TimedDetector, jpeg: bytes, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, float, float]:
    """One frame: (preprocess, inference, postprocess) in milliseconds."""
    t0 = clock()
    tensor, meta = det.preprocess(decode_jpeg(jpeg))
    t1 = clock()
    outputs = det.infer(tensor)
    t2 = clock()
    det.postprocess(outputs, [meta])
    t3 = clock()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def run_interleaved(
    variants: Mapping[str, TimedDetector],
    jpeg: bytes,
    *,
    runs: int,
    warmup: int,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Samples]:
    """Time every variant ``runs`` times, round-robin, after ``warmup`` untimed rounds.

    Round ``r`` starts at variant ``r mod n`` (A B C, B C A, C A B, ...): drift hits all variants alike, and no
    variant always runs right after the same neighbour (whose cache and memory footprint it would inherit).
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            time_frame(variants[name], jpeg)
    out = {name: Samples() for name in names}
    for r in range(runs):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            out[name].add(*time_frame(variants[name], jpeg))
            if on_step is not None:
                on_step()
    return out


def batch_throughput(det: TimedDetector, image: np.ndarray, batch: int, *, runs: int, warmup: int = 1) -> float:
    """Images per second of the inference call alone on a (batch, 3, H, W) tensor.

    A dynamic-batch model runs it as one batch; a model built for a fixed batch runs it in
    sequential chunks (see :func:`batch_mode`).
    """
    tensor, _ = det.preprocess(image)
    batched = np.repeat(tensor, batch, axis=0)
    for _ in range(warmup):
        det.infer(batched)
    t0 = time.perf_counter()
    for _ in range(runs):
        det.infer(batched)
    return batch * runs / (time.perf_counter() - t0)


def batch_mode(det: Any, batch: int) -> tuple[str, str | None]:
    """How ``det.infer`` runs ``batch`` images: ("batched" | "sequential" | "unknown", an explanation or None).

    "batched": one runtime call (dynamic batch, or a model built for exactly that batch);
    "sequential": the model's batch is fixed at another size, so the Detector runs chunks one after another.
    """
    backend = getattr(det, "backend", None)
    if backend is None or not hasattr(backend, "fixed_batch"):
        return "unknown", "the detector does not say whether its model takes a batch"
    fixed = backend.fixed_batch
    if fixed is None or fixed == batch:
        return "batched", None
    calls = -(-batch // fixed)
    return "sequential", (
        f"the model is built for batch {fixed}: {batch} images ran as {calls} sequential call(s); "
        f"export with a dynamic batch (export.dynamic_batch=true) for a real batch"
    )


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none): how busy the machine was."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def rss_mb() -> dict[str, float]:
    """Current and peak resident set size of this process, in MiB."""
    import resource

    import psutil

    current = psutil.Process(os.getpid()).memory_info().rss / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"rss_mb": round(current, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}


def file_size_mb(path: Path) -> float:
    """Size of a model file; an OpenVINO IR counts its .bin weights too."""
    path = Path(path)
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return round(size / 2**20, 3)
