"""ONNX Runtime static INT8 (QDQ): per-channel weights, calibrated activations, the decode head in float.

Steps: ``quant_pre_process`` (symbolic shape inference + graph optimisation, as ONNX Runtime recommends), name
every node, find the decode head (:mod:`pipeline.quant.head`) and ``quantize_static`` with the head (and any
``advanced.keep_float`` layers) in ``nodes_to_exclude``. Activations are asymmetric uint8 and weights symmetric
int8 per output channel (ONNX Runtime's recommendation for x86 CPUs); every op type ONNX Runtime can quantize is
quantized elsewhere (Conv, SiLU's Sigmoid/Mul, Add, Concat, MaxPool, Resize...). Convolution outputs are
quantized by their consumers only, so the raw box/class logits entering the head stay float.

Calibration ranges can be cached (``advanced.calibration_cache``): they depend only on the pre-processed graph,
the calibration frames and the method, so the fallback search and the TensorRT Q/DQ model reuse them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deploy.errors import StageError
from pipeline.quant import AdvancedOptions, CalibrationMethod, Precision, QuantResult, Recipe, Runtime, artifact_stem
from pipeline.quant.calib_reader import CalibrationReader

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# A Conv's output gets Q/DQ from its consumers' inputs (SiLU's Sigmoid and Mul), so ORT's CPU fusion into
# QLinearConv still sees DQ -> Conv -> Q; the prediction convolutions, whose consumers are the excluded head,
# then hand the decode exact float logits instead of 8-bit ones.
HEAD_FLOAT_OPTIONS = {"OpTypesToExcludeOutputQuantization": ["Conv"]}


def ort_method(method: CalibrationMethod) -> Any:
    from onnxruntime.quantization import CalibrationMethod as OrtMethod

    return {
        CalibrationMethod.MINMAX: OrtMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
    }[method]


def calib_stride(n: int, most: int = 4) -> int:
    """The largest divisor of ``n`` (frames) that is at most ``most``: calibration runs in chunks of that many."""
    return max(d for d in range(1, max(1, min(most, n)) + 1) if n % d == 0)


def calib_options(method: CalibrationMethod, advanced: AdvancedOptions, n: int) -> dict[str, Any]:
    """``extra_options`` of the range calibration over ``n`` frames.

    ``CalibStridedMinMax`` makes ONNX Runtime collect (and merge) ranges/histograms a few frames at a time, for
    every method: by default its calibrators keep every frame's intermediate tensors until the end, gigabytes
    for a YOLOv8-L over a few hundred frames.
    """
    options: dict[str, Any] = {"CalibStridedMinMax": calib_stride(n)}
    if method is CalibrationMethod.PERCENTILE:
        options["CalibPercentile"] = float(advanced.percentile)
    return options


def preprocess_model(src: Path, dst: Path) -> Any:
    """``quant_pre_process`` ``src`` into ``dst``, name every node, keep the metadata; returns the ModelProto."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from pipeline.quant.head import name_nodes

    try:
        quant_pre_process(str(src), str(dst))
    except Exception as exc:  # ORT raises bare exceptions from shape inference; name the model
        raise StageError(f"{src.name}: ONNX Runtime quantization pre-processing failed: {exc}") from exc
    model = onnx.load(str(dst))
    name_nodes(model)
    copy_metadata(onnx.load(str(src), load_external_data=False), model)
    onnx.save(model, str(dst))
    return model


def copy_metadata(src: Any, dst: Any) -> None:
    """Set ``src``'s metadata_props (names, imgsz, preprocess... of the export contract) on ``dst``, keeping
    ``dst``'s other keys (e.g. ONNX Runtime's ``onnx.quant.pre_process`` marker)."""
    props = {p.key: p.value for p in dst.metadata_props}
    props.update({p.key: p.value for p in src.metadata_props})
    del dst.metadata_props[:]
    for key in sorted(props):
        p = dst.metadata_props.add()
        p.key, p.value = key, props[key]


def count_ops(model: Any, ops: Iterable[str] = QDQ_OPS) -> dict[str, int]:
    wanted = set(ops)
    counts = dict.fromkeys(sorted(wanted), 0)
    for n in model.graph.node:
        if n.op_type in wanted:
            counts[n.op_type] += 1
    return counts


