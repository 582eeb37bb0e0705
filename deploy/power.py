"""Power sampling on a Jetson, energy per frame, thermal throttling, power mode and clocks.

Two samplers, tried in this order by :func:`open_sampler`:

- :class:`JtopSampler`: jetson-stats' ``jtop`` client (the ``jtop`` service on the host; in a container mount
  ``/run/jtop.sock``), when the ``jtop`` module imports and the service answers;
- :class:`TegrastatsSampler`: a ``tegrastats --interval MS`` subprocess whose lines :mod:`deploy.tegrastats` parses.

Off a Jetson neither exists and :func:`open_sampler` returns ``(None, reason)``; the benchmark then records no power
and says why. Both samplers keep a :class:`PowerTrace` of (monotonic seconds, board mW) pairs, integrated over a
benchmark window by :func:`energy_per_frame`.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.tegrastats import TegraSample, TegrastatsParseError, parse_line


@dataclass
class PowerTrace:
    """Samples of board power: ``t`` monotonic seconds (N,), ``total_mw`` (N,), plus per-sample extras."""

    source: str
    t: list[float] = field(default_factory=list)
    total_mw: list[float] = field(default_factory=list)
    samples: list[TegraSample] = field(default_factory=list)
    total_rail: str | None = None

    def add(self, t: float, total_mw: float, sample: TegraSample | None = None) -> None:
        self.t.append(float(t))
        self.total_mw.append(float(total_mw))
        if sample is not None:
            self.samples.append(sample)


@dataclass(frozen=True)
class Energy:
    """Energy of a benchmark window."""

    mean_power_w: float
    energy_mj: float
    energy_mj_per_frame: float
    samples_in_window: int


def energy_per_frame(trace: PowerTrace, t0: float, t1: float, frames: int) -> Energy | None:
    """Integrate board power over [t0, t1] (trapezoids, power interpolated at the window edges) and divide by frames.

    Returns None when the trace has no sample at all, the window is empty or ``frames`` < 1. With a single sample the
    power is taken as constant over the window.
    """
    t = np.asarray(trace.t, np.float64)
    p = np.asarray(trace.total_mw, np.float64)
    if t.size == 0 or not t1 > t0 or frames < 1:
        return None
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    inside = (t > t0) & (t < t1)
    grid = np.concatenate([[t0], t[inside], [t1]])
    power = np.interp(grid, t, p)  # constant extrapolation beyond the first/last sample
    energy_mj = float(np.sum((power[1:] + power[:-1]) * 0.5 * np.diff(grid)))  # mW x s = mJ
    duration = t1 - t0
    return Energy(
        mean_power_w=energy_mj / duration / 1e3,
        energy_mj=energy_mj,
        energy_mj_per_frame=energy_mj / frames,
        samples_in_window=int(inside.sum()),
    )


# ---------------------------------------------------------------- samplers
class _ThreadedSampler:
    """Common start/stop plumbing: a daemon thread appending to :attr:`trace`."""

    source = "none"

    def __init__(self, interval_ms: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_ms = int(interval_ms)
        self.clock = clock
        self.trace = PowerTrace(self.source)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run_guarded, name=f"edgekd-{self.source}", daemon=True)
        self._thread.start()

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a sampler failure must never break the benchmark; it is reported instead
            self.error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> PowerTrace:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.trace

    def __enter__(self) -> _ThreadedSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TegrastatsSampler(_ThreadedSampler):
    """Reads ``tegrastats --interval MS`` line by line; each parsed line becomes a sample at its arrival time."""

    source = "tegrastats"

    def __init__(self, interval_ms: int = 100, executable: str = "tegrastats", **kw: Any) -> None:
        super().__init__(interval_ms, **kw)
        self.executable = executable
        self._proc: subprocess.Popen[str] | None = None

    def _run(self) -> None:
        self._proc = subprocess.Popen(
            [self.executable, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        if self._proc.stdout is None:  # pragma: no cover - PIPE was requested just above
            return
        for line in self._proc.stdout:
            if self._stop.is_set():
                break
            self.feed(line, self.clock())

    def feed(self, line: str, t: float) -> None:
        """Parse one line (ignored when it is not tegrastats output) and record its total power at time ``t``."""
        try:
            sample = parse_line(line)
        except TegrastatsParseError:
            return
        if sample.total_mw is not None:
            self.trace.total_rail = sample.total_source
            self.trace.add(t, sample.total_mw, sample)

    def stop(self) -> PowerTrace:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - tegrastats ignores SIGTERM
                self._proc.kill()
        return super().stop()


class JtopSampler(_ThreadedSampler):
    """Reads ``jetson.power`` of a jetson-stats client: ``{"tot": {"power": mW, ...}, "rail": {...}}``."""

    source = "jtop"

    def __init__(self, interval_ms: int = 100, jtop_factory: Callable[..., Any] | None = None, **kw: Any) -> None:
        super().__init__(interval_ms, **kw)
        self._factory = jtop_factory
        self.ready = threading.Event()
        self.nvpmodel: str | None = None  # the power mode as jtop names it (when nvpmodel itself is not reachable)

    def _run(self) -> None:
        factory: Callable[..., Any]
        if self._factory is not None:
            factory = self._factory
        else:
            from jtop import jtop as factory  # type: ignore[import-not-found,no-redef]
        try:
            with factory(interval=self.interval_ms / 1000.0) as jetson:
                mode = getattr(jetson, "nvpmodel", None)
                self.nvpmodel = str(mode) if mode is not None else None
                self.ready.set()
                while not self._stop.is_set() and jetson.ok():
                    self.record(jetson.power, self.clock())
        finally:
            self.ready.set()

    def record(self, power: dict[str, Any], t: float) -> None:
        """Record one ``jetson.power`` reading (total from ``tot``, else the sum of ``rail`` powers)."""
        tot = power.get("tot") or {}
        rails = power.get("rail") or {}
        if isinstance(tot, dict) and tot.get("power") is not None:
            self.trace.total_rail = str(tot.get("name") or "tot")
            self.trace.add(t, float(tot["power"]))
        elif rails:
            self.trace.total_rail = "sum of rails"
            self.trace.add(t, float(sum(float(r.get("power", 0.0)) for r in rails.values())))


Sampler = JtopSampler | TegrastatsSampler


def open_sampler(interval_ms: int = 100, prefer: str = "auto") -> tuple[Sampler | None, str]:
    """A started power sampler and a line saying which, or ``(None, reason)`` when this machine has none.

    ``prefer``: ``"auto"`` (jtop, else tegrastats), ``"jtop"``, ``"tegrastats"`` or ``"none"``.
    """
    reasons = []
    if prefer == "none":
        return None, "power sampling disabled (--power none)"
    if prefer in ("auto", "jtop"):
        try:
            import jtop  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            reasons.append("jetson-stats (jtop) is not installed")
        else:
            sampler = JtopSampler(interval_ms)
            sampler.start()
            sampler.ready.wait(timeout=10)
            if sampler.error is None and sampler._thread is not None and sampler._thread.is_alive():
                return sampler, "jtop (jetson-stats service)"
            sampler.stop()
            reasons.append(f"jtop did not start ({sampler.error or 'no answer from /run/jtop.sock'})")
    if prefer in ("auto", "tegrastats"):
        exe = shutil.which("tegrastats")
        if exe is None:
            reasons.append("no `tegrastats` on PATH (not a Jetson, or not mounted into the container)")
        else:
            sampler_t = TegrastatsSampler(interval_ms, executable=exe)
            sampler_t.start()
            return sampler_t, f"tegrastats ({exe})"
    return None, "; ".join(reasons) or f"unknown power source {prefer!r}"


# ---------------------------------------------------------------- throttling
@dataclass(frozen=True)
class ThrottleReport:
    """Thermal throttling over a run: hottest sensor, and how far loaded clocks fell below their run maximum."""

    throttled: bool
    reasons: tuple[str, ...]
    max_temp_c: float | None
    max_temp_sensor: str | None
    gpu_clock_drop: float | None
    cpu_clock_drop: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "throttled": self.throttled,
            "reasons": list(self.reasons),
            "max_temp_c": self.max_temp_c,
            "max_temp_sensor": self.max_temp_sensor,
            "gpu_clock_drop": self.gpu_clock_drop,
            "cpu_clock_drop": self.cpu_clock_drop,
        }


def _drop(freqs: list[float]) -> float | None:
    return round(1.0 - min(freqs) / max(freqs), 4) if len(freqs) >= 2 and max(freqs) > 0 else None


def detect_throttling(
    samples: list[TegraSample], *, temp_limit_c: float = 90.0, clock_drop: float = 0.2, busy_pct: float = 50.0
) -> ThrottleReport:
    """Throttling = a real sensor at/over ``temp_limit_c``, or a loaded clock falling by more than ``clock_drop``.

    Clocks are compared only across busy samples (GPU load >= ``busy_pct`` for the GPU clock, mean CPU load >=
    ``busy_pct`` for the CPU clock), where DVFS would otherwise hold them at their maximum.
    """
    hottest: tuple[str, float] | None = None
    gpu, cpu = [], []
    for s in samples:
        mt = s.max_temp
        if mt is not None and (hottest is None or mt[1] > hottest[1]):
            hottest = mt
        if s.gpu_load_pct is not None and s.gpu_load_pct >= busy_pct and s.gpu_freq_mhz:
            gpu.append(float(max(s.gpu_freq_mhz)))
        load = s.cpu_load_pct
        if load is not None and load >= busy_pct and s.cpu_freq_mhz:
            cpu.append(float(s.cpu_freq_mhz))
    reasons = []
    if hottest is not None and hottest[1] >= temp_limit_c:
        reasons.append(f"{hottest[0]} reached {hottest[1]:.1f} C (limit {temp_limit_c:.0f} C)")
    gpu_drop, cpu_drop = _drop(gpu), _drop(cpu)
    for name, value in (("GPU", gpu_drop), ("CPU", cpu_drop)):
        if value is not None and value > clock_drop:
            reasons.append(f"{name} clock fell {value:.0%} below its maximum under load (limit {clock_drop:.0%})")
    return ThrottleReport(
        bool(reasons),
        tuple(reasons),
        hottest[1] if hottest else None,
        hottest[0] if hottest else None,
        gpu_drop,
        cpu_drop,
    )


# ---------------------------------------------------------------- power mode and clocks
def parse_nvpmodel(text: str) -> dict[str, Any] | None:
    """``nvpmodel -q`` output -> {"name": "MAXN", "id": 0}; None when it holds no ``NV Power Mode:`` line."""
    lines = [ln.strip() for ln in text.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("NV Power Mode:"):
            name = line.split(":", 1)[1].strip()
            mode_id = None
            for rest in lines[i + 1 :]:
                if rest.isdigit():
                    mode_id = int(rest)
                    break
            return {"name": name, "id": mode_id}
    return None


def read_nvpmodel(executable: str = "nvpmodel") -> tuple[dict[str, Any] | None, str]:
    """Run ``nvpmodel -q``: (mode, "") or (None, why not)."""
    exe = shutil.which(executable)
    if exe is None:
        return None, "no `nvpmodel` on PATH"
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`nvpmodel -q` failed: {exc}"
    mode = parse_nvpmodel(out.stdout + "\n" + out.stderr)
    return mode, "" if mode else "`nvpmodel -q` printed no power mode"


def read_clocks(sys_root: Path = Path("/sys")) -> dict[str, Any]:
    """Current clocks from sysfs: CPU cores (scaling_cur_freq, kHz -> MHz) and devfreq devices (GPU, EMC; Hz -> MHz)."""
    cpus = {}
    for path in sorted((sys_root / "devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        value = _read_int(path)
        if value is not None:
            cpus[path.parent.parent.name] = round(value / 1000.0, 1)
    devfreq = {}
    for path in sorted((sys_root / "class/devfreq").glob("*/cur_freq")):
        value = _read_int(path)
        if value is not None:
            devfreq[path.parent.name] = round(value / 1e6, 1)
    return {"cpu_mhz": cpus, "devfreq_mhz": devfreq}


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def summarize_trace(trace: PowerTrace) -> dict[str, Any]:
    """Summary of a whole trace: source, rail used for the total, sample count, mean and peak board power (W)."""
    p = np.asarray(trace.total_mw, np.float64)
    return {
        "source": trace.source,
        "total_rail": trace.total_rail,
        "samples": int(p.size),
        "mean_w": round(float(p.mean()) / 1e3, 3) if p.size else None,
        "peak_w": round(float(p.max()) / 1e3, 3) if p.size else None,
    }
