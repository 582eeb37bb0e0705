"""The naive INT8 baseline: what quantizing a standard YOLO export without care gives.

The split export is turned back into the usual single output (``output0`` = Concat(boxes, scores) on axis 1,
(B, 4 + nc, A), the layout of ultralytics' own export), and ONNX Runtime quantizes everything it can with
per-tensor min-max scales and nothing excluded. Box pixels (0..imgsz) and class probabilities (0..1) then share
one INT8 scale on that output, so the scores collapse onto a handful of levels: the accuracy this costs is what
the ``head_float`` recipe avoids.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from deploy.errors import StageError
from pipeline.quant import AdvancedOptions, CalibrationMethod, Precision, QuantResult, Recipe, Runtime, artifact_stem
from pipeline.quant.calib_reader import CalibrationReader

FUSED_OUTPUT = "output0"


def concat_outputs(model: Any) -> Any:
    """Split ONNX model (outputs ``boxes`` (B,4,A), ``scores`` (B,nc,A)) -> a copy with one output ``output0``
    (B, 4 + nc, A) and ``edgekd_format`` set to ultralytics' fused layout."""
    import onnx
    from onnx import helper

    from deploy.metadata import FORMAT_ULTRALYTICS

    outputs = {o.name: o for o in model.graph.output}
    if set(outputs) != {"boxes", "scores"}:
        raise StageError(f"naive recipe: expected outputs 'boxes' and 'scores', got {sorted(outputs)}")
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    dims = [outputs["boxes"].type.tensor_type.shape.dim[i] for i in range(3)]
    nc = outputs["scores"].type.tensor_type.shape.dim[1].dim_value
    batch = dims[0].dim_value or dims[0].dim_param or "batch"
    shape = [batch, 4 + nc if nc else None, dims[2].dim_value or dims[2].dim_param or "anchors"]
    fused.graph.node.append(
        helper.make_node("Concat", ["boxes", "scores"], [FUSED_OUTPUT], name="naive/Concat", axis=1)
    )
    del fused.graph.output[:]
    fused.graph.output.append(helper.make_tensor_value_info(FUSED_OUTPUT, onnx.TensorProto.FLOAT, shape))
    props = {p.key: p.value for p in fused.metadata_props}
    props["edgekd_format"] = FORMAT_ULTRALYTICS
    del fused.metadata_props[:]
    for key in sorted(props):
        p = fused.metadata_props.add()
        p.key, p.value = key, props[key]
    onnx.checker.check_model(fused)
    return fused


def quantize(model_path: Path, *, calibration: list[Path], out: Path, advanced: AdvancedOptions) -> QuantResult:
    """``out/onnxruntime_naive.onnx``: fused output, everything INT8 per tensor, min-max, no exclusions."""
    import onnx
    from onnxruntime.quantization import QuantType

    from pipeline.quant.ort import count_ops, preprocess_model, run_quantize_static

    dst = out / f"{artifact_stem(Runtime.ONNXRUNTIME, Recipe.NAIVE)}.onnx"
    plain = AdvancedOptions(percentile=advanced.percentile, reduce_range=advanced.reduce_range)  # no shared cache
    with tempfile.TemporaryDirectory(prefix="edgekd-naive-") as tmp:
        fused = Path(tmp) / "fused.onnx"
        onnx.save(concat_outputs(onnx.load(str(model_path))), str(fused))
        pre = Path(tmp) / "preprocessed.onnx"
        preprocess_model(fused, pre)
        reader = CalibrationReader.for_model(pre, calibration)
        model = run_quantize_static(
            pre,
            dst,
            reader,
            method=CalibrationMethod.MINMAX,
            advanced=plain,
            exclude=(),
            per_channel=False,
            activation_type=QuantType.QUInt8,
        )
    return QuantResult(
        path=dst,
        runtime=Runtime.ONNXRUNTIME,
        recipe=Recipe.NAIVE,
        precision=Precision.INT8,
        method=CalibrationMethod.MINMAX,
        excluded=(),
        files=(dst,),
        details={
            "format": "QDQ",
            "output": f"{FUSED_OUTPUT} = Concat(boxes, scores), one INT8 scale",
            "activations": "uint8 asymmetric",
            "weights": "int8 symmetric per-tensor",
            "calibration_frames": len(calibration),
            "ops": count_ops(model),
        },
    )
