"""Calibration frames for INT8: the manifest's images, letterboxed exactly as at inference (``deploy.preprocess``).

:class:`CalibrationReader` is an ONNX Runtime ``CalibrationDataReader`` (a virtual subclass: ORT
checks only for ``get_next``), also iterable for NNCF datasets and the sensitivity analysis. It decodes one
image at a time, so hundreds of frames never sit in memory. Call ``rewind()`` before reusing it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from deploy.errors import InputError
from deploy.preprocess import PreprocessSpec, decode_jpeg, preprocess


def load_calibration(manifest: Path) -> list[Path]:
    """The image paths of a calibration manifest (``edgekd data calib``), checksums verified.

    Raises:
        InputError: the manifest is missing or malformed. IntegrityError: an image's sha256 differs.
    """
    from pipeline.data.calib import load_manifest

    return list(load_manifest(Path(manifest)))


def input_spec(model_path: Path) -> tuple[str, tuple[int, int]]:
    """(input name, (H, W)) of an ONNX model with a static spatial size."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InputError(f"{model_path}: expected one image input, found {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    hw = tuple(int(d.dim_value) for d in dims[2:4])
    if len(dims) != 4 or min(hw, default=0) <= 0:
        raise InputError(f"{model_path}: input {inputs[0].name!r} needs a static (B, 3, H, W) shape, got {dims}")
    return inputs[0].name, (hw[0], hw[1])


class CalibrationReader:
    """Letterboxed (1, 3, H, W) float32 tensors of calibration images, one per ``get_next``.

    Args:
        images: image files.
        input_name: the model's input name (the dict key of every sample).
        imgsz: (H, W) of the model input.
        spec: preprocessing (letterbox, pad 114, RGB/255 by default).
    """

    def __init__(
        self, images: Sequence[Path], input_name: str, imgsz: tuple[int, int], spec: PreprocessSpec | None = None
    ) -> None:
        self.images = [Path(p) for p in images]
        self.input_name = input_name
        self.imgsz = (int(imgsz[0]), int(imgsz[1]))
        self.spec = spec or PreprocessSpec()
        self._start, self._end = 0, len(self.images)
        self._pos = 0

    @classmethod
    def for_model(cls, model_path: Path, images: Sequence[Path]) -> CalibrationReader:
        name, hw = input_spec(model_path)
        return cls(images, name, hw)

    def __len__(self) -> int:
        return len(self.images)

    def tensor(self, index: int) -> np.ndarray:
        """The (1, 3, H, W) float32 tensor of image ``index``."""
        return preprocess(decode_jpeg(self.images[index]), self.imgsz, self.spec)[0]

    # ONNX Runtime's CalibrationDataReader protocol ------------------------------------------
    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        sample = {self.input_name: self.tensor(self._pos)}
        self._pos += 1
        return sample

    def rewind(self) -> None:
        self._pos = self._start

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict to images [start, end) (ONNX Runtime's strided calibration)."""
        self._start, self._end = max(0, start_index), min(len(self.images), end_index)
        self._pos = self._start

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self._start, self._end):
            yield {self.input_name: self.tensor(i)}

    def subset(self, n: int) -> CalibrationReader:
        """A reader over the first ``n`` images (same input and preprocessing)."""
        return CalibrationReader(self.images[:n], self.input_name, self.imgsz, self.spec)
