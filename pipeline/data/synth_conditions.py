"""Recording conditions of a synthetic frame: time of day, weather, sensor noise and motion blur.

The scene is drawn in daylight colours; :func:`finish` then applies, in this order: dusk/night lighting (dim
ambient light, pools of light from street lamps and headlights, glowing lamps/lights/windows with bloom), fog
(exponential in each pixel's depth), rain streaks, motion blur, lens vignetting and sensor noise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist
from typing import Any

import cv2
import numpy as np

from pipeline.data.synth_canvas import Canvas, fixed, fixed_point


class TimeOfDay(str, Enum):
    DAY = "day"
    DUSK = "dusk"
    NIGHT = "night"


class Weather(str, Enum):
    CLEAR = "clear"
    RAIN = "rain"
    FOG = "fog"


TIME_P = {TimeOfDay.DAY: 0.5, TimeOfDay.DUSK: 0.2, TimeOfDay.NIGHT: 0.3}
WEATHER_P = {Weather.CLEAR: 0.6, Weather.RAIN: 0.22, Weather.FOG: 0.18}
# Ambient light (BGR multipliers) on daylight colours; the rest comes from lamps.
_AMBIENT = {TimeOfDay.DUSK: (0.50, 0.52, 0.64), TimeOfDay.NIGHT: (0.26, 0.21, 0.19)}
_FOG_COLOR = {TimeOfDay.DAY: (205, 200, 195), TimeOfDay.DUSK: (150, 155, 170), TimeOfDay.NIGHT: (48, 46, 46)}


@dataclass(frozen=True)
class Conditions:
    timeofday: TimeOfDay
    weather: Weather
    noise: bool
    blur: bool
    fog_visibility: float  # metres: contrast falls to 1/e at this depth
    noise_sigma: float  # grey levels
    blur_length: int  # pixels (odd)
    blur_angle: float  # degrees

    @property
    def lit(self) -> bool:
        """Are lamps, headlights and windows switched on?"""
        return self.timeofday is not TimeOfDay.DAY

    @property
    def overcast(self) -> bool:
        return self.weather is not Weather.CLEAR

    def attributes(self) -> dict[str, Any]:
        return {
            "timeofday": self.timeofday.value,
            "weather": self.weather.value,
            "noise": self.noise,
            "blur": self.blur,
        }


def sample_conditions(rng: np.random.Generator) -> Conditions:
    times, weathers = list(TIME_P), list(WEATHER_P)
    tod = times[int(rng.choice(len(times), p=list(TIME_P.values())))]
    weather = weathers[int(rng.choice(len(weathers), p=list(WEATHER_P.values())))]
    night = tod is TimeOfDay.NIGHT
    return Conditions(
        timeofday=tod,
        weather=weather,
        noise=bool(rng.random() < (0.55 if night else 0.25)),
        blur=bool(rng.random() < 0.2),
        fog_visibility=float(rng.uniform(45.0, 110.0)),
        noise_sigma=float(rng.uniform(5.0, 11.0) if night else rng.uniform(2.5, 6.0)),
        blur_length=int(rng.choice([5, 7, 9])),
        blur_angle=float(rng.uniform(-12.0, 12.0)),
    )


def finish(canvas: Canvas, cond: Conditions, rng: np.random.Generator, depth: np.ndarray | None) -> np.ndarray:
    """The final frame (H, W, 3) uint8 (a new array) from the daylight drawing; ``depth`` (H, W) metres for fog.

    Works in place in the canvas's workspace float buffer ``f0`` (``f1`` and the uint8 buffers are scratch).
    """
    h, w = canvas.height, canvas.width
    work = canvas.work
    img = work.f0
    np.copyto(img, canvas.img, casting="unsafe")
    if cond.lit:
        _light(img, canvas, cond)
    if cond.weather is Weather.FOG and depth is not None:
        _fog(img, depth, cond, work.f1)
    if cond.weather is Weather.RAIN:
        _rain(img, rng, cond, work.layer, work.u0)
    if cond.blur:
        _motion_blur(img, cond.blur_length, cond.blur_angle, work.f1)
    cv2.multiply(img, _vignette(w, h), dst=img)
    if cond.noise:
        raw = np.frombuffer(rng.bytes(h * w * 3), np.uint8).reshape(h, w, 3)
        cv2.LUT(raw, _gauss_table(), dst=work.f1)  # standard normal noise through an inverse-CDF table
        cv2.scaleAdd(work.f1, float(cond.noise_sigma), img, dst=img)
    return cv2.add(img, 0.0, dtype=cv2.CV_8U)  # type: ignore[call-overload]  # rounds, saturates to 0..255


@functools.lru_cache(maxsize=1)
def _gauss_table() -> np.ndarray:
    normal = NormalDist()
    table = np.array([normal.inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)
    table.setflags(write=False)
    return table


def _light(img: np.ndarray, canvas: Canvas, cond: Conditions) -> None:
    """Ambient + lamp pools on the surfaces, plus the light sources themselves with bloom (in place)."""
    h, w = img.shape[:2]
    work = canvas.work
    gain = _illumination(canvas, w, h, _AMBIENT[cond.timeofday], work.f1)
    cv2.multiply(img, gain, dst=img)
    emissive = work.u0  # point sources (lamps, vehicle lights) that are not hidden, then their bloom
    emissive.fill(0)
    for e in canvas.emitters:
        xi, yi = int(e.x), int(e.y)
        if 0 <= xi < w and 0 <= yi < h and canvas.ids[yi, xi] == e.oid:
            r = max(1, int(round(max(e.radius, 0.6) * 16)))
            cv2.circle(emissive, fixed_point((e.x, e.y)), r, e.color, -1, cv2.LINE_AA, 4)
    small = cv2.resize(emissive, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    sigma = 3.0 if cond.weather is Weather.FOG else 1.6
    cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma), (w, h), dst=work.u1, interpolation=cv2.INTER_LINEAR)
    if canvas.emissive is not None:  # lit windows, without bloom; those hidden behind objects stay dark
        mask = (canvas.ids == 0).view(np.uint8)
        cv2.add(emissive, canvas.emissive, dst=emissive, mask=mask)
    gain_glow = 1.8 if cond.timeofday is TimeOfDay.NIGHT else 1.0
    cv2.addWeighted(emissive, 1.0, work.u1, gain_glow, 0.0, dst=work.f1, dtype=cv2.CV_32F)
    cv2.add(img, work.f1, dst=img)


def _illumination(canvas: Canvas, w: int, h: int, ambient: tuple[float, float, float], out: np.ndarray) -> np.ndarray:
    """``out`` (H, W, 3) float32 := light gain, ``ambient`` plus the pools of light (computed at 1/4 size)."""
    h4, w4 = max(1, (h + 3) // 4), max(1, (w + 3) // 4)
    low = np.empty((h4, w4, 3), np.float32)
    low[:] = ambient
    for il in canvas.illuminators:
        x, y, sx, sy = il.x / 4, il.y / 4, max(il.sigma_x / 4, 0.5), max(il.sigma_y / 4, 0.5)
        x0, x1 = max(int(x - 3 * sx), 0), min(int(x + 3 * sx) + 1, w4)
        y0, y1 = max(int(y - 3 * sy), 0), min(int(y + 3 * sy) + 1, h4)
        if x1 <= x0 or y1 <= y0:
            continue
        gx = np.exp(-0.5 * ((np.arange(x0, x1, dtype=np.float32) - x) / sx) ** 2)
        gy = np.exp(-0.5 * ((np.arange(y0, y1, dtype=np.float32) - y) / sy) ** 2)
        color = np.asarray(il.color, np.float32) * np.float32(il.strength / 255.0)
        low[y0:y1, x0:x1] += (gy[:, None] * gx[None, :])[..., None] * color
    return cv2.resize(low, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)


def _fog(img: np.ndarray, depth: np.ndarray, cond: Conditions, scratch: np.ndarray) -> None:
    """img := fog + (img - fog) * exp(-depth / visibility), in place; ``depth`` (H, W) is overwritten."""
    np.minimum(depth, 1e4, out=depth)
    depth *= np.float32(-1.0 / cond.fog_visibility)
    np.exp(depth, out=depth)
    b, g, r = _FOG_COLOR[cond.timeofday]
    fog = (float(b), float(g), float(r), 0.0)
    cv2.subtract(img, fog, dst=img)  # type: ignore[call-overload]  # a per-channel scalar
    cv2.multiply(img, cv2.merge([depth, depth, depth], dst=scratch), dst=img)
    cv2.add(img, fog, dst=img)  # type: ignore[call-overload]


def _rain(img: np.ndarray, rng: np.random.Generator, cond: Conditions, layer: np.ndarray, scratch: np.ndarray) -> None:
    """Lower contrast and bright slanted streaks (a single polyline call), in place."""
    h, w = img.shape[:2]
    n = int(rng.integers(150, 420) * (w * h) / (640 * 384))
    slant = rng.uniform(-0.35, 0.35)
    length = rng.uniform(6, 18, n) * (h / 384)
    x0 = rng.uniform(-0.1 * w, 1.1 * w, n)
    y0 = rng.uniform(-20, h, n)
    pts = np.stack([np.stack([x0, y0], -1), np.stack([x0 + slant * length, y0 + length], -1)], axis=1)
    layer.fill(0)
    cv2.polylines(layer, list(fixed(pts)), False, 255, 1, cv2.LINE_AA, 4)
    alpha = 0.28 if cond.timeofday is TimeOfDay.DAY else 0.18
    offset = 18.0 if cond.timeofday is TimeOfDay.DAY else 6.0
    cv2.merge([layer, layer, layer], dst=scratch)
    cv2.addWeighted(img, 0.82, scratch, alpha, offset, dst=img, dtype=cv2.CV_32F)


def _motion_blur(img: np.ndarray, length: int, angle: float, scratch: np.ndarray) -> None:
    k = np.zeros((length, length), np.float32)
    c = length // 2
    dx, dy = np.cos(np.radians(angle)) * c, np.sin(np.radians(angle)) * c
    cv2.line(k, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    cv2.filter2D(img, -1, k / k.sum(), dst=scratch, borderType=cv2.BORDER_REFLECT)
    np.copyto(img, scratch)


@functools.lru_cache(maxsize=8)
def _vignette(w: int, h: int) -> np.ndarray:
    """(H, W, 3) float32 lens fall-off: 1 at the centre, about 0.82 in the corners."""
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / (h / 2)
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / (w / 2)
    r2 = (x[None, :] ** 2) * 0.7 + (y[:, None] ** 2) * 0.3
    out = 1.0 - 0.18 * r2 / r2.max()
    out = np.ascontiguousarray(np.repeat(out[..., None], 3, axis=2), np.float32)
    out.setflags(write=False)
    return out
