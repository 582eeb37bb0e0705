"""Parse one line of NVIDIA's ``tegrastats`` into a typed :class:`TegraSample`.

The format differs across Jetson models and JetPack releases; the parser is generic rather than per model:

- an optional ``MM-DD-YYYY HH:MM:SS`` prefix (JetPack >= 5);
- ``RAM used/totalMB (lfb NxSMB)``, ``SWAP used/totalMB (cached XMB)``;
- ``CPU [load%@MHz,...]`` with ``off`` for a parked core (older: ``CPU [a%,b%]@MHz``);
- ``GR3D_FREQ load%``, ``load%@MHz`` or ``load%@[MHz,MHz]`` (one per GPC), ``EMC_FREQ load%[@MHz]``;
- temperatures ``name@42.5C``, or ``name@cur/maxC`` (newest releases);
- power rails ``NAME instant/average`` in mW: unitless on JetPack 4 (``VDD_IN 6140/5510``), ``4900mW/5000mW`` later,
  ``3034mW/3049mW/3412mW`` (instant/average/peak) on the newest. Rail names by module:
  Orin Nano / Orin NX / Xavier NX ``VDD_IN VDD_CPU_GPU_CV VDD_SOC``; AGX Orin ``VDD_GPU_SOC VDD_CPU_CV VIN_SYS_5V0
  VDDQ_VDD2_1V8AO``; AGX Xavier ``GPU CPU SOC CV VDDRQ SYS5V``; Nano ``POM_5V_IN POM_5V_GPU POM_5V_CPU``; TX1/TX2
  ``VDD_IN VDD_CPU VDD_GPU ...``.

The board's total is its input rail (``VDD_IN`` or ``POM_5V_IN``) where it has one; AGX Orin and AGX Xavier have
none, so the total is the sum of their rails (as jetson-stats does) and :attr:`TegraSample.total_source` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
# PMIC@100C is a fixed placeholder on Xavier/Nano, not a measurement.
PLACEHOLDER_SENSORS = frozenset({"pmic"})

_TIMESTAMP = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB(?: \(lfb (\d+)x(\d+)MB\))?")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?")
_CORE = re.compile(r"^(\d+)%(?:@(\d+))?$")
_ENGINE = re.compile(r"\b(GR3D_FREQ|EMC_FREQ) (\d+)%(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C?(?:/(-?\d+(?:\.\d+)?))?C(?=\s|$)")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)")
_NOT_RAILS = frozenset({"RAM", "SWAP", "IRAM"})


class TegrastatsParseError(ValueError):
    """The line holds none of the fields tegrastats prints."""


@dataclass(frozen=True)
class Rail:
    """One power rail in milliwatts: ``instant`` now, ``average`` since tegrastats started, ``peak`` if printed."""

    instant_mw: int
    average_mw: int
    peak_mw: int | None = None


@dataclass(frozen=True)
class Core:
    """One CPU core: load in percent and frequency in MHz; ``online`` False when tegrastats printed ``off``."""

    online: bool
    load_pct: float | None = None
    freq_mhz: int | None = None


@dataclass(frozen=True)
class TegraSample:
    """Everything one tegrastats line says. Absent fields are None / empty."""

    timestamp: str | None = None
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    lfb_blocks: int | None = None
    lfb_block_mb: int | None = None
    swap_used_mb: int | None = None
    swap_total_mb: int | None = None
    swap_cached_mb: int | None = None
    cpus: tuple[Core, ...] = ()
    gpu_load_pct: float | None = None
    gpu_freq_mhz: tuple[int, ...] = ()
    emc_load_pct: float | None = None
    emc_freq_mhz: int | None = None
    temps_c: dict[str, float] = field(default_factory=dict)
    rails: dict[str, Rail] = field(default_factory=dict)

    @property
    def total_source(self) -> str | None:
        """Which rail gives :attr:`total_mw`: an input rail's name, ``"sum of rails"``, or None without rails."""
        for name in INPUT_RAILS:
            if name in self.rails:
                return name
        return "sum of rails" if self.rails else None

    @property
    def total_mw(self) -> int | None:
        """Board power now (instant), in mW: the input rail, else the sum of all rails."""
        source = self.total_source
        if source is None:
            return None
        if source in self.rails:
            return self.rails[source].instant_mw
        return sum(r.instant_mw for r in self.rails.values())

    @property
    def cpu_load_pct(self) -> float | None:
        """Mean load over online cores, percent."""
        loads = [c.load_pct for c in self.cpus if c.online and c.load_pct is not None]
        return sum(loads) / len(loads) if loads else None

    @property
    def cpu_freq_mhz(self) -> int | None:
        """Highest frequency among online cores, MHz."""
        freqs = [c.freq_mhz for c in self.cpus if c.online and c.freq_mhz is not None]
        return max(freqs) if freqs else None

    @property
    def max_temp(self) -> tuple[str, float] | None:
        """(sensor, degrees C) of the hottest real sensor (placeholders such as PMIC@100C left out)."""
        real = {k: v for k, v in self.temps_c.items() if k.lower() not in PLACEHOLDER_SENSORS}
        if not real:
            return None
        name = max(real, key=lambda k: real[k])
        return name, real[name]


