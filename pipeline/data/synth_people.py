"""Articulated pedestrians and cyclists (a rider on a bicycle), drawn from joint positions in metres.

A figure stands on the ground at pixel ``(u0, v0)`` with ``s`` pixels per metre; local coordinates are x to the
image right and y up, so a joint ``(x, y)`` lands on pixel ``(u0 + s x, v0 - s y)``. Walking is a gait phase
(legs and arms swing in opposition, the knee of the swinging leg bends); pedalling turns the crank.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from pipeline.data.synth_canvas import Canvas, Color

SKIN: tuple[Color, ...] = ((150, 180, 225), (120, 160, 210), (90, 130, 185), (60, 95, 140), (45, 65, 100))
HAIR: tuple[Color, ...] = ((20, 20, 25), (30, 45, 70), (40, 80, 130), (120, 170, 200), (150, 150, 155))
CLOTHES: tuple[Color, ...] = (
    (35, 35, 38), (60, 60, 62), (200, 200, 200), (140, 70, 30), (90, 50, 20), (40, 40, 170), (40, 120, 200),
    (60, 110, 60), (150, 150, 150), (120, 90, 160), (30, 160, 230), (170, 130, 90), (80, 80, 140), (20, 60, 110),
)  # fmt: skip
TROUSERS: tuple[Color, ...] = ((35, 35, 38), (110, 70, 40), (90, 60, 30), (70, 70, 72), (120, 140, 160), (40, 50, 60))


class View(str, Enum):
    SIDE = "side"
    FRONT = "front"
    BACK = "back"


@dataclass(frozen=True)
class PersonStyle:
    height: float  # metres
    view: View
    facing: float  # +1 walks/rides to the image right in side view, -1 left
    phase: float  # gait / crank phase, radians
    stride: float  # leg swing amplitude, radians (0 = standing)
    skin: Color
    hair: Color
    top: Color
    bottom: Color
    shoes: Color
    dress: bool
    backpack: bool
    helmet: bool = False


def sample_person(rng: np.random.Generator, view: View, child_p: float = 0.12) -> PersonStyle:
    child = rng.random() < child_p
    standing = rng.random() < 0.2
    return PersonStyle(
        height=float(rng.uniform(1.05, 1.4) if child else rng.uniform(1.55, 1.92)),
        view=view,
        facing=float(rng.choice([-1.0, 1.0])),
        phase=float(rng.uniform(0, 2 * np.pi)),
        stride=0.0 if standing else float(rng.uniform(0.25, 0.5)),
        skin=SKIN[int(rng.integers(len(SKIN)))],
        hair=HAIR[int(rng.integers(len(HAIR)))],
        top=CLOTHES[int(rng.integers(len(CLOTHES)))],
        bottom=TROUSERS[int(rng.integers(len(TROUSERS)))] if rng.random() < 0.8 else CLOTHES[int(rng.integers(14))],
        shoes=((25, 25, 25), (220, 220, 220), (40, 60, 90))[int(rng.integers(3))],
        dress=bool(rng.random() < 0.15),
        backpack=bool(rng.random() < 0.2),
        helmet=bool(rng.random() < 0.5),
    )


def flat_style(style: PersonStyle, color: Color) -> PersonStyle:
    """The same figure in one flat colour: a printed silhouette."""
    return replace(style, skin=color, hair=color, top=color, bottom=color, shoes=color, backpack=False)


class _Frame:
    """Local metres -> pixels."""

    def __init__(self, u0: float, v0: float, s: float) -> None:
        self.u0, self.v0, self.s = u0, v0, s

    def __call__(self, x: float, y: float) -> np.ndarray:
        return np.array([self.u0 + self.s * x, self.v0 - self.s * y])


def _dim(color: Color, k: float = 0.72) -> Color:
    return (int(color[0] * k), int(color[1] * k), int(color[2] * k))


def _limb(origin: np.ndarray, length: float, angle: float, facing: float) -> np.ndarray:
    """End of a segment hanging from ``origin`` at ``angle`` from straight down (positive = forward)."""
    return origin + length * np.array([facing * np.sin(angle), -np.cos(angle)])


def draw_pedestrian(canvas: Canvas, u0: float, v0: float, s: float, st: PersonStyle) -> None:
    """A walking or standing person whose feet touch pixel row ``v0`` (``s`` pixels per metre)."""
    if st.view is View.SIDE:
        _side_walker(canvas, _Frame(u0, v0, s), st, s)
    else:
        _frontal_walker(canvas, _Frame(u0, v0, s), st, s)


def _side_walker(canvas: Canvas, P: _Frame, st: PersonStyle, s: float) -> None:
    H, d = st.height, st.facing
    hip = np.array([0.0, 0.53 * H])
    legs, arms = [], []
    for i in (0, 1):
        ph = st.phase + i * np.pi
        theta = st.stride * np.sin(ph)
        bend = st.stride * 1.3 * max(0.0, np.cos(ph))
        knee = _limb(hip, 0.245 * H, theta, d)
        ankle = _limb(knee, 0.245 * H, theta - bend, d)
        legs.append((knee, ankle))
    lift = 0.035 * H - min(legs[0][1][1], legs[1][1][1])
    hip = hip + [0, lift]
    legs = [(k + [0, lift], a + [0, lift]) for k, a in legs]
    shoulder = hip + [0.02 * H * d, 0.285 * H]
    for i in (0, 1):
        ph = st.phase + i * np.pi
        alpha = -0.8 * st.stride * np.sin(ph)
        elbow = _limb(shoulder, 0.17 * H, alpha, d)
        arms.append((elbow, _limb(elbow, 0.16 * H, alpha + 0.35, d)))
    w = s * H
    order = (1, 0)  # far limbs first, darker
    for n, i in enumerate(order):
        k = 0.7 if n == 0 else 1.0
        knee, ankle = legs[i]
        if not st.dress:
            canvas.line(P(*hip), P(*knee), _dim(st.bottom, k), 0.075 * w)
        canvas.line(P(*knee), P(*ankle), _dim(st.bottom if not st.dress else st.skin, k), 0.058 * w)
        canvas.line(P(*ankle), P(*(ankle + [0.1 * H * d, -0.01 * H])), _dim(st.shoes, k), 0.045 * w)
        if n == 0:
            elbow, wrist = arms[i]
            canvas.line(P(*shoulder), P(*elbow), _dim(st.top, 0.7), 0.05 * w)
            canvas.line(P(*elbow), P(*wrist), _dim(st.skin, 0.7), 0.042 * w)
            if st.backpack:
                canvas.poly(_box(P, shoulder + [-0.11 * H * d, -0.03 * H], 0.09 * H, 0.2 * H), (40, 45, 50))
            torso = np.array([shoulder + [-0.06 * H, 0.01 * H], shoulder + [0.06 * H, 0.01 * H],
                              hip + [0.055 * H, 0], hip + [-0.055 * H, 0]])  # fmt: skip
            canvas.poly(np.array([P(*p) for p in torso]), st.top)
            if st.dress:
                skirt = [hip + [-0.06 * H, 0.02 * H], hip + [0.06 * H, 0.02 * H], hip + [0.1 * H, -0.24 * H],
                         hip + [-0.1 * H, -0.24 * H]]  # fmt: skip
                canvas.poly(np.array([P(*p) for p in skirt]), st.bottom)
    elbow, wrist = arms[0]
    canvas.line(P(*shoulder), P(*elbow), st.top, 0.05 * w)
    canvas.line(P(*elbow), P(*wrist), st.skin, 0.042 * w)
    neck = shoulder + [0.012 * H * d, 0.05 * H]
    canvas.line(P(*shoulder), P(*neck), st.skin, 0.04 * w)
    _head(canvas, P, neck + [0.012 * H * d, 0.07 * H], 0.062 * H, st, s, facing_camera=False)


def _frontal_walker(canvas: Canvas, P: _Frame, st: PersonStyle, s: float) -> None:
    H = st.height
    w = s * H
    feet = []
    for i, side in enumerate((-1.0, 1.0)):
        ph = st.phase + i * np.pi
        hip = np.array([side * 0.055 * H, 0.53 * H])
        ankle = np.array([side * 0.05 * H, 0.035 * H - 0.03 * H * st.stride * np.sin(ph)])
        knee = (hip + ankle) / 2 + [side * 0.006 * H, 0.02 * H * st.stride * max(0.0, np.cos(ph))]
        feet.append((hip, knee, ankle))
    for hip, knee, ankle in feet:
        if not st.dress:
            canvas.line(P(*hip), P(*knee), st.bottom, 0.08 * w)
        canvas.line(P(*knee), P(*ankle), st.bottom if not st.dress else st.skin, 0.062 * w)
        canvas.line(P(*ankle), P(*(ankle + [0, -0.012 * H])), st.shoes, 0.06 * w)
    sh = 0.285 * H + 0.53 * H
    torso = np.array([[-0.125 * H, sh], [0.125 * H, sh], [0.09 * H, 0.52 * H], [-0.09 * H, 0.52 * H]])
    if st.backpack and st.view is View.BACK:
        canvas.poly(np.array([P(*p) for p in torso * [0.8, 1.0] + [0, -0.02 * H]]), (40, 45, 50))
    canvas.poly(np.array([P(*p) for p in torso]), st.top)
    if st.backpack and st.view is View.BACK:
        canvas.poly(_box(P, np.array([0.0, sh - 0.2 * H]), 0.17 * H, 0.22 * H), (45, 50, 58))
    if st.dress:
        skirt = np.array([[-0.09 * H, 0.54 * H], [0.09 * H, 0.54 * H], [0.13 * H, 0.3 * H], [-0.13 * H, 0.3 * H]])
        canvas.poly(np.array([P(*p) for p in skirt]), st.bottom)
    for i, side in enumerate((-1.0, 1.0)):
        swing = 0.025 * H * st.stride * np.sin(st.phase + i * np.pi)
        shoulder = np.array([side * 0.115 * H, sh - 0.01 * H])
        elbow = np.array([side * 0.14 * H, 0.65 * H + swing])
        wrist = np.array([side * 0.135 * H, 0.48 * H + 2 * swing])
        canvas.line(P(*shoulder), P(*elbow), st.top, 0.055 * w)
        canvas.line(P(*elbow), P(*wrist), st.skin, 0.045 * w)
    canvas.line(P(0.0, sh), P(0.0, sh + 0.04 * H), st.skin, 0.05 * w)
    _head(canvas, P, np.array([0.0, sh + 0.105 * H]), 0.062 * H, st, s, facing_camera=st.view is View.FRONT)


def _head(
    canvas: Canvas, P: _Frame, centre: np.ndarray, r: float, st: PersonStyle, s: float, facing_camera: bool
) -> None:
    canvas.circle(P(*centre), r * s, st.skin if facing_camera or st.view is View.SIDE else st.hair)
    if s * r >= 2.5:  # hair or helmet cap on bigger heads
        cap = st.hair if not st.helmet else (30, 30, 30)
        canvas.ellipse(P(*(centre + [0, 0.35 * r])), (r * s * 1.02, r * s * 0.7), cap)


def _box(P: _Frame, top_centre: np.ndarray, w: float, h: float) -> np.ndarray:
    x, y = top_centre
    return np.array([P(x - w / 2, y), P(x + w / 2, y), P(x + w / 2, y - h), P(x - w / 2, y - h)])


@dataclass(frozen=True)
class BikeStyle:
    wheel: float  # radius, metres
    frame: Color
    rider: PersonStyle
    lean: float  # torso lean from vertical, radians


def sample_bike(rng: np.random.Generator, view: View) -> BikeStyle:
    rider = sample_person(rng, view, child_p=0.05)
    frames = ((30, 30, 180), (160, 90, 30), (30, 30, 30), (200, 200, 200), (40, 140, 60), (20, 160, 220))
    return BikeStyle(
        wheel=float(rng.uniform(0.31, 0.36)),
        frame=frames[int(rng.integers(len(frames)))],
        rider=replace(rider, stride=0.0, dress=False),
        lean=float(rng.uniform(0.25, 0.75)),
    )


def _ik(hip: np.ndarray, target: np.ndarray, a: float, b: float, bend: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-segment reach from ``hip`` toward ``target``: (knee, foot); the knee bends to ``bend`` (+-1 in x)."""
    v = target - hip
    dist = float(np.clip(np.hypot(*v), abs(a - b) + 1e-6, a + b - 1e-6))
    u = v / max(np.hypot(*v), 1e-9)
    cos_a = (a * a + dist * dist - b * b) / (2 * a * dist)
    ang = np.arccos(np.clip(cos_a, -1, 1))
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    k1, k2 = hip + a * (rot @ u), hip + a * (rot.T @ u)
    knee = k1 if (k1[0] - k2[0]) * bend > 0 else k2
    return knee, hip + dist * u


