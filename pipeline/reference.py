"""PyTorch reference predictions via ultralytics (build side; imports torch/ultralytics lazily).

Used to check that an exported model on a runtime (:class:`deploy.detector.Detector`) gives the
same detections as the PyTorch model it came from. Letterboxing is forced to the full ``imgsz``
(``rect=False``) so both see identical input tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.detections import Detections
from deploy.errors import InputError


def _load(weights: str | Path | Any) -> Any:
    from ultralytics import YOLO

    if not isinstance(weights, (str, Path)):
        return weights  # an ultralytics YOLO object already
    if not Path(weights).is_file():
        raise InputError(f"reference weights {str(weights)!r} do not exist; expected a trained .pt checkpoint")
    return YOLO(str(weights))


def _to_detections(result: Any) -> Detections:
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return Detections.empty()
    return Detections(
        boxes.xyxy.cpu().numpy().astype(np.float32),
        boxes.conf.cpu().numpy().astype(np.float32),
        boxes.cls.cpu().numpy().astype(np.int64),
    )


def torch_reference(
    weights_path: str | Path | Any,
    images: Sequence[np.ndarray | str | Path],
    imgsz: int | tuple[int, int],
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    device: str = "cpu",
) -> list[Detections]:
    """Predict ``images`` (BGR uint8 arrays or file paths) with the PyTorch model -> one Detections each.

    Args:
        weights_path: an ultralytics .pt checkpoint (only load checkpoints you trust: .pt files are pickles),
            or an ``ultralytics.YOLO`` object.
        imgsz: model input size, an int or (height, width), as the exported model's.
        conf, iou, max_det: the NMS settings (class-aware NMS, ``agnostic_nms=False``).
    """
    if len(images) == 0:
        return []
    model = _load(weights_path)
    size = [int(imgsz), int(imgsz)] if isinstance(imgsz, int) else [int(imgsz[0]), int(imgsz[1])]
    out = []
    for image in images:  # one image per call: no batching differences between the two sides
        source = str(image) if isinstance(image, (str, Path)) else image
        results = model.predict(
            source,
            imgsz=size,
            conf=conf,
            iou=iou,
            max_det=max_det,
            agnostic_nms=False,
            rect=False,
            device=device,
            verbose=False,
            save=False,
        )
        out.append(_to_detections(results[0]))
    return out
