"""ONNX export of a trained YOLOv8 in the edgekd contract (build side; torch + ultralytics, imported lazily).

The contract (see ``deploy.metadata.contract_props``): one input ``images`` float32 (B, 3, H, W) RGB/255,
letterboxed; two outputs, ``boxes`` (B, 4, A) cx, cy, w, h in letterboxed input pixels and ``scores``
(B, nc, A) sigmoid class probabilities. They are computed separately by :class:`SplitDetect` (the Detect
head's own ``forward_head`` + ``_get_decode_boxes``, never concatenated), so no INT8 quantizer can put box
pixels (0..640) and probabilities (0..1) under one scale.

Export goes through ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``, as ultralytics does)
on a fused copy of the ultralytics ``DetectionModel`` whose Detect head is in export mode, then onnxslim.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.errors import StageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

OUTPUT_NAMES = ("boxes", "scores")
INPUT_NAME = "images"


@dataclass(frozen=True)
class ExportSpec:
    """How to export: input size (h, w), opset, dynamic batch, onnxslim."""

    imgsz: tuple[int, int]
    opset: int = 17
    dynamic_batch: bool = False
    simplify: bool = True

    def __post_init__(self) -> None:
        if self.opset < 17:
            raise StageError(f"export opset {self.opset}: expected >= 17 (export.opset)")
        if min(self.imgsz) < 32 or any(int(v) % 32 for v in self.imgsz):
            raise StageError(f"export imgsz {list(self.imgsz)}: expected multiples of the stride 32")


def load_detection_model(weights: Path) -> Any:
    """A verified ``.pt`` -> ultralytics ``DetectionModel`` (float32, eval, CPU, not fused).

    The caller must have verified the file's checksum: this unpickles it.
    """
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    model, _ = load_checkpoint(str(weights), device="cpu", fuse=False)
    if not isinstance(model, DetectionModel):
        raise StageError(f"{weights}: holds a {type(model).__name__}, expected an ultralytics DetectionModel")
    return model.float().eval()


def class_names(model: Any) -> list[str]:
    """The model's class names in index order (ultralytics keeps {index: name})."""
    names = model.names
    if isinstance(names, dict):
        return [str(names[i]) for i in range(len(names))]
    return [str(n) for n in names]


def _split_detect_class() -> type:
    import torch

    class SplitDetect(torch.nn.Module):
        """Wraps a Detect head: returns ``(boxes (B,4,A), scores (B,nc,A))`` instead of their concatenation."""

        def __init__(self, detect: torch.nn.Module) -> None:
            super().__init__()
            if getattr(detect, "end2end", False):
                raise StageError("NMS-free (end2end) Detect heads are not supported; expected a YOLOv8 head")
            self.detect = detect
            self.f, self.i, self.type = detect.f, detect.i, "SplitDetect"  # what DetectionModel's loop reads

        def forward(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            d = self.detect
            preds = d.forward_head(x, **d.one2many)
            return d._get_decode_boxes(preds), preds["scores"].sigmoid()

    return SplitDetect


def export_module(model: Any) -> torch.nn.Module:
    """A fused copy of ``model`` whose forward returns ``(boxes, scores)`` per the contract."""
    from ultralytics.nn.modules.block import C2f
    from ultralytics.nn.modules.head import Detect

    fused = copy.deepcopy(model).float().eval()
    for p in fused.parameters():
        p.requires_grad = False
    fused = fused.fuse(verbose=False)
    head = fused.model[-1]
    if not isinstance(head, Detect):
        raise StageError(f"the model's last layer is a {type(head).__name__}, expected an ultralytics Detect head")
    head.export, head.format, head.dynamic, head.shape = True, "onnx", False, None
    fused.model[-1] = _split_detect_class()(head)
    for m in fused.modules():  # one Split instead of two Slices per C2f, as ultralytics' exporter does: a single
        if isinstance(m, C2f):  # INT8 quantizer before the split, not one per slice (fewer FakeQuantize/QDQ ops)
            m.forward = m.forward_split
    return fused


def export_onnx(model: Any, out: Path, spec: ExportSpec) -> Path:
    """Export ``model`` (a DetectionModel) to ``out`` in the contract; returns ``out``."""
    import onnx
    import torch

    from deploy.metadata import contract_props

    module = export_module(model)
    dummy = torch.zeros(1, 3, *spec.imgsz)
    with torch.no_grad():
        module(dummy)  # builds the anchors for this input size
    axes = {k: {0: "batch"} for k in (INPUT_NAME, *OUTPUT_NAMES)} if spec.dynamic_batch else None
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice and tracer notes
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (dummy,),
            str(out),
            opset_version=spec.opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(out))
    if spec.simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    stride = int(max(model.stride.tolist()))
    del proto.metadata_props[:]
    for key, value in contract_props(class_names(model), spec.imgsz, stride).items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.ir_version = min(proto.ir_version, 10)  # what onnxruntime 1.18+ reads
    proto.producer_name, proto.producer_version = "edgekd", _version()
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def model_stats(model: Any, imgsz: tuple[int, int]) -> dict[str, float | int]:
    """{"params": parameter count, "gflops": GFLOPs at ``imgsz`` (ultralytics' thop-based count; 0.0 if unknown)}."""
    from ultralytics.utils.torch_utils import get_flops

    return {
        "params": int(sum(p.numel() for p in model.parameters())),
        "gflops": round(float(get_flops(model, list(imgsz))), 3),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgekd")
    except PackageNotFoundError:  # pragma: no cover - the package is installed editable
        return "unknown"