def draw_cyclist(canvas: Canvas, u0: float, v0: float, s: float, b: BikeStyle, lights: bool) -> None:
    """A rider on a bicycle, wheels on row ``v0``; side view, or seen from behind/in front."""
    if b.rider.view is View.SIDE:
        _side_cyclist(canvas, _Frame(u0, v0, s), b, s, lights)
    else:
        _frontal_cyclist(canvas, _Frame(u0, v0, s), b, s, lights)


def _side_cyclist(canvas: Canvas, P: _Frame, b: BikeStyle, s: float, lights: bool) -> None:
    st, d, r = b.rider, b.rider.facing, b.wheel
    H = st.height
    w = s * H
    rear, front = np.array([-0.52 * d, r]), np.array([0.52 * d, r])
    bb = np.array([-0.06 * d, 0.29])
    seat = np.array([-0.27 * d, 0.84])
    head_top, head_low = np.array([0.36 * d, 0.8]), np.array([0.39 * d, 0.64])
    bar = np.array([0.33 * d, 0.97])
    hip = seat + [0, 0.06]
    shoulder = hip + 0.3 * H * np.array([d * np.sin(b.lean), np.cos(b.lean)])
    pedals = [bb + 0.17 * np.array([d * np.cos(st.phase + i * np.pi), np.sin(st.phase + i * np.pi)]) for i in (0, 1)]
    legs = [_ik(hip, p, 0.26 * H, 0.26 * H, d) for p in pedals]
    elbow, hand = _ik(shoulder, bar, 0.17 * H, 0.17 * H, -d)
    # far side first
    knee, foot = legs[1]
    canvas.line(P(*hip), P(*knee), _dim(st.bottom), 0.07 * w)
    canvas.line(P(*knee), P(*foot), _dim(st.bottom), 0.055 * w)
    for hub in (rear, front):
        canvas.circle(P(*hub), r * s, (28, 28, 30), 0.05 * s)
        if r * s > 9:
            canvas.circle(P(*hub), r * s * 0.86, (150, 150, 155), max(1.0, 0.012 * s))
            for a in np.linspace(0, np.pi, 3, endpoint=False) + st.phase:
                off = 0.85 * r * np.array([np.cos(a), np.sin(a)])
                canvas.line(P(*(hub - off)), P(*(hub + off)), (140, 140, 145), 1)
    tube = 0.035 * s
    for p, q in ((bb, seat), (bb, head_low), (seat + [0.02 * d, -0.06], head_top), (bb, rear),
                 (seat + [0.02 * d, -0.06], rear), (head_low, front), (head_top, head_low)):  # fmt: skip
        canvas.line(P(*p), P(*q), b.frame, tube)
    canvas.line(P(*head_top), P(*bar), (40, 40, 40), tube)
    canvas.line(P(*(bar - [0.06 * d, 0])), P(*(bar + [0.04 * d, 0])), (40, 40, 40), tube)
    canvas.line(P(*pedals[0]), P(*pedals[1]), (60, 60, 60), 0.025 * s)
    canvas.line(P(*(seat - [0.09 * d, -0.03])), P(*(seat + [0.08 * d, 0.03])), (25, 25, 25), 0.05 * s)
    torso = np.array([hip + [-0.07 * H * d, 0], hip + [0.05 * H * d, 0], shoulder + [0.05 * H * d, 0.01],
                      shoulder + [-0.06 * H * d, 0.01]])  # fmt: skip
    canvas.poly(np.array([P(*p) for p in torso]), st.top)
    knee, foot = legs[0]
    canvas.line(P(*hip), P(*knee), st.bottom, 0.075 * w)
    canvas.line(P(*knee), P(*foot), st.bottom, 0.058 * w)
    canvas.line(P(*foot), P(*(foot + [0.09 * H * d, 0])), st.shoes, 0.04 * w)
    canvas.line(P(*shoulder), P(*elbow), st.top, 0.05 * w)
    canvas.line(P(*elbow), P(*hand), st.skin, 0.042 * w)
    neck = shoulder + 0.05 * H * np.array([d * np.sin(b.lean * 0.5), np.cos(b.lean * 0.5)])
    _head(canvas, P, neck + [0.04 * H * d, 0.06 * H], 0.062 * H, st, s, facing_camera=False)
    if lights:
        canvas.emit(P(*(bar + [0.05 * d, -0.07])), max(1.0, 0.06 * s), (230, 240, 255))
        canvas.emit(P(*(seat - [0.12 * d, 0.08])), max(1.0, 0.05 * s), (40, 40, 255))


