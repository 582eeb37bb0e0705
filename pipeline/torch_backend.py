"""A :class:`deploy.backends.Backend` over ultralytics ``.pt`` weights on PyTorch (build side: imports torch).

``edgekd bench --backend torch`` times PyTorch with exactly the Detector's preprocessing
(letterbox) and postprocessing (decode + NMS): the model returns ultralytics' fused
``output0`` (B, 4 + nc, A), which :mod:`deploy.postprocess` already reads. A ``.pt`` is a
pickle, so the file is checked by :func:`pipeline.train.weights.resolve_weights` (registry
checksum, or the user's explicit trust) before anything unpickles it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy.backends import Backend, Precision
from deploy.detector import Detector
from deploy.errors import InputError
from deploy.metadata import FORMAT_ULTRALYTICS, resolve_metadata
from deploy.postprocess import NmsParams

NAME = "torch"
EXTENSIONS = (".pt", ".pth")
OUTPUT = "output0"


class TorchBackend(Backend):
    """An ultralytics ``DetectionModel`` (fused, eval, float32, CPU) behind the Backend interface.

    Args:
        path: the weights file; it must already be verified (see :func:`load`).
        imgsz: (h, w) input size to time at (None: the size the model was trained at, else 640).
        threads: ``torch.set_num_threads`` (process-wide; None leaves torch's default).
        precision: only "fp32" (or None) is supported on the CPU.
    """

    name = NAME

    def __init__(
        self,
        path: Path,
        *,
        imgsz: tuple[int, int] | None = None,
        threads: int | None = None,
        precision: str | None = None,
    ) -> None:
        import torch

        from pipeline.export import class_names, load_detection_model

        if precision not in (None, Precision.FP32.value):
            raise InputError(f"backend 'torch' runs fp32 on the CPU, not {precision!r}; drop --precision")
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.path = Path(path)
        self.torch = torch
        self.model = load_detection_model(self.path).fuse(verbose=False).eval()
        h, w = imgsz or _trained_imgsz(self.model)
        stride = int(max(self.model.stride.tolist()))
        if h % stride or w % stride:
            raise InputError(f"--imgsz {h}x{w}: expected multiples of the model stride {stride}")
        names = class_names(self.model)
        self.metadata = {
            "names": {str(i): n for i, n in enumerate(names)},
            "imgsz": [h, w],
            "stride": stride,
            "format": FORMAT_ULTRALYTICS,
        }
        self.input_name = "images"
        self.input_shape = (None, 3, h, w)
        self.input_dtype = np.dtype(np.float32)
        self.output_names = [OUTPUT]
        n_conv = sum(1 for m in self.model.modules() if isinstance(m, torch.nn.Conv2d))
        self.precision_detail = {Precision.FP32.value: n_conv}
        self.executed_precision = Precision.FP32.value

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        x = self.torch.from_numpy(self._cast_input(tensor))
        with self.torch.inference_mode():
            out = self.model(x)
        y = out[0] if isinstance(out, (tuple, list)) else out  # eval mode: (decoded, raw dict)
        return {OUTPUT: y.float().numpy()}


def _trained_imgsz(model: Any) -> tuple[int, int]:
    args = getattr(model, "args", None)
    size = args.get("imgsz") if isinstance(args, dict) else getattr(args, "imgsz", None)
    if isinstance(size, int) and size > 0:
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    return 640, 640


def verified_weights(path: str | Path, *, trust: bool) -> Path:
    """The weights file after the trusted-weights check (registry checksum, or ``trust``); raises otherwise."""
    from pipeline.train.weights import resolve_weights

    path = Path(path)
    if path.suffix.lower() not in EXTENSIONS:
        raise InputError(f"model {str(path)!r}: backend 'torch' loads ultralytics {'/'.join(EXTENSIONS)} weights")
    if not path.is_file():
        raise InputError(f"model {str(path)!r} does not exist (or is not a file)")
    resolved = resolve_weights(str(path), trust=trust, key="--model", trust_key="--trust-weights")
    if resolved.path is None:  # only a model .yaml resolves without a file, and the suffix check excludes it
        raise InputError(f"model {str(path)!r}: expected a weights file")
    return resolved.path


def load(
    path: str | Path,
    *,
    trust: bool = False,
    imgsz: tuple[int, int] | None = None,
    threads: int | None = None,
    precision: str | None = None,
) -> TorchBackend:
    """Verify ``path`` (see :func:`verified_weights`) and load it on PyTorch."""
    return TorchBackend(verified_weights(path, trust=trust), imgsz=imgsz, threads=threads, precision=precision)


class TorchDetector(Detector):
    """The Detector with a :class:`TorchBackend`: same preprocess, postprocess and NMS as every runtime."""

    def __init__(
        self,
        path: str | Path,
        *,
        trust: bool = False,
        imgsz: tuple[int, int] | None = None,
        conf: float = 0.001,
        iou: float = 0.7,
        max_det: int = 300,
        threads: int | None = None,
        precision: str | None = None,
        backend_impl: TorchBackend | None = None,
    ) -> None:
        self.path = Path(path)
        self.params = NmsParams(conf=conf, iou=iou, max_det=max_det)
        self.backend = backend_impl or load(self.path, trust=trust, imgsz=imgsz, threads=threads, precision=precision)
        self.meta = resolve_metadata(
            self.path, self.backend.metadata, self.backend.input_shape, self.backend.output_names
        )
