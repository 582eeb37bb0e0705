"""A Q/DQ ONNX for TensorRT's explicit quantization (built into an engine on the Jetson by ``deploy.trt_build``).

TensorRT (>= 8, and 10 on JetPack 6) reads QuantizeLinear/DequantizeLinear pairs as the INT8 scales and fuses
them into its kernels; it expects symmetric int8 (zero point 0) for activations and weights, per-output-channel
weight scales on axis 0 of convolutions, and no quantized bias. ONNX Runtime's quantizer is configured for that
(the settings NVIDIA's ModelOpt uses for its ORT-based ONNX PTQ): float weights with a Q/DQ pair each
(``AddQDQPairToWeight``, TensorRT quantizes them itself), a dedicated pair per consumer, Q/DQ on op inputs only
(``OpTypesToExcludeOutputQuantization``) and only on ops TensorRT runs in INT8 (convolutions, GEMMs, the
residual Add, pooling, resize); the decode head stays float like everywhere else.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.quant import AdvancedOptions, CalibrationMethod, QuantResult, Recipe, Runtime, artifact_stem

# Op types TensorRT executes in INT8 when their inputs carry Q/DQ (copy/shape ops and activations are left to
# TensorRT's own Q/DQ propagation and fusions).
TRT_OP_TYPES = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Resize",
)


def trt_extra_options() -> dict[str, object]:
    """The ``extra_options`` of ``quantize_static`` for a TensorRT-friendly Q/DQ graph."""
    return {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "AddQDQPairToWeight": True,
        "DedicatedQDQPair": True,
        "OpTypesToExcludeOutputQuantization": list(TRT_OP_TYPES),
        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "Gemm": 0, "MatMul": 1},
        "ForceQuantizeNoInputCheck": True,
    }


def quantize(
    model_path: Path,
    *,
    calibration: list[Path],
    method: CalibrationMethod,
    recipe: Recipe,
    out: Path,
    advanced: AdvancedOptions,
) -> QuantResult:
    """``out/tensorrt_<recipe>.onnx``: symmetric int8 Q/DQ, per-channel weights, head in float.

    ``advanced.per_channel`` and ``advanced.reduce_range`` do not apply: TensorRT's explicit quantization is always
    per-channel, full-range int8 for weights.
    """
    from onnxruntime.quantization import QuantType

    from pipeline.quant.ort import qdq_result, quantize_without_head

    dst = out / f"{artifact_stem(Runtime.TENSORRT, recipe)}.onnx"
    advanced = replace(advanced, reduce_range=False)  # an ONNX Runtime CPU workaround; TensorRT wants full int8
    model, excluded, head_nodes = quantize_without_head(
        model_path, dst, calibration=calibration, method=method, advanced=advanced,
        per_channel=True, activation_type=QuantType.QInt8, op_types=list(TRT_OP_TYPES), extra=trt_extra_options(),
    )  # fmt: skip
    return qdq_result(
        dst, Runtime.TENSORRT, recipe, method, model, excluded, head_nodes, calibration, advanced,
        format="QDQ (TensorRT explicit quantization)", activations="int8 symmetric",
        weights="int8 symmetric per-channel (float weights + Q/DQ)", op_types=list(TRT_OP_TYPES),
        evaluated_on="Jetson (TensorRT); build with `edgekd deploy build-engine --int8`",
    )  # fmt: skip