def _frontal_cyclist(canvas: Canvas, P: _Frame, b: BikeStyle, s: float, lights: bool) -> None:
    st, r = b.rider, b.wheel
    H = st.height
    w = s * H
    canvas.ellipse(P(0.0, r), (0.03 * s, r * s), (28, 28, 30))
    hip_y = 0.9
    sh_y = hip_y + 0.3 * H * np.cos(b.lean)
    for i, side in enumerate((-1.0, 1.0)):
        ph = st.phase + i * np.pi
        hip = np.array([side * 0.07 * H, hip_y])
        foot = np.array([side * 0.1, 0.29 + 0.17 * np.sin(ph)])
        knee = np.array([side * 0.1 * H, (hip_y + foot[1]) / 2 + 0.08])
        canvas.line(P(*hip), P(*knee), st.bottom, 0.075 * w)
        canvas.line(P(*knee), P(*foot), st.bottom, 0.058 * w)
        canvas.line(P(*foot), P(*(foot + [side * 0.03, 0])), st.shoes, 0.05 * w)
    bar = np.array([[-0.29, 0.98], [0.29, 0.98]])
    canvas.line(P(*bar[0]), P(*bar[1]), (40, 40, 40), 0.03 * s)
    canvas.line(P(0.0, 0.55), P(0.0, 0.98), b.frame, 0.04 * s)
    torso = np.array([[-0.12 * H, sh_y], [0.12 * H, sh_y], [0.09 * H, hip_y], [-0.09 * H, hip_y]])
    canvas.poly(np.array([P(*p) for p in torso]), st.top)
    if st.backpack and st.view is View.BACK:
        canvas.poly(_box(P, np.array([0.0, sh_y - 0.03]), 0.17 * H, 0.2 * H), (45, 50, 58))
    for side in (-1.0, 1.0):
        shoulder = np.array([side * 0.11 * H, sh_y - 0.01])
        elbow = np.array([side * 0.2, (sh_y + 0.98) / 2])
        canvas.line(P(*shoulder), P(*elbow), st.top, 0.05 * w)
        canvas.line(P(*elbow), P(*bar[int(side > 0)]), st.skin, 0.042 * w)
    _head(canvas, P, np.array([0.0, sh_y + 0.1 * H]), 0.062 * H, st, s, facing_camera=st.view is View.FRONT)
    if lights:
        color = (40, 40, 255) if st.view is View.BACK else (230, 240, 255)
        canvas.emit(P(0.0, 0.72 if st.view is View.BACK else 0.9), max(1.0, 0.05 * s), color)
