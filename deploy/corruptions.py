"""Deterministic image corruptions for robustness evaluation: night, fog, rain, blur, noise, jpeg.

``apply(kind, img_bgr, seed, severity)`` is pure: it never modifies its input, and the same (kind, image, seed,
severity) always gives the same bytes (all randomness comes from ``numpy.random.default_rng(seed)``; OpenCV calls
are deterministic on the CPU). Severity runs from 1 (mild) to 5 (strong). Sizes in pixels (rain streaks, blur
length) scale with the image so that a severity means the same at 1280x720 and at 320x180.

numpy + OpenCV only (runs on the device side).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from deploy.errors import InputError

SEVERITIES = (1, 2, 3, 4, 5)


class Corruption(str, Enum):
    NIGHT = "night"
    FOG = "fog"
    RAIN = "rain"
    BLUR = "blur"
    NOISE = "noise"
    JPEG = "jpeg"


KINDS: tuple[str, ...] = tuple(k.value for k in Corruption)


def _scale(img: np.ndarray) -> float:
    """Pixel sizes are given for a 1280-pixel-wide frame; this maps them to ``img``."""
    return max(img.shape[:2]) / 1280.0


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _night(img: np.ndarray, rng: np.random.Generator, s: int) -> np.ndarray:
    """Darker (gamma + gain), bluish, with sensor noise that is stronger relative to the dim signal."""
    gamma = (1.3, 1.6, 1.9, 2.2, 2.5)[s - 1]
    gain = (0.55, 0.45, 0.35, 0.27, 0.2)[s - 1]
    sigma = (2.0, 3.0, 4.0, 5.0, 6.0)[s - 1]
    f = (img.astype(np.float32) / 255.0) ** gamma * gain * 255.0
    f *= np.array([1.12, 1.0, 0.85], dtype=np.float32)  # BGR: cooler light
    f += rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    return _to_u8(f)


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    """(h, w) float32 smooth random field in [0, 1] (bicubic upsampling of a coarse random grid)."""
    coarse = rng.random((cells, cells), dtype=np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / (hi - lo) if hi > lo else np.zeros((h, w), np.float32)


def _fog(img: np.ndarray, rng: np.random.Generator, s: int) -> np.ndarray:
    """Blend towards a bright grey haze, denser towards the horizon (top), patchy, slightly blurred."""
    h, w = img.shape[:2]
    density = (0.3, 0.45, 0.6, 0.72, 0.82)[s - 1]
    vertical = np.linspace(1.0, 0.55, h, dtype=np.float32)[:, None]
    t = density * vertical * (0.7 + 0.3 * _smooth_field(rng, h, w))
    k = 2 * max(1, int(round(2 * s * _scale(img)))) + 1
    base: np.ndarray = cv2.GaussianBlur(img.astype(np.float32), (k, k), 0)
    return _to_u8(base * (1.0 - t[..., None]) + 215.0 * t[..., None])


def _rain(img: np.ndarray, rng: np.random.Generator, s: int) -> np.ndarray:
    """Bright, slanted, motion-blurred streaks over a slightly darkened, softened frame."""
    h, w = img.shape[:2]
    sc = _scale(img)
    n = int(h * w / (2400, 1500, 1000, 700, 450)[s - 1])
    length = max(2.0, (10, 14, 18, 22, 28)[s - 1] * sc)
    angle = np.deg2rad(rng.uniform(-20.0, 20.0))
    x = rng.uniform(0, w, n)
    y = rng.uniform(0, h, n)
    jitter = rng.normal(0.0, np.deg2rad(3.0), n)
    dx, dy = np.sin(angle + jitter) * length, np.cos(angle + jitter) * length
    mask: np.ndarray = np.zeros((h, w), np.float32)
    thickness = max(1, int(round(sc)))
    for x0, y0, ddx, ddy in zip(x, y, dx, dy, strict=True):
        cv2.line(mask, (int(x0), int(y0)), (int(x0 + ddx), int(y0 + ddy)), 1.0, thickness, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (3, 3), 0)
    alpha = (0.35, 0.45, 0.55, 0.6, 0.65)[s - 1]
    base = cv2.GaussianBlur(img.astype(np.float32), (3, 3), 0) * (0.92 - 0.03 * s)
    return _to_u8(base * (1.0 - alpha * mask[..., None]) + 210.0 * alpha * mask[..., None])


def _blur(img: np.ndarray, rng: np.random.Generator, s: int) -> np.ndarray:
    """Linear motion blur of random direction."""
    k = max(2 * s + 1, int(round((7, 13, 21, 29, 39)[s - 1] * _scale(img)))) | 1  # grows with severity at any size
    angle = rng.uniform(0.0, np.pi)
    kernel = np.zeros((k, k), np.float32)
    c = (k - 1) / 2.0
    r = c
    p0 = (int(round(c - r * np.cos(angle))), int(round(c - r * np.sin(angle))))
    p1 = (int(round(c + r * np.cos(angle))), int(round(c + r * np.sin(angle))))
    cv2.line(kernel, p0, p1, 1.0, 1)
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def _noise(img: np.ndarray, rng: np.random.Generator, s: int) -> np.ndarray:
    """Additive Gaussian noise, per pixel and channel."""
    sigma = (0.04, 0.06, 0.08, 0.1, 0.13)[s - 1] * 255.0
    return _to_u8(img.astype(np.float32) + rng.normal(0.0, sigma, size=img.shape).astype(np.float32))


def _jpeg(img: np.ndarray, rng: np.random.Generator, s: int) -> np.ndarray:
    """JPEG re-compression at a low quality."""
    quality = (60, 40, 25, 15, 8)[s - 1]
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if out is None:  # pragma: no cover - OpenCV always round-trips a valid uint8 image
        raise InputError("jpeg corruption: OpenCV could not encode/decode the image")
    return np.asarray(out)


_FUNCS: dict[str, Callable[[np.ndarray, np.random.Generator, int], np.ndarray]] = {
    "night": _night,
    "fog": _fog,
    "rain": _rain,
    "blur": _blur,
    "noise": _noise,
    "jpeg": _jpeg,
}


def apply(kind: str | Corruption, img_bgr: np.ndarray, seed: int = 0, severity: int = 3) -> np.ndarray:
    """A corrupted copy of a BGR uint8 (H, W, 3) image -> (H, W, 3) uint8; same arguments -> same bytes."""
    name = kind.value if isinstance(kind, Corruption) else kind
    if name not in _FUNCS:
        raise InputError(f"corruption: got {kind!r}, expected one of {', '.join(KINDS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise InputError(f"corruption severity: got {severity!r}, expected an integer from 1 to 5")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"corruption seed: got {seed!r}, expected a non-negative integer")
    img = np.asarray(img_bgr)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
        raise InputError(f"corruption: image has dtype {img.dtype} and shape {img.shape}, expected uint8 (H, W, 3) BGR")
    out = _FUNCS[name](np.ascontiguousarray(img), np.random.default_rng(int(seed)), int(severity))
    return np.ascontiguousarray(out, dtype=np.uint8)


def image_seed(seed: int, image_id: int) -> int:
    """A per-image seed derived from a run seed and a (non-negative) image id."""
    return int(np.random.SeedSequence([int(seed), int(image_id)]).generate_state(1)[0])


@dataclass(frozen=True)
class CorruptionSpec:
    """A corruption to apply to every image of an evaluation: ``spec(img, image_id)`` -> corrupted copy."""

    kind: str
    severity: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"corruption: got {self.kind!r}, expected one of {', '.join(KINDS)}")
        if self.severity not in SEVERITIES:
            raise InputError(f"corruption severity: got {self.severity!r}, expected an integer from 1 to 5")

    def __call__(self, img_bgr: np.ndarray, image_id: int = 0) -> np.ndarray:
        return apply(self.kind, img_bgr, image_seed(self.seed, abs(int(image_id))), self.severity)
