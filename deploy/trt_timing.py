"""TensorRT engine timing on the device: CUDA events around the engine alone, and NVIDIA's ``trtexec``.

The whole-frame harness (:mod:`deploy.latency`) times JPEG bytes to boxes with the host clock, which on a
Jetson includes the host-device copies and Python. Two numbers isolate the engine itself:

- :func:`time_gpu_compute`: ``cudaEventRecord`` before and after ``execute_async_v3`` on the backend's stream,
  the input already on the device, so the result is the GPU compute time of one inference, like trtexec's
  "GPU Compute Time";
- :func:`run_trtexec`: NVIDIA's own benchmark (``trtexec --loadEngine``) when it is installed (JetPack puts it
  in ``/usr/src/tensorrt/bin``), its performance summary parsed by :func:`parse_trtexec_summary`.

Both need a Jetson (or any CUDA GPU with TensorRT 10); everything else here is plain Python, tested on
recorded trtexec logs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import BackendUnavailableError, EdgeKDError, InputError

#: Where JetPack and the TensorRT tarballs put trtexec when it is not on PATH.
TRTEXEC_PLACES = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
#: trtexec summary lines -> our keys.
SUMMARY_KEYS = {
    "Latency": "latency",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "GPU Compute Time": "gpu_compute",
    "D2H Latency": "d2h",
}
_STAT_NAMES = {"min": "min_ms", "max": "max_ms", "mean": "mean_ms", "median": "p50_ms"}
_LINE = re.compile(r"\]\s*(?P<key>[A-Za-z0-9 ]+?):\s*(?P<body>(?:min|max|mean|median).*)$")
_STAT = re.compile(r"(?P<name>min|max|mean|median|percentile\((?P<pct>[\d.]+)%\))\s*=?\s*(?P<value>[-+\d.eE]+)\s*ms")
_THROUGHPUT = re.compile(r"Throughput:\s*(?P<value>[\d.eE+-]+)\s*qps")
_WALLTIME = re.compile(r"Total Host Walltime:\s*(?P<value>[\d.eE+-]+)\s*s")
_VERSION = re.compile(r"TensorRT v(?P<v>\d+)")


def time_gpu_compute(backend: Any, tensor: np.ndarray, runs: int, warmup: int = 10) -> list[float]:
    """GPU time (ms) of ``runs`` inferences of a :class:`deploy.backends.tensorrt.TensorRtBackend`.

    ``tensor``: one preprocessed input, shape ``(N, 3, H, W)``; ``warmup`` untimed runs first. The backend's
    :meth:`~deploy.backends.tensorrt.TensorRtBackend.time_gpu` records the CUDA events on its own stream.
    """
    if runs < 1:
        raise InputError(f"GPU timing needs at least one run, got runs={runs}")
    return list(backend.time_gpu(tensor, runs, warmup))


def find_trtexec(explicit: Path | None = None) -> Path | None:
    """``explicit`` when given (it must exist), else ``trtexec`` on PATH, else JetPack's place; None if absent."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise InputError(f"--trtexec: {str(explicit)!r} does not exist; give the path of the trtexec binary")
        return Path(explicit)
    found = shutil.which("trtexec")
    if found:
        return Path(found)
    return next((Path(p) for p in TRTEXEC_PLACES if Path(p).is_file()), None)


def trtexec_command(
    trtexec: Path, engine: Path, *, warmup_ms: int = 500, iterations: int = 100, duration_s: int = 3,
    spin_wait: bool = True,
) -> list[str]:  # fmt: skip
    """The trtexec command line that times ``engine`` (a plain serialized engine, no metadata header)."""
    cmd = [
        str(trtexec), f"--loadEngine={engine}", f"--warmUp={int(warmup_ms)}", f"--iterations={int(iterations)}",
        f"--duration={int(duration_s)}",
    ]  # fmt: skip
    if spin_wait:
        cmd.append("--useSpinWait")
    return cmd


