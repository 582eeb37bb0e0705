"""The static background of a road scene: sky, distant skyline, road with lane markings and a crossing, kerbs,
sidewalks, verges and building facades (with windows that light up at night), all in perspective."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.data.synth_canvas import Canvas, Color
from pipeline.data.synth_conditions import Conditions, TimeOfDay, Weather
from pipeline.data.synth_geometry import FAR_Z, Camera, Street

_SKY = {  # (top, horizon) BGR
    (TimeOfDay.DAY, False): ((200, 140, 80), (235, 215, 190)),
    (TimeOfDay.DAY, True): ((165, 160, 155), (205, 203, 200)),
    (TimeOfDay.DUSK, False): ((120, 70, 60), (110, 150, 235)),
    (TimeOfDay.DUSK, True): ((115, 100, 95), (140, 150, 170)),
    (TimeOfDay.NIGHT, False): ((45, 25, 15), (90, 80, 75)),
    (TimeOfDay.NIGHT, True): ((55, 50, 48), (95, 95, 98)),
}
_FACADES: tuple[Color, ...] = (
    (90, 110, 160), (70, 85, 140), (160, 175, 190), (185, 195, 200), (130, 135, 140),
    (110, 115, 118), (170, 160, 140), (120, 140, 170), (200, 205, 210), (95, 100, 110),
)  # fmt: skip
_WHITE: Color = (222, 224, 226)
_YELLOW: Color = (40, 185, 225)


@dataclass(frozen=True)
class Background:
    """What the frame builder needs to know about the drawn background."""

    crosswalk_z: float | None  # near edge of a zebra crossing, metres
    sun_side: float  # +1: sun on the left, shadows fall to the right; -1 the opposite; 0: no hard shadows


def draw_background(
    canvas: Canvas, cam: Camera, street: Street, cond: Conditions, rng: np.random.Generator
) -> Background:
    _sky(canvas, cam, cond)
    _skyline(canvas, cam, cond, rng)
    _ground(canvas, cam, street, cond, rng)
    crosswalk = _markings(canvas, cam, street, rng)
    sun = 0.0 if cond.overcast or cond.timeofday is TimeOfDay.NIGHT else float(rng.choice([-1.0, 1.0]))
    for right in (False, True):
        _buildings(canvas, cam, street, cond, rng, right, sun)
    return Background(crosswalk, sun)


def ground_quad(cam: Camera, x0: float, x1: float, z0: float, z1: float, y: float = 0.0) -> np.ndarray:
    """(4, 2) pixels of the ground rectangle X in [x0, x1], Z in [z0, z1] at height ``y``."""
    return cam.project(np.array([x0, x1, x1, x0]), y, np.array([z0, z0, z1, z1]))


def _sky(canvas: Canvas, cam: Camera, cond: Conditions) -> None:
    top, bottom = _SKY[(cond.timeofday, cond.overcast)]
    rows = max(int(np.ceil(cam.horizon)) + 1, 1)
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32)[:, None] ** 0.8
    grad = (np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t).astype(np.uint8)
    canvas.img[:rows] = cv2.resize(grad[:, None, :], (canvas.width, rows), interpolation=cv2.INTER_NEAREST)
    if canvas.bg_depth is not None:
        canvas.bg_depth[:] = np.inf


def _skyline(canvas: Canvas, cam: Camera, cond: Conditions, rng: np.random.Generator) -> None:
    """Distant blocks and tree lines near the vanishing point, hazy with distance."""
    _, bottom = _SKY[(cond.timeofday, cond.overcast)]
    haze = np.asarray(bottom, np.float32)
    k = cam.height / 384
    x = cam.cx - cam.width * rng.uniform(0.2, 0.35)
    end = cam.cx + cam.width * rng.uniform(0.2, 0.35)
    while x < end:
        w = rng.uniform(6, 30) * k
        h = rng.uniform(3, 28) * k
        shade = haze * rng.uniform(0.55, 0.85)
        pts = np.array([[x, cam.horizon + 1], [x + w, cam.horizon + 1], [x + w, cam.horizon - h], [x, cam.horizon - h]])
        canvas.poly(pts, _col(shade))
        canvas.depth_poly(pts, 300.0)
        x += w * rng.uniform(0.6, 1.1)


def _ground(canvas: Canvas, cam: Camera, street: Street, cond: Conditions, rng: np.random.Generator) -> None:
    h, w = canvas.height, canvas.width
    hz = int(np.floor(cam.horizon)) + 1
    wet = cond.weather is Weather.RAIN
    verge = (60, 118, 88) if street.residential else (128, 130, 134)
    canvas.img[hz:] = _jitter(verge, rng, 10)
    if canvas.bg_depth is not None and hz < h:
        canvas.bg_depth[hz:] = cam.depth_of_row(np.arange(hz, h) + 0.5).astype(np.float32)[:, None]
    z0 = max(0.6, cam.near_z * 0.5)
    walk = _jitter((150, 152, 155) if not wet else (112, 114, 116), rng, 12)
    for right in (False, True):
        inner, outer = street.sidewalk_range(right)
        canvas.poly(ground_quad(cam, inner, outer, z0, FAR_Z), walk)
        kerb = cam.project(np.array([inner] * 4), np.array([0.0, 0.0, 0.15, 0.15]), np.array([z0, FAR_Z, FAR_Z, z0]))
        canvas.poly(kerb, (185, 186, 188) if not wet else (140, 140, 142))
    asphalt = _jitter((92, 92, 96) if not wet else (66, 66, 70), rng, 14)
    canvas.poly(ground_quad(cam, street.road_left, street.road_right, z0, FAR_Z), asphalt)
    # low-frequency blotches (wear, patches) over everything below the horizon
    if hz < h:
        low = np.rint(rng.normal(0.0, 6.0, (max(2, (h - hz) // 12), max(2, w // 24), 1))).astype(np.int16)
        tex = cv2.resize(np.repeat(low, 3, axis=2), (w, h - hz), interpolation=cv2.INTER_LINEAR)
        cv2.add(canvas.img[hz:], tex, dst=canvas.img[hz:], dtype=cv2.CV_8U)


def _markings(canvas: Canvas, cam: Camera, street: Street, rng: np.random.Generator) -> float | None:
    z0 = max(0.6, cam.near_z * 0.5)
    quads: list[np.ndarray] = []
    yellow: list[np.ndarray] = []
    lw = 0.12
    for edge in (street.road_left + 0.3, street.road_right - 0.3):
        quads.append(ground_quad(cam, edge - lw / 2, edge + lw / 2, z0, 200.0))
    if street.lanes_left:
        for off in (-0.1, 0.1):
            yellow.append(
                ground_quad(cam, street.centre_line + off - lw / 2, street.centre_line + off + lw / 2, z0, 200.0)
            )
    dividers = [street.lane_width * (i + 0.5) for i in range(street.lanes_right - 1)]
    dividers += [street.centre_line - street.lane_width * (i + 1) for i in range(street.lanes_left - 1)]
    phase = rng.uniform(0, 12)
    for x in dividers:
        for z in np.arange(phase, 150.0, 12.0):
            if z + 3 > z0:
                quads.append(ground_quad(cam, x - lw / 2, x + lw / 2, max(z, z0), z + 3))
    if not street.lanes_left and not street.residential:
        x = street.centre_line
        for z in np.arange(phase, 150.0, 12.0):
            if z + 3 > z0:
                quads.append(ground_quad(cam, x - lw / 2, x + lw / 2, max(z, z0), z + 3))
    crosswalk = None
    if rng.random() < 0.35:
        crosswalk = float(rng.uniform(max(cam.near_z + 2, 7.0), 35.0))
        xs = np.arange(street.road_left + 0.4, street.road_right - 0.4, 1.1)
        quads += [ground_quad(cam, x, x + 0.55, crosswalk, crosswalk + 3.0) for x in xs]
        quads.append(ground_quad(cam, street.centre_line, street.road_right, crosswalk - 1.4, crosswalk - 1.0))
    canvas.polys(quads, _jitter(_WHITE, rng, 12))
    canvas.polys(yellow, _YELLOW)
    return crosswalk


def _buildings(
    canvas: Canvas, cam: Camera, street: Street, cond: Conditions, rng: np.random.Generator, right: bool, sun: float
) -> None:
    """Facades along one side, drawn far to near; side streets leave gaps."""
    xb = street.facade_x(right)
    sign = 1.0 if right else -1.0
    lit = 0.78 if sun * sign > 0 else 1.0  # the facades that face the sun are brighter
    segments = []
    z = float(rng.uniform(-6.0, 4.0))
    while z < 130.0:
        length = float(rng.uniform(8.0, 30.0) if not street.residential else rng.uniform(7.0, 14.0))
        height = float(rng.uniform(7.0, 30.0) if not street.residential else rng.uniform(4.5, 8.0))
        segments.append((z, z + length, height))
        z += length + (rng.uniform(6.0, 14.0) if rng.random() < (0.2 if not street.residential else 0.6) else 0.0)
    windows: list[np.ndarray] = []
    for k in range(len(segments) - 1, -1, -1):
        z1, z2, height = segments[k]
        z1 = max(z1, 0.5)
        if z2 <= z1 + 0.5:
            continue
        base = np.asarray(_FACADES[int(rng.integers(len(_FACADES)))], np.float32) * rng.uniform(0.8, 1.1)
        deep = 9.0 if street.residential else 14.0
        nearer = segments[k - 1] if k else None
        if nearer is None or nearer[1] < z1 - 0.1 or nearer[2] < height:  # else the nearer wall hides the end face
            face = cam.project(
                np.array([xb + sign * deep, xb, xb, xb + sign * deep]), np.array([0, 0, height, height]), z1
            )
            canvas.poly(face, _col(base * 0.8 * lit))
            canvas.depth_poly(face, z1)
        wall = cam.project(xb, np.array([0, 0, height, height]), np.array([z1, z2, z2, z1]))
        canvas.poly(wall, _col(base * lit))
        canvas.depth_poly(wall, 0.5 * (z1 + z2))
        if street.residential:  # a pitched roof: the slope facing the street and the gable end
            ridge = xb + sign * deep / 2
            roof = cam.project(
                np.array([xb - sign * 0.3, xb - sign * 0.3, ridge, ridge]),
                np.array([height, height, height + 3.0, height + 3.0]),
                np.array([z1, z2, z2, z1]),
            )
            tile = _jitter((60, 62, 90), rng, 15)
            canvas.poly(roof, tile)
            gable = cam.project(np.array([xb, xb + sign * deep, ridge]), np.array([height, height, height + 3.0]), z1)
            canvas.poly(gable, _col(base * 0.8 * lit))
        else:
            cornice = cam.project(
                xb, np.array([height - 0.6, height - 0.6, height, height]), np.array([z1, z2, z2, z1])
            )
            canvas.poly(cornice, _col(base * 0.6 * lit))
        if z1 < 110.0:
            windows.append(_windows(cam, xb, z1, z2, height, street.residential, rng))
    if windows:
        pts = np.concatenate(windows)
        glass = (72, 62, 55) if cond.timeofday is TimeOfDay.DAY else (40, 38, 36)
        canvas.polys(pts, _jitter(glass, rng, 12))
        if cond.lit:
            on = rng.random(len(pts)) < (0.35 if cond.timeofday is TimeOfDay.NIGHT else 0.2)
            warm = (60, 125, 170) if rng.random() < 0.7 else (160, 150, 140)
            canvas.glow_poly(pts[on], warm)


def _windows(
    cam: Camera, xb: float, z1: float, z2: float, height: float, residential: bool, rng: np.random.Generator
) -> np.ndarray:
    """(K, 4, 2) pixel quads of a grid of windows on the facade X = ``xb`` between depths z1 and z2."""
    pitch = rng.uniform(2.4, 3.6)
    floor_h = 3.0
    cols = np.arange(z1 + 0.8, z2 - 1.0, pitch)
    floors = np.arange(1.0 if not residential else 0.9, height - 1.5, floor_h)
    if cols.size == 0 or floors.size == 0:
        return np.zeros((0, 4, 2))
    zc, yf = np.meshgrid(cols, floors)
    zc, yf = zc.ravel(), yf.ravel()
    win_w, win_h = pitch * rng.uniform(0.35, 0.6), floor_h * rng.uniform(0.4, 0.6)
    ya, yb = yf + 0.6, yf + 0.6 + win_h
    pts = cam.project(xb, np.stack([ya, ya, yb, yb], 1), np.stack([zc, zc + win_w, zc + win_w, zc], 1))
    return pts[np.abs(pts[:, 1, 0] - pts[:, 0, 0]) > 0.7]


def _jitter(color: Color, rng: np.random.Generator, amount: float) -> Color:
    d = float(rng.uniform(-amount, amount))
    return _col((color[0] + d, color[1] + d, color[2] + d))


def _col(values: np.ndarray | tuple[float, ...]) -> Color:
    return (min(255, max(0, int(values[0]))), min(255, max(0, int(values[1]))), min(255, max(0, int(values[2]))))
