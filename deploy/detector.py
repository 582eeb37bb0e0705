"""The runtime-agnostic detector: preprocess -> backend inference -> decode + NMS.

>>> det = Detector("runs/x/export/student.onnx", conf=0.25)      # doctest: +SKIP
>>> dets = det.predict(cv2.imread("frame.jpg"))                   # doctest: +SKIP

The three steps are separate methods (``preprocess``, ``infer``, ``postprocess``) so the
latency harness can time each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.backends import Backend, load_backend
from deploy.detections import Detections
from deploy.errors import InputError
from deploy.metadata import ModelMeta, resolve_metadata
from deploy.postprocess import NmsParams, postprocess
from deploy.preprocess import LetterboxMeta, decode_jpeg, preprocess, preprocess_batch


class Detector:
    """An exported detector on one runtime.

    Args:
        path: .onnx (ONNX Runtime, or OpenVINO with ``backend="openvino"``), .xml (OpenVINO IR),
            .engine/.plan (TensorRT).
        backend: registry name; default from the file extension.
        conf: confidence threshold (a detection needs score > conf).
        iou: NMS IoU threshold (class-aware).
        max_det: detections kept per image.
        threads: runtime CPU threads (None: the runtime's default).
        precision: requested precision ("fp32", "fp16", "bf16"); None: the model's own (f32 hint on OpenVINO).
        **backend_options: passed to the backend loader (``providers=`` for onnxruntime, ``device=`` for openvino).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        backend: str | None = None,
        conf: float = 0.001,
        iou: float = 0.7,
        max_det: int = 300,
        threads: int | None = None,
        precision: str | None = None,
        **backend_options: Any,
    ) -> None:
        self.path = Path(path)
        self.params = NmsParams(conf=conf, iou=iou, max_det=max_det)
        self.backend: Backend = load_backend(
            self.path, backend, threads=threads, precision=precision, **backend_options
        )
        self.meta: ModelMeta = resolve_metadata(
            self.path, self.backend.metadata, self.backend.input_shape, self.backend.output_names
        )
        static_hw = tuple(self.backend.input_shape[2:4])
        if len(self.backend.input_shape) != 4 or (None not in static_hw and static_hw != self.meta.imgsz):
            raise InputError(
                f"model {str(self.path)!r}: input shape {self.backend.input_shape} disagrees with metadata "
                f"imgsz {list(self.meta.imgsz)}; expected (B, 3, {self.meta.imgsz[0]}, {self.meta.imgsz[1]})"
            )

    # ------------------------------------------------------------------ properties
    @property
    def names(self) -> list[str]:
        return list(self.meta.names)

    @property
    def imgsz(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return self.meta.imgsz

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def executed_precision(self) -> str:
        return self.backend.executed_precision

    @property
    def conf(self) -> float:
        return self.params.conf

    @property
    def iou(self) -> float:
        return self.params.iou

    @property
    def max_det(self) -> int:
        return self.params.max_det

    def __repr__(self) -> str:
        return (
            f"Detector({self.path.name!r}, backend={self.backend_name!r}, precision={self.executed_precision!r}, "
            f"imgsz={list(self.imgsz)}, nc={len(self.names)})"
        )

    # ------------------------------------------------------------------ the three steps
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxMeta]:
        """BGR uint8 (H0, W0, 3) -> ((1, 3, H, W) float32 tensor, LetterboxMeta)."""
        return preprocess(image, self.imgsz, self.meta.preprocess)

    def preprocess_batch(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxMeta]]:
        """A list of BGR images -> ((B, 3, H, W) float32, [LetterboxMeta] * B)."""
        return preprocess_batch(images, self.imgsz, self.meta.preprocess)

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run the backend on a (B, 3, H, W) tensor -> raw outputs by name (batch along axis 0).

        A model built for a fixed batch size runs in chunks of that size (the last one zero-padded).
        """
        fixed = self.backend.fixed_batch
        n = int(np.shape(tensor)[0]) if np.ndim(tensor) == 4 else -1
        if n < 1:
            raise InputError(f"infer: tensor of shape {np.shape(tensor)}, expected (B, 3, H, W) with B >= 1")
        if fixed is None or n == fixed:
            return self.backend.run(tensor)
        chunks = []
        for start in range(0, n, fixed):
            part = tensor[start : start + fixed]
            if part.shape[0] < fixed:
                pad = np.zeros((fixed - part.shape[0], *part.shape[1:]), part.dtype)
                part = np.concatenate([part, pad], axis=0)
            chunks.append(self.backend.run(part))
        return {k: np.concatenate([c[k] for c in chunks], axis=0)[:n] for k in chunks[0]}

    def postprocess(
        self, outputs: dict[str, np.ndarray], metas: Sequence[LetterboxMeta], params: NmsParams | None = None
    ) -> list[Detections]:
        """Raw outputs + one LetterboxMeta per image -> one Detections per image (original pixels)."""
        return postprocess(outputs, metas, len(self.meta.names), params or self.params)

    # ------------------------------------------------------------------ conveniences
    def predict(self, image: np.ndarray) -> Detections:
        """One BGR uint8 image -> Detections in its pixel coordinates."""
        tensor, meta = self.preprocess(image)
        return self.postprocess(self.infer(tensor), [meta])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Several BGR images (any sizes) -> one Detections each. An empty list gives []."""
        if len(images) == 0:
            return []
        tensor, metas = self.preprocess_batch(images)
        return self.postprocess(self.infer(tensor), metas)

    def predict_file(self, path: str | Path) -> Detections:
        """Decode an image file (JPEG/PNG) and predict; a missing or corrupt file raises InputError naming it."""
        return self.predict(decode_jpeg(Path(path)))
