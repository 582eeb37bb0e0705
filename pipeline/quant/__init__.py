"""INT8 post-training quantization of edgekd ONNX exports: one flat, keyword-only facade.

>>> from pipeline.quant import quantize, Runtime, CalibrationMethod, Recipe      # doctest: +SKIP
>>> result = quantize("export/student.onnx", runtime=Runtime.ONNXRUNTIME,       # doctest: +SKIP
...                   calibration=images, method=CalibrationMethod.MINMAX,
...                   recipe=Recipe.HEAD_FLOAT, out=Path("quantize/student"))

Backends (picked by a small registry, imported lazily so that listing choices imports nothing heavy):

* ``onnxruntime`` (:mod:`pipeline.quant.ort`): static INT8, QDQ, per-channel weights, the decode head in float;
* ``openvino`` (:mod:`pipeline.quant.openvino`): NNCF post-training quantization (preset MIXED) of the IR, the
  head in an ignored scope, optionally with accuracy control;
* ``tensorrt`` (:mod:`pipeline.quant.tensorrt_qdq`): a Q/DQ ONNX for TensorRT's explicit quantization
  (symmetric INT8 activations and per-channel weights), built into an engine on the device by
  :mod:`deploy.trt_build`.

Recipes: ``head_float`` (edgekd's: everything but the box/score decode quantized), ``naive`` (the baseline to
beat: boxes and scores concatenated into one output, everything quantized per tensor with min-max, nothing
excluded; ONNX Runtime only) and ``fallback`` (head_float plus the most sensitive layers kept in float, chosen by
:mod:`pipeline.quant.fallback`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from deploy.errors import ConfigError


class Runtime(str, Enum):
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"


class CalibrationMethod(str, Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Recipe(str, Enum):
    HEAD_FLOAT = "head_float"
    NAIVE = "naive"
    FALLBACK = "fallback"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


@dataclass(frozen=True)
class AdvancedOptions:
    """Rarely changed knobs.

    Attributes:
        percentile: the percentile of |activation| kept by the ``percentile`` calibration method.
        per_channel: ONNX Runtime: per-output-channel weight scales (all recipes but ``naive``); TensorRT and
            OpenVINO (NNCF, preset MIXED) always quantize weights per channel.
        reduce_range: ONNX Runtime only: 7-bit weights (CPUs without VNNI); TensorRT and NNCF use 8-bit.
        keep_float: extra node names to keep in float (the fallback recipe's layers), beside the head.
        calibration_cache: ONNX Runtime calibration-range cache file (reused when it exists).
        accuracy_control: OpenVINO only: ``nncf.quantize_with_accuracy_control`` with ``max_drop``.
        max_drop: the absolute mAP50-95 drop (fraction, 0.005 = 0.5 points) accuracy control may accept.
        validation: OpenVINO accuracy control only: a :class:`pipeline.quant.accuracy.EvalSet`.
        conf, iou, max_det: accuracy control's detection threshold, NMS IoU and detections per image (pass the
            evaluation's, so that it judges the drop as the report measures it).
    """

    percentile: float = 99.999
    per_channel: bool = True
    reduce_range: bool = False
    keep_float: tuple[str, ...] = ()
    calibration_cache: Path | None = None
    accuracy_control: bool = False
    max_drop: float = 0.005
    validation: Any = None
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300


@dataclass(frozen=True)
class QuantResult:
    """One produced artifact (the stage adds sha256 and size when it records it).

    Attributes:
        path: the model file (.onnx, or the IR's .xml next to its .bin).
        runtime, recipe, precision, method: what it is.
        excluded: node names kept in float (the decode head, fallback layers).
        files: every file written (e.g. .xml and .bin).
        details: backend-specific facts (op counts, calibration frames, options).
    """

    path: Path
    runtime: Runtime
    recipe: Recipe
    precision: Precision
    method: CalibrationMethod | None
    excluded: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


_BACKENDS: dict[Runtime, str] = {
    Runtime.ONNXRUNTIME: "pipeline.quant.ort",
    Runtime.OPENVINO: "pipeline.quant.openvino",
    Runtime.TENSORRT: "pipeline.quant.tensorrt_qdq",
}
_SUPPORTED: dict[Runtime, frozenset[Recipe]] = {
    Runtime.ONNXRUNTIME: frozenset(Recipe),
    Runtime.OPENVINO: frozenset({Recipe.HEAD_FLOAT, Recipe.FALLBACK}),
    Runtime.TENSORRT: frozenset({Recipe.HEAD_FLOAT, Recipe.FALLBACK}),
}


def artifact_stem(runtime: Runtime | str, recipe: Recipe | str) -> str:
    """``<runtime>_<recipe>``: the file name (without suffix) of an artifact under ``quantize/<model>/``."""
    return f"{Runtime(runtime).value}_{Recipe(recipe).value}"


def quantize(
    model_path: str | Path,
    *,
    runtime: Runtime | str,
    calibration: list[Path],
    method: CalibrationMethod | str = CalibrationMethod.MINMAX,
    recipe: Recipe | str = Recipe.HEAD_FLOAT,
    out: Path,
    advanced: AdvancedOptions | None = None,
) -> QuantResult:
    """Quantize an edgekd ONNX export to INT8 for ``runtime``; writes ``out/<runtime>_<recipe>.*``.

    Args:
        model_path: an FP32 ONNX model in the export contract (outputs ``boxes`` and ``scores``).
        runtime: ``onnxruntime``, ``openvino`` or ``tensorrt``.
        calibration: calibration image files (see :func:`pipeline.quant.calib_reader.load_calibration`).
        method: range calibration: ``minmax``, ``entropy`` or ``percentile``.
        recipe: ``head_float``, ``naive`` or ``fallback`` (needs ``advanced.keep_float``).
        out: the output folder (created).
        advanced: :class:`AdvancedOptions`; defaults when None.
    """
    runtime, method, recipe = (
        _choice(Runtime, runtime, "runtime"),
        _choice(CalibrationMethod, method, "method"),
        _choice(Recipe, recipe, "recipe"),
    )
    if recipe not in _SUPPORTED[runtime]:
        allowed = ", ".join(sorted(r.value for r in _SUPPORTED[runtime]))
        raise ConfigError([f"recipe: got {recipe.value!r} for runtime {runtime.value!r}, expected one of {allowed}"])
    if not calibration:
        raise ConfigError(["calibration: got no images, expected at least one calibration frame"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend = importlib.import_module(_BACKENDS[runtime])
    return backend.quantize(
        Path(model_path),
        calibration=list(calibration),
        method=method,
        recipe=recipe,
        out=out,
        advanced=advanced or AdvancedOptions(),
    )


def _choice(enum: type[Enum], value: Any, key: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)  # type: ignore[attr-defined]
        raise ConfigError([f"{key}: got {value!r}, expected one of {allowed}"]) from None


__all__ = [
    "AdvancedOptions",
    "CalibrationMethod",
    "Precision",
    "QuantResult",
    "Recipe",
    "Runtime",
    "artifact_stem",
    "quantize",
]
