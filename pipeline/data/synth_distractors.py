"""Hard negatives: things a detector mistakes for road users. Each is recorded (box and kind) so that false
alarms on it can be counted: lamp poles and sign posts (tall thin uprights), bollards and bins (person-sized
blobs), trees, posters/billboards showing a person, and cast shadows on the ground."""

from __future__ import annotations

from enum import Enum

import numpy as np

from pipeline.data.synth_canvas import Canvas, Color
from pipeline.data.synth_people import View, draw_pedestrian, flat_style, sample_person


class DistractorKind(str, Enum):
    POLE = "pole"
    SIGN = "sign"
    BOLLARD = "bollard"
    BIN = "bin"
    TREE = "tree"
    POSTER = "poster"
    SHADOW = "shadow"


KINDS: tuple[str, ...] = tuple(k.value for k in DistractorKind)
_METAL: tuple[Color, ...] = ((95, 95, 98), (60, 62, 64), (40, 70, 40), (150, 150, 152), (30, 30, 32))


def _rect(u0: float, v0: float, s: float, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[u0 + s * x0, v0 - s * y0], [u0 + s * x1, v0 - s * y0], [u0 + s * x1, v0 - s * y1],
                     [u0 + s * x0, v0 - s * y1]])  # fmt: skip


def draw_pole(canvas: Canvas, u0: float, v0: float, s: float, rng: np.random.Generator, arm: float, lit: bool) -> None:
    """A street lamp (``arm`` metres reaching over the road, signed) or a bare utility pole (``arm`` = 0)."""
    h = rng.uniform(6.0, 9.0)
    width = rng.uniform(0.14, 0.24)
    color = _METAL[int(rng.integers(len(_METAL)))]
    canvas.poly(_rect(u0, v0, s, -width / 2, width / 2, 0, h), color)
    canvas.poly(_rect(u0, v0, s, -width * 0.8, width * 0.8, 0, 0.5), color)
    if arm == 0:
        return
    tip = np.array([u0 + s * arm, v0 - s * (h - 0.2)])
    canvas.line(np.array([u0, v0 - s * (h - 0.5)]), tip, color, 0.1 * s)
    canvas.ellipse(tip + [0, 0.08 * s], (0.35 * s, 0.1 * s), (70, 70, 72))
    if lit:
        warm = (80, 175, 255) if rng.random() < 0.6 else (235, 240, 245)
        canvas.emit((tip[0], tip[1] + 0.14 * s), max(1.0, 0.16 * s), warm)
        ground = v0 + 0.05 * s
        canvas.illuminate(tip[0], ground, 3.5 * s, 1.2 * s, warm, 1.1)
        canvas.illuminate(tip[0], tip[1] + 2.5 * s, 1.5 * s, 2.5 * s, warm, 0.35)


def draw_sign(canvas: Canvas, u0: float, v0: float, s: float, rng: np.random.Generator) -> None:
    h = rng.uniform(2.2, 3.0)
    canvas.poly(_rect(u0, v0, s, -0.035, 0.035, 0, h), (150, 150, 152))
    shape = int(rng.integers(4))
    top = np.array([u0, v0 - s * h])
    if shape == 0:  # round prohibition / speed sign
        r = rng.uniform(0.3, 0.4)
        canvas.circle(top + [0, 0.2 * s], r * s, (40, 40, 200))
        canvas.circle(top + [0, 0.2 * s], r * 0.78 * s, (235, 235, 235))
        canvas.line(top + [-0.15 * s, 0.2 * s], top + [0.15 * s, 0.2 * s], (30, 30, 30), 0.08 * s)
    elif shape == 1:  # rectangular information sign
        w, hh = rng.uniform(0.5, 0.9), rng.uniform(0.6, 1.0)
        color = ((150, 80, 20), (50, 120, 40), (235, 235, 235))[int(rng.integers(3))]
        canvas.poly(_rect(u0, v0, s, -w / 2, w / 2, h - 0.4, h - 0.4 + hh), color)
        canvas.line(top + [-0.3 * w * s, -0.2 * s], top + [0.3 * w * s, -0.2 * s], (240, 240, 240), 0.06 * s)
    elif shape == 2:  # warning triangle
        a = rng.uniform(0.6, 0.9)
        tri = np.array(
            [
                [u0 - a / 2 * s, v0 - s * (h - 0.3)],
                [u0 + a / 2 * s, v0 - s * (h - 0.3)],
                [u0, v0 - s * (h - 0.3 + 0.87 * a)],
            ]
        )
        canvas.poly(tri, (40, 40, 200))
        canvas.poly((tri - tri.mean(0)) * 0.7 + tri.mean(0), (235, 235, 235))
    else:  # stop sign
        r = rng.uniform(0.3, 0.4)
        ang = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi / 8
        canvas.poly(top + [0, 0.15 * s] + r * s * np.stack([np.cos(ang), np.sin(ang)], 1), (35, 35, 190))


