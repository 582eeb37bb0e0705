"""Cars seen from behind (same direction), in front (oncoming) or from the side (crossing): body, cabin,
windows, wheels, bumpers, plate and lights (tail lights, headlights with a beam on the road at night)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.synth_canvas import Canvas, Color
from pipeline.data.synth_people import View

PAINT: tuple[Color, ...] = (
    (235, 235, 235), (30, 30, 32), (180, 180, 178), (110, 110, 112), (40, 40, 175), (140, 70, 30),
    (50, 80, 40), (150, 180, 200), (30, 185, 225), (90, 50, 20), (60, 60, 120),
)  # fmt: skip
PAINT_P = np.array([0.22, 0.2, 0.16, 0.14, 0.07, 0.07, 0.03, 0.04, 0.02, 0.03, 0.02])
GLASS: Color = (70, 58, 48)


@dataclass(frozen=True)
class CarStyle:
    view: View
    facing: float  # side view: +1 drives to the image right
    width: float
    height: float
    length: float
    paint: Color
    tall: bool  # van/SUV proportions


def sample_car(rng: np.random.Generator, view: View) -> CarStyle:
    tall = bool(rng.random() < 0.3)
    return CarStyle(
        view=view,
        facing=float(rng.choice([-1.0, 1.0])),
        width=float(rng.uniform(1.72, 1.95)),
        height=float(rng.uniform(1.62, 1.95) if tall else rng.uniform(1.35, 1.52)),
        length=float(rng.uniform(4.3, 5.0) if tall else rng.uniform(3.9, 4.8)),
        paint=PAINT[int(rng.choice(len(PAINT), p=PAINT_P / PAINT_P.sum()))],
        tall=tall,
    )


def _shade(c: Color, k: float) -> Color:
    return (min(255, int(c[0] * k)), min(255, int(c[1] * k)), min(255, int(c[2] * k)))


def _pts(u0: float, v0: float, s: float, xy: np.ndarray | list[list[float]]) -> np.ndarray:
    xy = np.asarray(xy, np.float64)
    return np.stack([u0 + s * xy[:, 0], v0 - s * xy[:, 1]], axis=1)


def draw_car(canvas: Canvas, u0: float, v0: float, s: float, c: CarStyle, lights: bool) -> None:
    """A car whose tyres touch row ``v0`` (``s`` pixels per metre at its nearest face)."""
    if c.view is View.SIDE:
        _side(canvas, u0, v0, s, c, lights)
    else:
        _end(canvas, u0, v0, s, c, lights)


def _end(canvas: Canvas, u0: float, v0: float, s: float, c: CarStyle, lights: bool) -> None:
    W, H = c.width, c.height
    front = c.view is View.FRONT
    canvas.shade(_pts(u0, v0, s, [[-0.55 * W, 0.02], [0.55 * W, 0.02], [0.5 * W, -0.08], [-0.5 * W, -0.08]]), 0.45)
    for side in (-1.0, 1.0):
        x0, x1 = side * (W / 2 - 0.06), side * (W / 2 - 0.3)
        canvas.poly(_pts(u0, v0, s, [[x0, 0], [x1, 0], [x1, 0.42], [x0, 0.42]]), (22, 22, 24))
    belt = 0.55 * H if not c.tall else 0.5 * H
    top_w = 0.36 * W if not c.tall else 0.43 * W
    body = [[-W / 2, 0.2], [W / 2, 0.2], [W / 2, belt], [0.47 * W, belt + 0.06 * H], [top_w, H],
            [-top_w, H], [-0.47 * W, belt + 0.06 * H], [-W / 2, belt]]  # fmt: skip
    canvas.poly(_pts(u0, v0, s, body), c.paint)
    canvas.poly(_pts(u0, v0, s, [[-W / 2, 0.2], [W / 2, 0.2], [W / 2, 0.36], [-W / 2, 0.36]]), _shade(c.paint, 0.55))
    gw0, gw1 = 0.42 * W, top_w - 0.05
    g0 = belt + 0.1 * H
    glass = [[-gw0, g0], [gw0, g0], [gw1, H - 0.05], [-gw1, H - 0.05]]
    tint = _shade(GLASS, 1.25 if front else 1.0)
    canvas.poly(_pts(u0, v0, s, glass), tint)
    canvas.poly(_pts(u0, v0, s, [[-0.13, 0.4], [0.13, 0.4], [0.13, 0.52], [-0.13, 0.52]]),
                (215, 215, 210) if not front else (40, 40, 40))  # fmt: skip
    lamp_y0, lamp_y1 = (belt - 0.14, belt - 0.02) if not front else (belt - 0.2, belt - 0.1)
    lamp = (30, 30, 160) if not front else (200, 205, 205)
    for side in (-1.0, 1.0):
        x0, x1 = side * 0.36 * W, side * 0.485 * W
        canvas.poly(_pts(u0, v0, s, [[x0, lamp_y0], [x1, lamp_y0], [x1, lamp_y1], [x0, lamp_y1]]), lamp)
        if lights:
            centre = _pts(u0, v0, s, [[0.5 * (x0 + x1), 0.5 * (lamp_y0 + lamp_y1)]])[0]
            if front:
                canvas.emit(centre, max(1.2, 0.1 * s), (215, 240, 255))
            else:
                canvas.emit(centre, max(1.0, 0.07 * s), (30, 30, 255))
    if lights and front:  # the beam lights the road in front of the car, toward the camera
        canvas.illuminate(u0, v0 + 0.3 * s, 1.2 * W * s, 0.4 * s, (200, 225, 240), 0.9)
    elif lights:
        canvas.illuminate(u0, v0, 0.8 * W * s, 0.15 * s, (60, 60, 230), 0.4)


def _side(canvas: Canvas, u0: float, v0: float, s: float, c: CarStyle, lights: bool) -> None:
    L, H, d = c.length, c.height, c.facing
    canvas.shade(_pts(u0, v0, s, [[-0.52 * L, 0.02], [0.52 * L, 0.02], [0.5 * L, -0.05], [-0.5 * L, -0.05]]), 0.5)
    belt = 0.55 * H
    if c.tall:
        prof = [[-0.5, 0.25], [0.5, 0.25], [0.5, belt], [0.4, belt + 0.1], [0.3, H], [-0.5, H], [-0.5, belt]]
    else:
        prof = [[-0.5, 0.25], [0.5, 0.25], [0.5, belt], [0.38, belt + 0.06], [0.2, belt + 0.08],
                [0.05, H], [-0.28, H], [-0.44, belt + 0.1], [-0.5, belt]]  # fmt: skip
    pts = np.array([[d * x * L, y] for x, y in prof])
    canvas.poly(_pts(u0, v0, s, pts), c.paint)
    canvas.poly(_pts(u0, v0, s, [[-L / 2, 0.25], [L / 2, 0.25], [L / 2, 0.38], [-L / 2, 0.38]]), _shade(c.paint, 0.6))
    y0, y1 = belt + 0.1, H - 0.07
    xs = (0.25, -0.45) if c.tall else (0.14, -0.36)
    win_top = (0.27, -0.47) if c.tall else (0.05, -0.26)
    win = [[d * xs[0] * L, y0], [d * win_top[0] * L, y1], [d * win_top[1] * L, y1], [d * xs[1] * L, y0]]
    canvas.poly(_pts(u0, v0, s, win), GLASS)
    pillar = d * (win_top[0] + win_top[1]) / 2 * L
    canvas.line(_pts(u0, v0, s, [[pillar, y0]])[0], _pts(u0, v0, s, [[pillar, y1]])[0], c.paint, 0.08 * s)
    r = 0.32
    for x in (-0.33 * L, 0.31 * L):
        hub = _pts(u0, v0, s, [[d * x, r]])[0]
        canvas.circle(hub, (r + 0.05) * s, (25, 25, 25))
        canvas.circle(hub, r * s, (30, 30, 32))
        canvas.circle(hub, 0.55 * r * s, (165, 165, 168))
    front = _pts(u0, v0, s, [[d * 0.49 * L, belt - 0.08]])[0]
    rear = _pts(u0, v0, s, [[-d * 0.49 * L, belt - 0.05]])[0]
    canvas.circle(front, 0.07 * s, (200, 205, 205))
    canvas.circle(rear, 0.06 * s, (30, 30, 160))
    if lights:
        canvas.emit(front, max(1.0, 0.09 * s), (215, 240, 255))
        canvas.emit(rear, max(1.0, 0.06 * s), (30, 30, 255))
        canvas.illuminate(front[0] + d * 2.0 * s, v0, 1.6 * s, 0.3 * s, (200, 225, 240), 0.8)
