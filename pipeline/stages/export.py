"""Stage ``export``: every trained model of the run to ONNX in the edgekd contract, parity-checked.

For each trained arm among the upstream stages present (teacher, student, distill, distill_ultralytics and the
ablation arms), ``weights/best.pt`` is verified against the run manifest's sha256 *before* it is unpickled,
exported (:mod:`pipeline.export`) and compared with the PyTorch model on validation frames
(:mod:`pipeline.export_parity`); a model beyond ``export.parity_atol`` fails the stage, naming the model, the
error and the tolerance. Outputs (paths relative to the stage folder)::

    <model>.onnx    the FP32 export (static 1x3xHxW, or dynamic batch with export.dynamic_batch)
    <model>.json    {"model", "onnx": {path, sha256, size}, "weights": {path, sha256}, "imgsz", "opset",
                     "dynamic_batch", "simplify", "params", "gflops", "names", "parity": {...}}
    export.json     {"schema": "edgekd.export/v1", "models": [<model>.json contents, ...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy.errors import StageError
from pipeline.runner import Stage, StageContext, sha256_file
from pipeline.train import ARMS
from pipeline.train.weights import STAGE_WEIGHTS

SCHEMA = "edgekd.export/v1"


def trained_models(ctx: StageContext) -> list[str]:
    """The model stages among this stage's inputs, in ARMS order."""
    return [m for m in ARMS if m in ctx.inputs]


def verified_weights(ctx: StageContext, model: str) -> tuple[Path, str]:
    """(path, sha256) of ``<run>/<model>/weights/best.pt``, checked against the run manifest before any load."""
    from pipeline.train.weights import verify_stage_weights

    return verify_stage_weights(ctx.run_dir, model, STAGE_WEIGHTS)


def export_one(ctx: StageContext, model_name: str, imgsz: tuple[int, int]) -> dict[str, Any]:
    """Export, parity-check and describe one model; raises StageError when parity fails."""
    from pipeline.export import ExportSpec, class_names, export_onnx, load_detection_model, model_stats
    from pipeline.export_parity import check_parity, frames_tensor, val_images

    cfg = ctx.cfg.export
    weights, digest = verified_weights(ctx, model_name)
    model = load_detection_model(weights)
    spec = ExportSpec(imgsz=imgsz, opset=cfg.opset, dynamic_batch=cfg.dynamic_batch, simplify=cfg.simplify)
    out = export_onnx(model, ctx.out / f"{model_name}.onnx", spec)
    frames = frames_tensor(val_images(ctx.upstream("data"), cfg.parity_images), imgsz)
    parity = check_parity(model, out, frames, cfg.parity_atol)
    if not parity.passed:
        raise StageError(
            f"export of {model_name!r}: ONNX differs from PyTorch by {parity.max_error:.3g} (scores max abs "
            f"{parity.scores_max_abs:.3g}, boxes max abs {parity.boxes_max_abs:.3g} px = {parity.boxes_max_rel:.3g} "
            f"of the input size) on {parity.frames} validation frames, over the tolerance export.parity_atol="
            f"{parity.atol:g}; check the exporter versions or raise export.parity_atol"
        )
    ctx.log(f"[export] {model_name}: parity max error {parity.max_error:.2e} <= {parity.atol:g}")
    return {
        "model": model_name,
        "onnx": {"path": out.name, "sha256": sha256_file(out), "size": out.stat().st_size},
        "weights": {"path": f"{model_name}/{STAGE_WEIGHTS}", "sha256": digest},
        "imgsz": list(imgsz),
        "opset": spec.opset,
        "dynamic_batch": spec.dynamic_batch,
        "simplify": spec.simplify,
        "names": class_names(model),
        **model_stats(model, imgsz),
        "parity": parity.as_dict(),
    }


def run_export(ctx: StageContext) -> None:
    models = trained_models(ctx)
    if not models:
        raise StageError("stage 'export': no trained model among its inputs; run a training stage first")
    imgsz = (ctx.cfg.train.imgsz, ctx.cfg.train.imgsz)
    records = []
    for name in models:
        record = export_one(ctx, name, imgsz)
        (ctx.out / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        records.append(record)
    summary = {"schema": SCHEMA, "models": records}
    (ctx.out / "export.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


STAGES = [
    Stage(
        "export",
        run_export,
        version="1",
        params=(
            "export.opset",
            "export.dynamic_batch",
            "export.simplify",
            "export.parity_atol",
            "export.parity_images",
            "train.imgsz",
        ),
        upstream=("data", *ARMS),
        tools=("torch", "ultralytics", "onnx", "onnxslim", "onnxruntime"),
        description="ONNX export (boxes + scores outputs, contract metadata) with a PyTorch parity check",
    )
]
