"""Numerical parity of an exported ONNX model with the PyTorch model it came from, on real frames.

The reference is the original (unfused) ultralytics model in inference mode, whose output is the
concatenation (B, 4 + nc, A); the ONNX model runs in ONNX Runtime (CPU, all graph optimisations).
Both see the same letterboxed tensors (``deploy.preprocess``). Errors:

* ``scores_max_abs``: max |p_onnx - p_torch| over every class probability;
* ``boxes_max_abs``: max |b_onnx - b_torch| over cx, cy, w, h in input pixels, and ``boxes_max_rel`` the same
  divided by the input size (max(h, w)), so one tolerance applies to both outputs.

The export passes when ``max(scores_max_abs, boxes_max_rel) <= atol``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import DataError, StageError
from deploy.preprocess import decode_jpeg, preprocess


@dataclass(frozen=True)
class Parity:
    """Parity numbers of one export."""

    frames: int
    scores_max_abs: float
    boxes_max_abs: float
    boxes_max_rel: float
    atol: float

    @property
    def max_error(self) -> float:
        return max(self.scores_max_abs, self.boxes_max_rel)

    @property
    def passed(self) -> bool:
        return self.max_error <= self.atol

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_error": self.max_error, "passed": self.passed}


def val_images(data_dir: Path, n: int) -> list[Path]:
    """The first ``n`` validation images of the data stage's dataset, sorted by path.

    From ``annotations/val_coco.json`` (``file_name`` relative to ``data_dir``, or absolute for a ``yolo`` source
    whose images stay where the user keeps them), else the files in ``images/val``.
    """
    listing = data_dir / "annotations" / "val_coco.json"
    if listing.is_file():
        from deploy.textio import read_json

        gt = read_json(listing, "validation annotations", "rerun the data stage with --force", DataError)
        images = sorted((data_dir / str(im["file_name"]) for im in gt.get("images", [])), key=lambda p: p.as_posix())
        missing = [p for p in images[:n] if not p.is_file()]
        if missing:
            raise DataError(f"{listing}: lists {missing[0]}, which does not exist; rerun the data stage with --force")
        where = listing
    else:
        where = data_dir / "images" / "val"
        images = sorted(p for p in where.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise DataError(f"{where}: no validation images (*.jpg, *.png) for the export parity check")
    return images[:n]


def frames_tensor(images: Sequence[Path], imgsz: tuple[int, int]) -> np.ndarray:
    """Image files -> (N, 3, H, W) float32 letterboxed tensors (RGB/255)."""
    return np.concatenate([preprocess(decode_jpeg(p), imgsz)[0] for p in images], axis=0)


def torch_outputs(model: Any, tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Original PyTorch model on (N, 3, H, W) -> (boxes (N, 4, A), scores (N, nc, A)), one frame at a time."""
    import torch

    boxes, scores = [], []
    with torch.no_grad():
        for t in tensors:
            out = model(torch.from_numpy(t[None]))
            y = (out[0] if isinstance(out, (tuple, list)) else out).numpy()
            boxes.append(y[:, :4])
            scores.append(y[:, 4:])
    return np.concatenate(boxes), np.concatenate(scores)


def onnx_outputs(onnx_path: Path, tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ONNX Runtime on (N, 3, H, W) -> (boxes, scores), one frame at a time (works for static batch 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    boxes, scores = [], []
    for t in tensors:
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": t[None]}), strict=True))
        boxes.append(out["boxes"])
        scores.append(out["scores"])
    return np.concatenate(boxes), np.concatenate(scores)


def check_parity(model: Any, onnx_path: Path, tensors: np.ndarray, atol: float) -> Parity:
    """Compare ``model`` (PyTorch) with its ONNX export on ``tensors`` (N, 3, H, W)."""
    tb, ts = torch_outputs(model, tensors)
    ob, os_ = onnx_outputs(onnx_path, tensors)
    if tb.shape != ob.shape or ts.shape != os_.shape:
        raise StageError(
            f"{onnx_path.name}: output shapes boxes {ob.shape}, scores {os_.shape} differ from PyTorch's "
            f"{tb.shape}, {ts.shape}"
        )
    boxes_abs = float(np.abs(tb - ob).max()) if tb.size else 0.0
    size = float(max(tensors.shape[2:]))
    return Parity(
        frames=int(tensors.shape[0]),
        scores_max_abs=float(np.abs(ts - os_).max()) if ts.size else 0.0,
        boxes_max_abs=boxes_abs,
        boxes_max_rel=boxes_abs / size,
        atol=float(atol),
    )
