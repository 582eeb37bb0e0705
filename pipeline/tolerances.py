"""Regression tolerances for ``edgekd compare``: shipped defaults, validated user overrides.

A tolerances file (YAML or JSON; read by the CLI, parsed here) looks like::

    schema: edgekd.tolerances/v1      # optional
    absolute:                         # allowed worsening in the metric's unit; null = not checked
      map50_95: 0.01                  #   mAP50-95 may drop by at most 0.01 (one point)
      fppi_at_op: 0.05                #   FPPI at the operating point may rise by at most 0.05
    latency_factor:                   # allowed growth of (row latency / reference latency)
      latency_p50_ms: 1.15            #   against the same ratio in the baseline (1.15 = +15 %)

Keys left out keep the defaults (``pipeline/schemas/tolerances.default.json``). Which way is worse is
fixed per metric (:data:`DIRECTIONS`), not configurable: mAP, precision and recall down are bad; FPPI,
LAMR, false alarms per hour, D-ECE and latency up are bad.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from typing import Any

from deploy.errors import ConfigError


class Direction(str, Enum):
    HIGHER = "higher"  # higher is better
    LOWER = "lower"  # lower is better


DIRECTIONS: dict[str, Direction] = {
    "map50": Direction.HIGHER,
    "map50_95": Direction.HIGHER,
    "precision_at_op": Direction.HIGHER,
    "recall_at_op": Direction.HIGHER,
    "fppi_at_op": Direction.LOWER,
    "lamr": Direction.LOWER,
    "fa_per_hour": Direction.LOWER,
    "dece": Direction.LOWER,
    "latency_p50_ms": Direction.LOWER,
    "latency_p90_ms": Direction.LOWER,
    "latency_p99_ms": Direction.LOWER,
}
ABSOLUTE_METRICS = tuple(k for k in DIRECTIONS if not k.startswith("latency_"))
LATENCY_METRICS = tuple(k for k in DIRECTIONS if k.startswith("latency_"))
SCHEMA = "edgekd.tolerances/v1"
_TOP_KEYS = ("schema", "description", "absolute", "latency_factor")


@dataclass(frozen=True)
class Tolerances:
    """Allowed worsening per metric; a metric absent from both maps is not checked."""

    absolute: Mapping[str, float] = field(default_factory=dict)
    latency_factor: Mapping[str, float] = field(default_factory=dict)
    source: str = "defaults"


def default_tolerances() -> Tolerances:
    text = (resources.files("pipeline") / "schemas" / "tolerances.default.json").read_text()
    return parse_tolerances(json.loads(text), "pipeline/schemas/tolerances.default.json", base=Tolerances())


def parse_tolerances(obj: Any, source: str, base: Tolerances | None = None) -> Tolerances:
    """Validate a tolerances mapping and merge it over ``base`` (None: the shipped defaults).

    Raises :class:`ConfigError` naming ``source`` and listing every problem (unknown keys listed with the
    known ones).
    """
    if base is None:
        base = default_tolerances()
    if obj is None:
        obj = {}
    if not isinstance(obj, Mapping):
        raise ConfigError(
            [f"<root>: got a {type(obj).__name__}, expected a mapping with 'absolute'/'latency_factor'"], source
        )
    problems: list[str] = []
    unknown_top = sorted(set(obj) - set(_TOP_KEYS))
    if unknown_top:
        problems.append(f"unknown key(s) {unknown_top}; expected some of {list(_TOP_KEYS)}")
    if obj.get("schema", SCHEMA) != SCHEMA:
        problems.append(f"schema: got {obj.get('schema')!r}, expected {SCHEMA!r}")
    absolute = dict(base.absolute)
    factor = dict(base.latency_factor)
    problems += _section(obj.get("absolute"), "absolute", ABSOLUTE_METRICS, 0.0, absolute)
    problems += _section(obj.get("latency_factor"), "latency_factor", LATENCY_METRICS, 1.0, factor)
    if problems:
        raise ConfigError(problems, source)
    return Tolerances(absolute=absolute, latency_factor=factor, source=source)


def _section(raw: Any, name: str, known: tuple[str, ...], minimum: float, into: dict[str, float]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return [f"{name}: got {type(raw).__name__}, expected a mapping metric -> number"]
    problems = []
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        other = "latency_factor" if name == "absolute" else "absolute"
        misplaced = [k for k in unknown if k in DIRECTIONS]
        hint = f" ({', '.join(misplaced)} belong(s) under {other!r})" if misplaced else ""
        problems.append(f"{name}: unknown metric key(s) {unknown}{hint}; known: {', '.join(known)}")
    for key, value in raw.items():
        if key not in known:
            continue
        if value is None:
            into.pop(key, None)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{name}.{key}: got {value!r}, expected a number >= {minimum:g} or null (not checked)")
        elif value < minimum:
            what = "a growth factor >= 1 (1.15 = +15 %)" if minimum == 1.0 else "a non-negative allowed worsening"
            problems.append(f"{name}.{key}: got {value!r}, expected {what}")
        else:
            into[key] = float(value)
    return problems
