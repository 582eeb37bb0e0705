"""Sensitivity-guided fallback: keep the most sensitive layers in float until the INT8 accuracy drop fits a budget.

The search is a pure function of an ``evaluate(keep_float) -> mAP50-95`` callback: it tries the ``k`` worst layers
of the sensitivity ranking for k = 0, 1, 2, 4, 8, ... (capped at ``max_layers``) and stops at the first ``k``
whose drop against FP32 on the held-out set is within ``budget_points``. If none is, it returns the smallest drop
seen (``within_budget: false``). Each trial re-quantizes with cached calibration ranges, so it costs one
quantization (seconds) and one held-out evaluation.

The stage then measures what the float layers cost in latency (ONNX Runtime inference p50 of the FP32, the plain
INT8 and the fallback INT8 models, interleaved) and records everything under ``sensitivity.json``'s
``fallback`` entry::

    {"budget_points", "fp32_map50_95", "holdout_images", "trials": [{"k", "layers", "map50_95", "drop_points"}],
     "chosen": {"k", "layers": [tensor names], "nodes": [node names], "map50_95", "drop_points"},
     "within_budget", "latency_ms": {"fp32", "int8", "fallback"}}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.quant.sensitivity import TensorSensitivity


@dataclass(frozen=True)
class Trial:
    k: int
    layers: tuple[str, ...]
    nodes: tuple[str, ...]
    map50_95: float
    drop_points: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "layers": list(self.layers),
            "nodes": list(self.nodes),
            "map50_95": round(self.map50_95, 6),
            "drop_points": round(self.drop_points, 4),
        }


@dataclass(frozen=True)
class FallbackResult:
    chosen: Trial
    trials: tuple[Trial, ...]
    within_budget: bool
    budget_points: float
    fp32_map50_95: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget_points": self.budget_points,
            "fp32_map50_95": round(self.fp32_map50_95, 6),
            "trials": [t.as_dict() for t in self.trials],
            "chosen": self.chosen.as_dict(),
            "within_budget": self.within_budget,
            **self.extra,
        }


def schedule(max_layers: int, available: int) -> list[int]:
    """0, 1, 2, 4, ... up to min(max_layers, available), the cap itself always included."""
    cap = max(0, min(max_layers, available))
    ks, k = [0], 1
    while k < cap:
        ks.append(k)
        k *= 2
    if cap > 0:
        ks.append(cap)
    return ks


def nodes_for(layers: Sequence[TensorSensitivity]) -> tuple[str, ...]:
    """The union of the layers' nodes, in first-seen order."""
    seen: dict[str, None] = {}
    for layer in layers:
        for n in layer.nodes:
            seen.setdefault(n, None)
    return tuple(seen)


def search(
    ranked: Sequence[TensorSensitivity],
    evaluate: Callable[[tuple[str, ...]], float],
    *,
    fp32_map: float,
    budget_points: float,
    max_layers: int,
    log: Callable[[str], None] = lambda _msg: None,
) -> FallbackResult:
    """Greedy search over the sensitivity ranking (worst first); see the module docstring.

    Args:
        ranked: layers, most sensitive first (each names the nodes that keep it in float).
        evaluate: node names kept in float -> mAP50-95 (fraction) of the re-quantized model on the held-out set.
        fp32_map: the FP32 model's mAP50-95 on the same set.
        budget_points: allowed drop in mAP points (0.5 = 0.005 mAP).
        max_layers: the most layers kept in float.
    """
    trials: list[Trial] = []
    for k in schedule(max_layers, len(ranked)):
        chosen = list(ranked[:k])
        nodes = nodes_for(chosen)
        value = float(evaluate(nodes))
        trial = Trial(k, tuple(layer.tensor for layer in chosen), nodes, value, (fp32_map - value) * 100.0)
        trials.append(trial)
        log(f"fallback: {k} layer(s) in float -> mAP50-95 {value:.4f} (drop {trial.drop_points:.2f} points)")
        if trial.drop_points <= budget_points:
            return FallbackResult(trial, tuple(trials), True, budget_points, fp32_map)
    best = min(trials, key=lambda t: (t.drop_points, t.k))
    return FallbackResult(best, tuple(trials), False, budget_points, fp32_map)
