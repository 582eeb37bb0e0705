"""A painter that draws each primitive into the colour image AND an id map (who owns each pixel).

Drawing far-to-near with the current entity id lets the frame builder measure, exactly, each object's own
silhouette (pixels it covered when drawn), its tight box and how much of it nearer things hid afterwards. Light
sources are recorded, not drawn: the lighting pass (:mod:`pipeline.data.synth_conditions`) renders the visible ones.
Colours are BGR tuples (OpenCV order); coordinates are float pixels, drawn with 4 bits of sub-pixel precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SHIFT = 4
_ONE = 1 << SHIFT
Color = tuple[int, int, int]


def fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates (..., 2) -> int32 fixed point (..., 2) for OpenCV's ``shift``."""
    return np.rint(np.multiply(points, float(_ONE))).astype(np.int32)


def fixed_point(p: np.ndarray | tuple[float, float]) -> tuple[int, int]:
    """One point -> a fixed-point tuple (pure Python: cheaper than numpy for a single point)."""
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


@dataclass(frozen=True)
class Emitter:
    """A small bright light source owned by entity ``oid`` (drawn only if that pixel is still ``oid``'s)."""

    oid: int
    x: float
    y: float
    radius: float
    color: Color


@dataclass(frozen=True)
class Illuminator:
    """An elliptical pool of light cast on the scene (street lamp on the road, headlight beam)."""

    x: float
    y: float
    sigma_x: float
    sigma_y: float
    color: Color
    strength: float


@dataclass
class Workspace:
    """Frame-sized arrays reused from frame to frame: allocating megabytes per frame costs page faults.

    ``img`` (H, W, 3) uint8, ``ids`` (H, W) uint16, ``emissive`` (H, W, 3) uint8, ``bg_depth``/``depth`` (H, W)
    float32, ``f0``/``f1`` (H, W, 3) float32, ``u0``/``u1`` (H, W, 3) uint8 and ``layer`` (H, W) uint8 scratch.
    """

    width: int
    height: int

    def __post_init__(self) -> None:
        h, w = self.height, self.width
        self.img = np.zeros((h, w, 3), np.uint8)
        self.ids = np.zeros((h, w), np.uint16)
        self.emissive = np.zeros((h, w, 3), np.uint8)
        self.bg_depth = np.zeros((h, w), np.float32)
        self.depth = np.zeros((h, w), np.float32)
        self.f0 = np.zeros((h, w, 3), np.float32)
        self.f1 = np.zeros((h, w, 3), np.float32)
        self.u0 = np.zeros((h, w, 3), np.uint8)
        self.u1 = np.zeros((h, w, 3), np.uint8)
        self.layer = np.zeros((h, w), np.uint8)