def draw_bollard(canvas: Canvas, u0: float, v0: float, s: float, rng: np.random.Generator) -> None:
    h, w = rng.uniform(0.8, 1.1), rng.uniform(0.14, 0.25)
    color = ((40, 40, 42), (30, 170, 220), (120, 120, 122), (35, 35, 150))[int(rng.integers(4))]
    canvas.poly(_rect(u0, v0, s, -w / 2, w / 2, 0, h), color)
    canvas.ellipse(np.array([u0, v0 - s * h]), (w / 2 * s, 0.05 * s), color)
    canvas.poly(_rect(u0, v0, s, -w / 2, w / 2, h - 0.25, h - 0.17), (230, 230, 230))


def draw_bin(canvas: Canvas, u0: float, v0: float, s: float, rng: np.random.Generator) -> None:
    h, w = rng.uniform(0.9, 1.15), rng.uniform(0.5, 0.72)
    color = ((40, 90, 40), (90, 90, 92), (130, 70, 30), (30, 30, 32), (30, 120, 200))[int(rng.integers(5))]
    body = np.array([[u0 - s * w * 0.45, v0], [u0 + s * w * 0.45, v0], [u0 + s * w / 2, v0 - s * h * 0.92],
                     [u0 - s * w / 2, v0 - s * h * 0.92]])  # fmt: skip
    canvas.poly(body, color)
    lid: Color = (int(color[0] * 0.7), int(color[1] * 0.7), int(color[2] * 0.7))
    canvas.poly(_rect(u0, v0, s, -w * 0.53, w * 0.53, h * 0.9, h), lid)


def draw_tree(canvas: Canvas, u0: float, v0: float, s: float, rng: np.random.Generator, dark: bool) -> None:
    trunk_h, trunk_w = rng.uniform(2.0, 3.5), rng.uniform(0.18, 0.35)
    canvas.poly(_rect(u0, v0, s, -trunk_w / 2, trunk_w / 2, 0, trunk_h + 0.5), (40, 60, 85))
    r = rng.uniform(1.0, 2.0)
    base = np.array([35, 100, 55] if not dark else [30, 60, 40], np.float64)
    cy = trunk_h + r * 0.8
    for _ in range(int(rng.integers(5, 9))):
        off = rng.normal(0, 0.45 * r, 2)
        col = np.clip(base * rng.uniform(0.75, 1.25), 0, 255)
        canvas.circle(np.array([u0 + s * off[0], v0 - s * (cy + off[1] * 0.8)]), r * rng.uniform(0.55, 0.8) * s,
                      (int(col[0]), int(col[1]), int(col[2])))  # fmt: skip


def draw_poster(canvas: Canvas, u0: float, v0: float, s: float, rng: np.random.Generator, billboard: bool) -> None:
    """An advertising panel on legs (or a raised billboard) printed with a person, sometimes in colour."""
    if billboard:
        w, h, y0 = rng.uniform(3.0, 4.5), rng.uniform(2.0, 3.0), rng.uniform(2.5, 4.0)
        canvas.poly(_rect(u0, v0, s, -0.12, 0.12, 0, y0), (90, 90, 92))
    else:
        w, h, y0 = rng.uniform(1.1, 1.5), rng.uniform(1.7, 2.2), 0.25
        for x in (-w / 2 + 0.05, w / 2 - 0.05):
            canvas.poly(_rect(u0, v0, s, x - 0.04, x + 0.04, 0, y0), (70, 70, 72))
    canvas.poly(_rect(u0, v0, s, -w / 2 - 0.05, w / 2 + 0.05, y0 - 0.05, y0 + h + 0.05), (55, 55, 58))
    bg = rng.integers(60, 256, 3)
    background: Color = (int(bg[0]), int(bg[1]), int(bg[2]))
    canvas.poly(_rect(u0, v0, s, -w / 2, w / 2, y0, y0 + h), background)  # type: ignore[arg-type]
    person = sample_person(rng, View(("front", "side", "back")[int(rng.integers(3))]), child_p=0.0)
    if rng.random() < 0.6:
        ink = (20, 20, 22) if sum(background) > 300 else (235, 235, 235)
        person = flat_style(person, ink)
    scale = h * rng.uniform(0.7, 0.92) / person.height
    px = rng.uniform(-0.2, 0.2) * w
    draw_pedestrian(canvas, u0 + s * px, v0 - s * (y0 + 0.04 * h), s * scale, person)
    for k in range(int(rng.integers(1, 3))):  # text lines
        yy = y0 + h * (0.92 - 0.09 * k)
        canvas.poly(_rect(u0, v0, s, -0.4 * w, 0.4 * w * rng.uniform(0.3, 1), yy - 0.04 * h, yy), (245, 245, 245))


def shadow_polygon(u0: float, v0: float, s: float, length: float, side: float, width: float) -> np.ndarray:
    """A person-like shadow on the ground from the foot point toward ``side`` (+1 right), in pixels."""
    along = np.array([side * s * length, -s * length * 0.18])
    normal = np.array([0.0, s * width * 0.5])
    foot = np.array([u0, v0])
    head = foot + along
    return np.array([foot - normal, foot + 0.55 * along - 1.3 * normal, head - 0.8 * normal, head + 0.8 * normal,
                     foot + 0.55 * along + 1.3 * normal, foot + normal])  # fmt: skip