def run_quantize_static(
    pre: Path,
    dst: Path,
    reader: CalibrationReader,
    *,
    method: CalibrationMethod,
    advanced: AdvancedOptions,
    exclude: Iterable[str],
    per_channel: bool,
    activation_type: Any,
    op_types: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """``onnxruntime.quantization.quantize_static`` (QDQ, int8 weights) on the pre-processed ``pre``; returns the
    quantized ModelProto with ``pre``'s metadata."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    reader.rewind()
    cache = advanced.calibration_cache
    try:
        quantize_static(
            str(pre),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=per_channel,
            reduce_range=advanced.reduce_range,
            activation_type=activation_type,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(set(exclude)),
            calibrate_method=ort_method(method),
            extra_options={**calib_options(method, advanced, len(reader)), **(extra or {})},
            calibration_cache_path=str(cache) if cache is not None else None,
        )
    except StageError:
        raise
    except Exception as exc:
        raise StageError(f"{pre.name}: ONNX Runtime static quantization failed: {exc}") from exc
    model = onnx.load(str(dst))
    copy_metadata(onnx.load(str(pre), load_external_data=False), model)
    onnx.save(model, str(dst))
    return model


def quantize_without_head(
    model_path: Path,
    dst: Path,
    *,
    calibration: list[Path],
    method: CalibrationMethod,
    advanced: AdvancedOptions,
    **options: Any,
) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """Pre-process, find the decode head, calibrate and write a QDQ model with the head (and keep_float) in float.

    ``options`` go to :func:`run_quantize_static` (per_channel, activation_type, op_types, extra).
    Returns (the quantized ModelProto, the excluded node names, the head's node names).
    """
    from pipeline.quant.head import onnx_head

    with tempfile.TemporaryDirectory(prefix="edgekd-qdq-") as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        head = onnx_head(preprocess_model(model_path, pre))
        excluded = (*head.nodes, *advanced.keep_float)
        reader = CalibrationReader.for_model(pre, calibration)
        model = run_quantize_static(pre, dst, reader, method=method, advanced=advanced, exclude=excluded, **options)
    return model, tuple(excluded), tuple(head.nodes)


def quantize(
    model_path: Path,
    *,
    calibration: list[Path],
    method: CalibrationMethod,
    recipe: Recipe,
    out: Path,
    advanced: AdvancedOptions,
) -> QuantResult:
    """INT8 QDQ ONNX for ONNX Runtime: ``out/onnxruntime_<recipe>.onnx`` (``naive`` is delegated)."""
    if recipe is Recipe.NAIVE:
        from pipeline.quant import naive

        return naive.quantize(model_path, calibration=calibration, out=out, advanced=advanced)
    from onnxruntime.quantization import QuantType

    dst = out / f"{artifact_stem(Runtime.ONNXRUNTIME, recipe)}.onnx"
    model, excluded, head_nodes = quantize_without_head(
        model_path, dst, calibration=calibration, method=method, advanced=advanced,
        per_channel=advanced.per_channel, activation_type=QuantType.QUInt8, extra=HEAD_FLOAT_OPTIONS,
    )  # fmt: skip
    return qdq_result(
        dst, Runtime.ONNXRUNTIME, recipe, method, model, excluded, head_nodes, calibration, advanced,
        format="QDQ", activations="uint8 asymmetric",
        weights="int8 symmetric " + ("per-channel" if advanced.per_channel else "per-tensor"),
    )  # fmt: skip


def qdq_result(
    dst: Path, runtime: Runtime, recipe: Recipe, method: CalibrationMethod, model: Any, excluded: Iterable[str],
    head_nodes: Iterable[str], calibration: list[Path], advanced: AdvancedOptions, **details: Any,
) -> QuantResult:  # fmt: skip
    """The QuantResult of a :func:`quantize_without_head` Q/DQ ONNX; ``details`` describe its format."""
    return QuantResult(
        path=dst,
        runtime=runtime,
        recipe=recipe,
        precision=Precision.INT8,
        method=method,
        excluded=tuple(excluded),
        files=(dst,),
        details={
            **details,
            "head_nodes": list(head_nodes),
            "keep_float": list(advanced.keep_float),
            "calibration_frames": len(calibration),
            "ops": count_ops(model),
        },
    )
