"""Letterbox preprocessing, identical to ultralytics' ``LetterBox(auto=False, center=True)``.

A BGR uint8 image (H0, W0, 3) is resized keeping its aspect ratio (``cv2.INTER_LINEAR``),
padded with a constant (114) to the model's input size (H, W), converted to RGB and
scaled to [0, 1] as a float32 (1, 3, H, W) tensor. The returned :class:`LetterboxMeta`
maps boxes from the letterboxed input back to original-image pixels, exactly like
ultralytics' ``scale_boxes`` (per-axis gains from the rounded resized size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import NoReturn

import cv2
import numpy as np

from deploy.errors import InputError


@dataclass(frozen=True)
class PreprocessSpec:
    """How a model expects its input (the ONNX ``preprocess`` metadata of the export contract)."""

    letterbox: bool = True
    pad_value: int = 114
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    layout: str = "NCHW"
    center: bool = True

    def __post_init__(self) -> None:
        for key in ("letterbox", "center"):
            if not isinstance(getattr(self, key), (bool, np.bool_)):
                _bad(key, getattr(self, key), "true or false (a JSON boolean, not a string)")
        if not self.letterbox:
            raise InputError("preprocess metadata: letterbox=false is not supported; expected letterbox=true")
        if not isinstance(self.channel_order, str) or self.channel_order not in ("RGB", "BGR"):
            _bad("channel_order", self.channel_order, "'RGB' or 'BGR'")
        if not isinstance(self.layout, str) or self.layout != "NCHW":
            _bad("layout", self.layout, "'NCHW'")
        if not _is_integer(self.pad_value) or not 0 <= self.pad_value <= 255:
            _bad("pad_value", self.pad_value, "an integer in 0..255 (114 for ultralytics models)")
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, Real) or not math.isfinite(scale) or scale <= 0:
            _bad("scale", scale, "a positive number (1/255 = 0.00392156862745098 for ultralytics models)")


def _is_integer(value: object) -> bool:
    """An int, or a float with an integral value (JSON 114.0); never a bool or a string."""
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, Integral) or (isinstance(value, (float, np.floating)) and float(value).is_integer())


def _bad(key: str, value: object, expected: str) -> NoReturn:
    raise InputError(f"preprocess metadata: {key}={value!r} ({type(value).__name__}), expected {expected}")


DEFAULT_PREPROCESS = PreprocessSpec()


@dataclass(frozen=True)
class LetterboxMeta:
    """Geometry of one letterbox: enough to map input-pixel boxes back to the original image.

    Attributes:
        orig_shape: (H0, W0) of the original image.
        input_shape: (H, W) of the letterboxed model input.
        new_unpad: (h, w) of the resized image before padding.
        pad: (left, top) padding in input pixels.
    """

    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]
    new_unpad: tuple[int, int]
    pad: tuple[int, int]

    @property
    def gain(self) -> tuple[float, float]:
        """(gain_x, gain_y): resized size over original size, per axis (as ultralytics' ``scale_boxes``)."""
        return self.new_unpad[1] / self.orig_shape[1], self.new_unpad[0] / self.orig_shape[0]

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Map (N, 4) float32 xyxy boxes in input pixels to original pixels, clipped to the image. Returns a copy."""
        out = np.array(xyxy, dtype=np.float32, copy=True).reshape(-1, 4)
        gain_x, gain_y = self.gain
        out[:, [0, 2]] -= self.pad[0]
        out[:, [1, 3]] -= self.pad[1]
        out[:, [0, 2]] /= np.float32(gain_x)
        out[:, [1, 3]] /= np.float32(gain_y)
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.orig_shape[1])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.orig_shape[0])
        return out


def letterbox_geometry(orig_shape: tuple[int, int], input_shape: tuple[int, int], center: bool = True) -> LetterboxMeta:
    """The resize/pad geometry ultralytics' LetterBox(auto=False, scaleup=True) computes (same rounding)."""
    h0, w0 = int(orig_shape[0]), int(orig_shape[1])
    h, w = int(input_shape[0]), int(input_shape[1])
    if min(h0, w0, h, w) <= 0:
        raise InputError(f"letterbox: image shape {orig_shape} and input shape {input_shape} must be positive")
    r = min(h / h0, w / w0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = w - new_w, h - new_h
    if center:
        left, top = round(dw / 2 - 0.1), round(dh / 2 - 0.1)
    else:
        left, top = 0, 0
    return LetterboxMeta((h0, w0), (h, w), (new_h, new_w), (int(left), int(top)))


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 BGR image; grayscale (H, W) / (H, W, 1) and BGRA are converted."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image: got {type(image).__name__}, expected a numpy uint8 array (H, W, 3) in BGR order")
    if image.dtype != np.uint8:
        raise InputError(f"image: dtype {image.dtype}, expected uint8 (e.g. from cv2.imread)")
    if image.size == 0:
        raise InputError(f"image: empty array of shape {image.shape}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image: shape {image.shape}, expected (H, W, 3) BGR")
    return image


def letterbox(
    image: np.ndarray, input_shape: tuple[int, int], pad_value: int = 114, center: bool = True
) -> tuple[np.ndarray, LetterboxMeta]:
    """Resize + pad a BGR uint8 (H0, W0, 3) image to (H, W, 3) uint8 as ultralytics does."""
    img = _as_bgr(image)
    meta = letterbox_geometry(img.shape[:2], input_shape, center)
    new_h, new_w = meta.new_unpad
    if img.shape[:2] != (new_h, new_w):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = meta.pad
    bottom, right = meta.input_shape[0] - new_h - top, meta.input_shape[1] - new_w - left
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(int(pad_value),) * 3)
    return img, meta