def _cores(body: str, shared_freq: str | None) -> tuple[Core, ...]:
    cores = []
    for item in (p.strip() for p in body.split(",")):
        if not item:
            continue
        if item == "off":
            cores.append(Core(online=False))
            continue
        m = _CORE.match(item)
        if m is None:
            continue
        freq = m.group(2) or shared_freq
        cores.append(Core(True, float(m.group(1)), int(freq) if freq else None))
    return tuple(cores)


def parse_line(line: str) -> TegraSample:
    """Parse one tegrastats line.

    Raises:
        TegrastatsParseError: the line has no RAM, CPU, GPU, temperature or rail field (not tegrastats output).
    """
    values: dict = {}
    ts = _TIMESTAMP.match(line)
    if ts:
        values["timestamp"] = ts.group(1)
        line = line[ts.end() :]
    if m := _RAM.search(line):
        values["ram_used_mb"], values["ram_total_mb"] = int(m.group(1)), int(m.group(2))
        if m.group(3):
            values["lfb_blocks"], values["lfb_block_mb"] = int(m.group(3)), int(m.group(4))
    if m := _SWAP.search(line):
        values["swap_used_mb"], values["swap_total_mb"] = int(m.group(1)), int(m.group(2))
        if m.group(3):
            values["swap_cached_mb"] = int(m.group(3))
    if m := _CPU.search(line):
        values["cpus"] = _cores(m.group(1), m.group(2))
    for m in _ENGINE.finditer(line):
        freqs = tuple(int(f) for f in (m.group(3) or "").split(",") if f)
        if m.group(1) == "GR3D_FREQ":
            values["gpu_load_pct"], values["gpu_freq_mhz"] = float(m.group(2)), freqs
        else:
            values["emc_load_pct"], values["emc_freq_mhz"] = float(m.group(2)), (freqs[0] if freqs else None)
    temps = {m.group(1): float(m.group(2)) for m in _TEMP.finditer(line)}
    rails = {}
    for m in _RAIL.finditer(line):
        if m.group(1) in _NOT_RAILS:
            continue
        peak = int(m.group(4)) if m.group(4) else None
        rails[m.group(1)] = Rail(int(m.group(2)), int(m.group(3)), peak)
    if not (set(values) - {"timestamp"} or temps or rails):
        shown = line if len(line) <= 80 else line[:77] + "..."
        raise TegrastatsParseError(f"not a tegrastats line (no RAM, CPU, GR3D_FREQ, temperature or rail): {shown!r}")
    return TegraSample(temps_c=temps, rails=rails, **values)
