"""Typed detections: one dataclass of parallel numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deploy.errors import EdgeKDError


class DetectionsShapeError(EdgeKDError, ValueError):
    """Arrays passed to :class:`Detections` do not have the expected shapes."""


@dataclass(frozen=True)
class Detections:
    """Detections of one image, in original-image pixel coordinates.

    Attributes:
        xyxy: (N, 4) float32 boxes ``x1, y1, x2, y2``.
        confidence: (N,) float32 scores in [0, 1].
        class_id: (N,) int64 class indices.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cls = np.asarray(self.class_id).reshape(-1)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise DetectionsShapeError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        if conf.shape != (n,):
            raise DetectionsShapeError(f"confidence must have shape ({n},) to match xyxy, got {conf.shape}")
        if cls.shape != (n,):
            raise DetectionsShapeError(f"class_id must have shape ({n},) to match xyxy, got {cls.shape}")
        if n and not np.issubdtype(cls.dtype, np.integer):
            if not np.all(np.equal(np.mod(cls, 1), 0)):
                raise DetectionsShapeError("class_id must hold integers, got non-integral values")
        for key, value in self.data.items():
            if np.shape(value)[:1] != (n,):
                raise DetectionsShapeError(f"data[{key!r}] must have leading dimension {n}, got {np.shape(value)}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls.astype(np.int64))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        """Select detections by boolean mask, integer indices or slice."""
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            {k: v[index] for k, v in self.data.items()},
        )

    @property
    def xywh(self) -> np.ndarray:
        """(N, 4) boxes as ``x, y, w, h`` (COCO convention)."""
        out = self.xyxy.copy()
        out[:, 2:] -= out[:, :2]
        return out

    def to_coco(self, image_id: int, category_ids: list[int] | None = None) -> list[dict]:
        """Convert to COCO result dicts (``bbox`` in xywh, rounded to 1e-3 px)."""
        cats = category_ids
        return [
            {
                "image_id": int(image_id),
                "category_id": int(cats[c] if cats is not None else c),
                "bbox": [round(float(v), 3) for v in box],
                "score": round(float(s), 6),
            }
            for box, s, c in zip(self.xywh, self.confidence, self.class_id, strict=True)
        ]