def parse_trtexec_summary(text: str) -> dict[str, Any]:
    """trtexec's "Performance summary" -> ``{"throughput_qps", "walltime_s", "tensorrt_version", <step>: stats}``.

    ``<step>`` is one of latency, enqueue, h2d, gpu_compute, d2h, each ``{"min_ms", "max_ms", "mean_ms",
    "p50_ms", "p90_ms", "p95_ms", "p99_ms"}`` (the percentiles trtexec printed). Raises :class:`EdgeKDError`
    when the text holds no "GPU Compute Time" line (trtexec failed or printed something else).
    """
    out: dict[str, Any] = {"throughput_qps": None, "walltime_s": None, "tensorrt_version": None}
    for line in text.splitlines():
        m = _LINE.search(line) or _LINE.search("]" + line)
        key = SUMMARY_KEYS.get(m.group("key").strip()) if m else None
        if m and key:
            stats = {}
            for s in _STAT.finditer(m.group("body")):
                pct = s.group("pct")
                name = f"p{float(pct):g}_ms" if pct else _STAT_NAMES[s.group("name")]
                stats[name] = float(s.group("value"))
            out[key] = stats
        if t := _THROUGHPUT.search(line):
            out["throughput_qps"] = float(t.group("value"))
        if w := _WALLTIME.search(line):
            out["walltime_s"] = float(w.group("value"))
        if v := _VERSION.search(line):
            out["tensorrt_version"] = v.group("v")
    if not out.get("gpu_compute"):
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise EdgeKDError(f"trtexec printed no 'GPU Compute Time' summary; its last lines were:\n{tail}")
    return out


def run_trtexec(
    engine: Path, *, trtexec: Path | None = None, warmup_ms: int = 500, iterations: int = 100, duration_s: int = 3,
    runner: Callable[..., Any] = subprocess.run, timeout_s: float = 600.0,
) -> dict[str, Any]:  # fmt: skip
    """Time ``engine`` with trtexec; the parsed summary plus the command line (``"command"``).

    Raises :class:`BackendUnavailableError` when trtexec is not installed and :class:`EdgeKDError` when it fails.
    """
    binary = find_trtexec(trtexec)
    if binary is None:
        raise BackendUnavailableError(
            "trtexec is not installed (looked on PATH and in " + ", ".join(TRTEXEC_PLACES) + "); on a Jetson it "
            "comes with JetPack's TensorRT (`apt install tensorrt`), or pass --trtexec PATH"
        )
    cmd = trtexec_command(binary, Path(engine), warmup_ms=warmup_ms, iterations=iterations, duration_s=duration_s)
    try:
        proc = runner(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EdgeKDError(f"trtexec could not time {Path(engine).name}: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise EdgeKDError(f"trtexec exited {proc.returncode} timing {Path(engine).name}:\n{tail}")
    return {**parse_trtexec_summary(proc.stdout), "command": " ".join(cmd)}


def engine_timings(
    det: Any, jpeg: bytes, *, runs: int, warmup: int, trtexec: Path | None = None, use_trtexec: bool = True,
) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """CUDA-event GPU compute times of a TensorRT Detector's engine, and trtexec's summary when installed.

    Returns ``({"gpu_compute": percentiles, "trtexec": summary | None}, notes)``; a missing or failing trtexec
    becomes a note, not an error (the CUDA-event timing stands on its own).
    """
    from deploy.latency import decode_jpeg, summarize

    tensor, _ = det.preprocess(decode_jpeg(jpeg))
    out: dict[str, Any] = {"gpu_compute": summarize(np.asarray(time_gpu_compute(det.backend, tensor, runs, warmup)))}
    out["trtexec"], notes = None, []
    if use_trtexec:
        try:
            out["trtexec"] = run_trtexec(Path(det.backend.path), trtexec=trtexec)
        except EdgeKDError as exc:
            notes.append(f"{Path(det.backend.path).name}: trtexec not used: {exc}")
    return out, notes