def to_tensor(padded: np.ndarray, spec: PreprocessSpec = DEFAULT_PREPROCESS) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32, channel order and scale per ``spec``."""
    chw = padded.transpose(2, 0, 1)
    if spec.channel_order == "RGB":
        chw = chw[::-1]
    tensor = np.ascontiguousarray(chw, dtype=np.float32)[None]
    if spec.scale == 1.0 / 255.0:
        tensor /= np.float32(255.0)  # the division ultralytics does, bit for bit
    else:
        tensor *= np.float32(spec.scale)
    return tensor


def preprocess(
    image: np.ndarray, input_shape: tuple[int, int], spec: PreprocessSpec = DEFAULT_PREPROCESS
) -> tuple[np.ndarray, LetterboxMeta]:
    """BGR uint8 (H0, W0, 3) -> ((1, 3, H, W) float32 tensor, LetterboxMeta)."""
    padded, meta = letterbox(image, input_shape, spec.pad_value, spec.center)
    return to_tensor(padded, spec), meta


def preprocess_batch(
    images: Sequence[np.ndarray], input_shape: tuple[int, int], spec: PreprocessSpec = DEFAULT_PREPROCESS
) -> tuple[np.ndarray, list[LetterboxMeta]]:
    """A list of BGR images -> ((B, 3, H, W) float32, [LetterboxMeta] * B). Empty list -> (0, 3, H, W)."""
    if len(images) == 0:
        return np.zeros((0, 3, *input_shape), np.float32), []
    pairs = [preprocess(img, input_shape, spec) for img in images]
    return np.concatenate([t for t, _ in pairs], axis=0), [m for _, m in pairs]


def decode_jpeg(source: bytes | bytearray | memoryview | str | Path) -> np.ndarray:
    """Decode JPEG/PNG bytes, or a file path, to a BGR uint8 (H, W, 3) image.

    Raises:
        InputError: the file is missing/unreadable or its bytes are not a decodable image.
    """
    if isinstance(source, (str, Path)):
        what = f"image file {str(source)!r}"
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise InputError(f"{what} does not exist") from None
        except OSError as exc:
            raise InputError(f"{what} cannot be read: {exc.strerror}") from None
    else:
        what, data = "image bytes", bytes(source)
    if not data:
        raise InputError(f"{what}: empty, expected JPEG/PNG data")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{what}: not a decodable JPEG/PNG ({len(data)} bytes); the file is corrupt or not an image")
    return img