@dataclass
class Canvas:
    """The image being drawn (H, W, 3) uint8, the id map (H, W) uint16 and the recorded lights.

    ``emissive`` (H, W, 3) uint8 holds glowing background surfaces (lit windows) and is only allocated for
    dusk/night frames; ``bg_depth`` (H, W) float32 holds background depth in metres and only exists for fog.
    """

    img: np.ndarray
    ids: np.ndarray
    work: Workspace
    emissive: np.ndarray | None = None
    bg_depth: np.ndarray | None = None
    oid: int = 0
    emitters: list[Emitter] = field(default_factory=list)
    illuminators: list[Illuminator] = field(default_factory=list)
    _ext: list[float] = field(default_factory=lambda: [np.inf, np.inf, -np.inf, -np.inf])

    @classmethod
    def blank(cls, width: int, height: int, lights: bool, depth: bool, work: Workspace | None = None) -> Canvas:
        """A cleared canvas drawing into ``work``'s arrays (a new workspace if None or of another size)."""
        if work is None or (work.width, work.height) != (width, height):
            work = Workspace(width, height)
        work.img.fill(0)
        work.ids.fill(0)
        if lights:
            work.emissive.fill(0)
        if depth:
            work.bg_depth.fill(np.inf)
        return cls(
            img=work.img,
            ids=work.ids,
            work=work,
            emissive=work.emissive if lights else None,
            bg_depth=work.bg_depth if depth else None,
        )

    def begin(self, oid: int) -> None:
        """Start drawing entity ``oid`` (0 = background): later primitives claim pixels for it."""
        self.oid = oid
        self._ext = [np.inf, np.inf, -np.inf, -np.inf]

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Unclipped (x1, y1, x2, y2) of everything drawn since :meth:`begin` (may lie outside the image)."""
        return (self._ext[0], self._ext[1], self._ext[2], self._ext[3])

    def _grow(self, points: np.ndarray, pad: float = 0.0) -> None:
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
        self._grow_box(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    def _grow_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        e = self._ext
        e[0], e[1], e[2], e[3] = min(e[0], x0), min(e[1], y0), max(e[2], x1), max(e[3], y1)

    @property
    def width(self) -> int:
        return self.img.shape[1]

    @property
    def height(self) -> int:
        return self.img.shape[0]

    # ---- primitives: colour image + id map -------------------------------------------------
    def poly(self, points: np.ndarray, color: Color) -> None:
        """A filled polygon, points (N, 2)."""
        pts = [fixed(points)]
        cv2.fillPoly(self.img, pts, color, cv2.LINE_AA, SHIFT)
        if self.oid:
            self._grow(points)
            cv2.fillPoly(self.ids, pts, self.oid, cv2.LINE_8, SHIFT)

    def polys(self, polygons: list[np.ndarray] | np.ndarray, color: Color) -> None:
        """Many filled polygons of one colour in one call, e.g. (K, 4, 2) window quads."""
        if len(polygons) == 0:
            return
        pts = list(fixed(polygons)) if isinstance(polygons, np.ndarray) else [fixed(p) for p in polygons]
        cv2.fillPoly(self.img, pts, color, cv2.LINE_AA, SHIFT)
        if self.oid:
            self._grow(np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in polygons]))
            cv2.fillPoly(self.ids, pts, self.oid, cv2.LINE_8, SHIFT)

    def line(self, p: np.ndarray, q: np.ndarray, color: Color, width: float) -> None:
        """A round-capped stroke ``width`` pixels wide from p (2,) to q (2,)."""
        a, b = fixed_point(p), fixed_point(q)
        t = max(1, int(round(width)))
        cv2.line(self.img, a, b, color, t, cv2.LINE_AA, SHIFT)
        if self.oid:
            r = t / 2
            self._grow_box(min(p[0], q[0]) - r, min(p[1], q[1]) - r, max(p[0], q[0]) + r, max(p[1], q[1]) + r)
            cv2.line(self.ids, a, b, self.oid, t, cv2.LINE_8, SHIFT)

    def circle(self, c: np.ndarray, radius: float, color: Color, width: float = -1) -> None:
        """A filled disc (``width`` < 0) or a ring ``width`` pixels wide."""
        a = fixed_point(c)
        r = max(1, int(round(radius * _ONE)))
        t = -1 if width < 0 else max(1, int(round(width)))
        cv2.circle(self.img, a, r, color, t, cv2.LINE_AA, SHIFT)
        if self.oid:
            e = max(radius, 0.5) + max(t, 0) / 2
            self._grow_box(c[0] - e, c[1] - e, c[0] + e, c[1] + e)
            cv2.circle(self.ids, a, r, self.oid, t, cv2.LINE_8, SHIFT)

    def ellipse(self, c: np.ndarray, axes: tuple[float, float], color: Color, angle: float = 0.0) -> None:
        centre = fixed_point(c)
        ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
        cv2.ellipse(self.img, centre, ax, angle, 0, 360, color, -1, cv2.LINE_AA, SHIFT)
        if self.oid:
            e = max(axes)
            self._grow_box(c[0] - e, c[1] - e, c[0] + e, c[1] + e)
            cv2.ellipse(self.ids, centre, ax, angle, 0, 360, self.oid, -1, cv2.LINE_8, SHIFT)

    def shade(self, points: np.ndarray, factor: float, claim: bool = False) -> None:
        """Darken (factor < 1) the pixels inside a polygon: a cast shadow, claimed for the entity if ``claim``."""
        pts = np.asarray(points, np.float64)
        if claim and self.oid:
            self._grow(pts)
            cv2.fillPoly(self.ids, [fixed(pts)], self.oid, cv2.LINE_8, SHIFT)
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [fixed(pts - (x0, y0))], 255, cv2.LINE_AA, SHIFT)
        roi = self.img[y0:y1, x0:x1]
        keep = 1.0 - (1.0 - factor) * (mask.astype(np.float32) / 255.0)
        roi[:] = (roi * keep[..., None]).astype(np.uint8)

    # ---- side channels ---------------------------------------------------------------------
    def glow_poly(self, polygons: list[np.ndarray] | np.ndarray, color: Color) -> None:
        """Emissive surfaces (lit windows); ignored for daylight frames."""
        if self.emissive is not None and len(polygons):
            pts = list(fixed(polygons)) if isinstance(polygons, np.ndarray) else [fixed(p) for p in polygons]
            cv2.fillPoly(self.emissive, pts, color, cv2.LINE_AA, SHIFT)

    def emit(self, at: np.ndarray | tuple[float, float], radius: float, color: Color) -> None:
        """A light source at pixel ``at`` (x, y), owned by the current entity."""
        self.emitters.append(Emitter(self.oid, float(at[0]), float(at[1]), float(radius), color))

    def illuminate(self, x: float, y: float, sx: float, sy: float, color: Color, strength: float) -> None:
        self.illuminators.append(Illuminator(float(x), float(y), float(sx), float(sy), color, float(strength)))

    def depth_poly(self, points: np.ndarray, depth: float) -> None:
        if self.bg_depth is not None:
            cv2.fillPoly(self.bg_depth, [fixed(points)], float(depth), cv2.LINE_8, SHIFT)
