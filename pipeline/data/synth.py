"""One synthetic dash-camera frame: layout on the ground plane, far-to-near drawing, exact occlusion, labels.

:func:`render_frame` is a pure function of ``(seed, split, index, width, height)``: its random generator is
seeded from those numbers alone, so any frame can be regenerated on its own and the same seed gives the same
pixels. Objects (pedestrian, cyclist, car) and distractors are placed on the ground plane (so they shrink toward
the horizon), sorted far to near and drawn into an id map beside the image. Each object's box is the tight box
of its own silhouette (amodal: parts hidden later by nearer things still count); its occluded fraction is the
share of its silhouette that nearer things cover in the end. Objects too small (< ``MIN_BOX`` px), too hidden
(< ``MIN_VISIBLE`` visible) or too truncated by the frame edge become ignore regions instead of labels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline.data.synth_canvas import Canvas, Workspace
from pipeline.data.synth_conditions import Conditions, Weather, finish, sample_conditions
from pipeline.data.synth_distractors import (
    DistractorKind,
    draw_bin,
    draw_bollard,
    draw_pole,
    draw_poster,
    draw_sign,
    draw_tree,
    shadow_polygon,
)
from pipeline.data.synth_geometry import Camera, Street, sample_camera, sample_street
from pipeline.data.synth_people import View, draw_cyclist, draw_pedestrian, sample_bike, sample_person
from pipeline.data.synth_scene import Background, draw_background
from pipeline.data.synth_vehicles import draw_car, sample_car

CLASSES: tuple[str, ...] = ("pedestrian", "cyclist", "car")
SPLIT_CODES = {"train": 0, "val": 1}
MIN_BOX = 4  # pixels, both sides of a labelled box
MIN_VISIBLE = 0.3  # share of the silhouette still visible for a label
MAX_TRUNCATED = 0.6  # share of the box outside the frame beyond which it is an ignore region
MAX_VRU_Z = 70.0  # metres, at reach 1
MAX_CAR_Z = 100.0
Painter = Callable[[Canvas, float, float, float], None]  # (canvas, u0, v0, pixels per metre)


@dataclass(frozen=True)
class _Placed:
    kind: str  # a class name or a distractor kind
    x: float
    z: float
    paint: Painter
    view: str = ""
    height: float = 1.7  # metres, for the cast shadow


@dataclass(frozen=True)
class SynthObject:
    class_id: int
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 pixels (x2, y2 exclusive)
    labelled: bool  # False: an ignore region (too small, hidden or truncated)
    occluded_fraction: float
    truncated_fraction: float
    distance: float  # metres
    view: str


@dataclass(frozen=True)
class SynthDistractor:
    kind: str
    box: tuple[int, int, int, int]
    occluded_fraction: float
    distance: float


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    objects: tuple[SynthObject, ...]
    distractors: tuple[SynthDistractor, ...]
    attributes: dict[str, Any]  # timeofday, weather, noise, blur, scene
    camera: dict[str, float]


def frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)]))


def render_frame(
    seed: int, split: str, index: int, width: int, height: int, work: Workspace | None = None, *, reach: float = 1.0
) -> Frame:
    """Frame ``index`` of ``split`` for ``seed`` at ``width`` x ``height`` pixels.

    ``work`` (optional) is a :class:`Workspace` of that size reused across calls, only for speed. ``reach`` in
    (0, 1] scales the depth range of road users and street objects (1: VRUs out to ``MAX_VRU_Z`` m, cars to
    ``MAX_CAR_Z`` m; 0.3: within about 21 and 30 m, so every labelled object is large).
    """
    if not 0.0 < reach <= 1.0:
        raise ValueError(f"reach: got {reach!r}, expected a number in (0, 1]")
    rng = frame_rng(seed, split, index)
    cond = sample_conditions(rng)
    cam = sample_camera(rng, width, height)
    street = sample_street(rng)
    canvas = Canvas.blank(width, height, lights=cond.lit, depth=cond.weather is Weather.FOG, work=work)
    bg = draw_background(canvas, cam, street, cond, rng)
    flat, upright = _layout(rng, cam, street, bg, cond, reach)
    shadow_k = float(rng.uniform(0.5, 1.3)) if bg.sun_side else 0.0
    entities = flat + sorted(upright, key=lambda p: -p.z)
    own = np.zeros(len(entities) + 1, np.int64)
    boxes: list[tuple[int, int, int, int] | None] = [None]
    truncs = [0.0]
    for oid, p in enumerate(entities, start=1):
        u0, v0 = cam.point(p.x, 0.0, p.z)
        s = cam.scale(p.z)
        if shadow_k and p.kind in CLASSES:
            canvas.begin(0)
            canvas.shade(shadow_polygon(u0, v0, s, p.height * shadow_k, bg.sun_side, 0.5 * cam.cam_height / p.z), 0.6)
        canvas.begin(oid)
        p.paint(canvas, u0, v0, s)
        box, n, trunc = _silhouette(canvas, oid)
        own[oid] = n
        truncs.append(trunc)
        boxes.append(box)
    n_ids = len(entities) + 1
    visible = cv2.calcHist([canvas.ids], [0], None, [n_ids], [0, n_ids]).ravel().astype(np.int64)
    depth = None
    if canvas.bg_depth is not None:  # per-pixel depth: the background's, or the owning entity's
        depth = canvas.work.depth
        lut = np.array([np.inf] + [p.z for p in entities], np.float32)
        np.take(lut, canvas.ids, out=depth)
        np.copyto(depth, canvas.bg_depth, where=canvas.ids == 0)
    image = finish(canvas, cond, rng, depth)
    objects, distractors = _records(entities, boxes, own, visible, truncs)
    attributes = {**cond.attributes(), "scene": "residential" if street.residential else "city street"}
    camera = {"focal": round(cam.focal, 2), "cx": round(cam.cx, 2), "horizon": round(cam.horizon, 2),
              "height_m": round(cam.cam_height, 3)}  # fmt: skip
    return Frame(image, tuple(objects), tuple(distractors), attributes, camera)


def _silhouette(canvas: Canvas, oid: int) -> tuple[tuple[int, int, int, int] | None, int, float]:
    """(tight box of ``oid``'s pixels or None, their count, truncated fraction of its unclipped extent)."""
    x1, y1, x2, y2 = canvas.extent
    if not np.isfinite(x1):
        return None, 0, 1.0
    w, h = canvas.width, canvas.height
    cx1, cy1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    cx2, cy2 = min(w, int(np.ceil(x2)) + 1), min(h, int(np.ceil(y2)) + 1)
    full = max(x2 - x1, 1e-6) * max(y2 - y1, 1e-6)
    inside = max(0.0, min(x2, w) - max(x1, 0)) * max(0.0, min(y2, h) - max(y1, 0))
    trunc = float(np.clip(1.0 - inside / full, 0.0, 1.0))
    if cx2 <= cx1 or cy2 <= cy1:
        return None, 0, trunc
    mask = canvas.ids[cy1:cy2, cx1:cx2] == oid
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return None, 0, trunc
    box = (cx1 + int(cols[0]), cy1 + int(rows[0]), cx1 + int(cols[-1]) + 1, cy1 + int(rows[-1]) + 1)
    return box, int(mask.sum()), trunc


def _records(
    entities: list[_Placed], boxes: list, own: np.ndarray, visible: np.ndarray, truncs: list[float]
) -> tuple[list[SynthObject], list[SynthDistractor]]:
    objects, distractors = [], []
    for oid, p in enumerate(entities, start=1):
        box = boxes[oid]
        if box is None or own[oid] == 0 or visible[oid] == 0:
            continue
        vis = float(visible[oid]) / float(own[oid])
        occ = round(1.0 - min(vis, 1.0), 3)
        bw, bh = box[2] - box[0], box[3] - box[1]
        if p.kind in CLASSES:
            labelled = bw >= MIN_BOX and bh >= MIN_BOX and vis >= MIN_VISIBLE and truncs[oid] <= MAX_TRUNCATED
            if labelled or (bw >= 2 and bh >= 2):
                objects.append(SynthObject(CLASSES.index(p.kind), box, labelled, occ, round(truncs[oid], 3),
                                           round(p.z, 2), p.view))  # fmt: skip
        elif vis >= 0.2 and bw >= 2 and bh >= 2:
            distractors.append(SynthDistractor(p.kind, box, occ, round(p.z, 2)))
    return objects, distractors


# ---------------------------------------------------------------------------------------------- layout
class _Ground:
    """Footprints already taken on the ground plane (x0, x1, z0, z1), to keep things from overlapping."""

    def __init__(self) -> None:
        self.taken: list[tuple[float, float, float, float]] = []

    def claim(self, x0: float, x1: float, z0: float, z1: float) -> bool:
        for a0, a1, b0, b1 in self.taken:
            if x0 < a1 and a0 < x1 and z0 < b1 and b0 < z1:
                return False
        self.taken.append((x0, x1, z0, z1))
        return True


@dataclass(frozen=True)
class _Site:
    """What placing things in a frame needs: camera, street, drawn background, conditions, depth ``reach``, and the
    ground already taken."""

    cam: Camera
    street: Street
    bg: Background
    cond: Conditions
    reach: float
    ground: _Ground

    def vru_z(self, rng: np.random.Generator) -> float:
        return _vru_z(rng, self.cam, self.reach)


def _in_view(cam: Camera, x: float, z: float, margin: float = 0.05) -> bool:
    u = cam.cx + cam.focal * x / z
    return z > cam.near_z + 0.5 and -margin * cam.width < u < (1 + margin) * cam.width


def _layout(
    rng: np.random.Generator, cam: Camera, street: Street, bg: Background, cond: Conditions, reach: float
) -> tuple[list[_Placed], list[_Placed]]:
    """(flat things drawn first: cast shadows; upright things, drawn far to near afterwards)."""
    site = _Site(cam, street, bg, cond, reach, _Ground())
    upright: list[_Placed] = []
    flat: list[_Placed] = []
    _street_furniture(rng, site, upright)
    for _ in range(min(int(rng.poisson(3.0)), 10)):
        _pedestrian(rng, site, upright)
    for _ in range(min(int(rng.poisson(1.0)), 4)):
        _cyclist(rng, site, upright)
    for _ in range(min(int(rng.poisson(3.0)), 9)):
        _car(rng, site, upright)
    if bg.sun_side:
        for _ in range(int(rng.integers(0, 3))):
            x = rng.uniform(street.road_left - street.sidewalk, street.road_right + street.sidewalk)
            z = rng.uniform(cam.near_z + 2, 40.0)
            if _in_view(cam, x, z, 0.0):
                length, side = rng.uniform(1.2, 3.5), bg.sun_side

                def paint(c: Canvas, u0: float, v0: float, s: float, length=length, side=side, z=z) -> None:
                    c.shade(shadow_polygon(u0, v0, s, length, side, 0.5 * cam.cam_height / z), 0.55, claim=True)

                flat.append(_Placed(DistractorKind.SHADOW.value, x, z, paint))
    return flat, upright


def _vru_z(rng: np.random.Generator, cam: Camera, reach: float) -> float:
    """Depth of a road user or street object: skewed toward the camera (median ~ a third of the way out) so
    that most are learnable, with a long tail of small, far ones up to ``reach * MAX_VRU_Z``."""
    near = max(cam.near_z + 1.0, 5.0)
    return float(near + max(reach * MAX_VRU_Z - near, 0.0) * rng.random() ** 1.5)


def _street_furniture(rng: np.random.Generator, site: _Site, out: list[_Placed]) -> None:
    cam, street, cond, ground = site.cam, site.street, site.cond, site.ground

    def put(kind: str, x: float, z: float, paint: Painter, r: float = 0.3) -> None:
        if _in_view(cam, x, z) and ground.claim(x - r, x + r, z - r, z + r):
            out.append(_Placed(kind, x, z, paint))

    sides = [(False,), (True,), (False, True)][int(rng.choice(3, p=[0.25, 0.25, 0.5]))]
    if rng.random() < 0.85:  # street lamps, regularly spaced
        spacing = rng.uniform(18.0, 32.0)
        for right in sides:
            inner, _ = street.sidewalk_range(right)
            sgn = 1.0 if right else -1.0
            arm = -sgn * rng.uniform(1.2, 2.2) if rng.random() < 0.8 else 0.0
            for z in np.arange(rng.uniform(3.0, spacing), 120.0, spacing):
                put("pole", inner + sgn * 0.5, float(z), functools.partial(_pole, rng=rng, arm=arm, lit=cond.lit))
    if rng.random() < (0.9 if street.residential else 0.45):  # rows of trees
        spacing = rng.uniform(7.0, 14.0)
        for right in sides:
            inner, outer = street.sidewalk_range(right)
            sgn = 1.0 if right else -1.0
            x = outer + sgn * street.setback / 2 if street.residential else inner + sgn * 1.0
            for z in np.arange(rng.uniform(2.0, spacing), 90.0, spacing):
                put("tree", x, float(z), functools.partial(_tree, rng=rng, dark=cond.lit), r=0.5)
    for _ in range(int(rng.poisson(1.2))):
        right = bool(rng.random() < 0.6)
        inner, _ = street.sidewalk_range(right)
        put("sign", inner + (0.35 if right else -0.35), site.vru_z(rng), functools.partial(_sign, rng=rng))
    if rng.random() < 0.3:
        right = bool(rng.random() < 0.6)
        inner, _ = street.sidewalk_range(right)
        z0 = rng.uniform(cam.near_z + 2, 40.0)
        for k in range(int(rng.integers(3, 8))):
            put("bollard", inner + (0.4 if right else -0.4), z0 + 1.5 * k, functools.partial(_bollard, rng=rng), 0.2)
    for _ in range(int(rng.poisson(0.8))):
        right = bool(rng.random() < 0.5)
        inner, outer = street.sidewalk_range(right)
        x = rng.uniform(min(inner, outer), max(inner, outer))
        put("bin", x, site.vru_z(rng), functools.partial(_bin, rng=rng))
    for _ in range(int(rng.choice(3, p=[0.35, 0.45, 0.2]))):
        right = bool(rng.random() < 0.5)
        _, outer = street.sidewalk_range(right)
        x = outer - (0.8 if right else -0.8)
        put("poster", x, float(rng.uniform(8.0, 55.0)), functools.partial(_poster, rng=rng, billboard=False), 0.8)
    if rng.random() < 0.12:
        right = bool(rng.random() < 0.5)
        x = street.facade_x(right) - (1.0 if right else -1.0)
        put("poster", x, float(rng.uniform(20.0, 80.0)), functools.partial(_poster, rng=rng, billboard=True), 1.5)


# Painters take (canvas, u0, v0, s) first so functools.partial can bind the rest.
def _pole(c: Canvas, u0: float, v0: float, s: float, *, rng: np.random.Generator, arm: float, lit: bool) -> None:
    draw_pole(c, u0, v0, s, rng, arm, lit)


def _tree(c: Canvas, u0: float, v0: float, s: float, *, rng: np.random.Generator, dark: bool) -> None:
    draw_tree(c, u0, v0, s, rng, dark)


def _sign(c: Canvas, u0: float, v0: float, s: float, *, rng: np.random.Generator) -> None:
    draw_sign(c, u0, v0, s, rng)


def _bollard(c: Canvas, u0: float, v0: float, s: float, *, rng: np.random.Generator) -> None:
    draw_bollard(c, u0, v0, s, rng)


def _bin(c: Canvas, u0: float, v0: float, s: float, *, rng: np.random.Generator) -> None:
    draw_bin(c, u0, v0, s, rng)


def _poster(c: Canvas, u0: float, v0: float, s: float, *, rng: np.random.Generator, billboard: bool) -> None:
    draw_poster(c, u0, v0, s, rng, billboard)


def _pedestrian(rng: np.random.Generator, site: _Site, out: list[_Placed]) -> None:
    cam, street, bg, ground = site.cam, site.street, site.bg, site.ground
    for _ in range(6):
        if rng.random() < 0.25:  # crossing the road, often on the zebra
            near_crossing = bg.crosswalk_z and rng.random() < 0.7 and bg.crosswalk_z < site.reach * MAX_VRU_Z
            z = bg.crosswalk_z + rng.uniform(0.5, 2.5) if near_crossing else site.vru_z(rng)
            x = float(rng.uniform(street.road_left + 0.5, street.road_right - 0.5))
            view = View.SIDE
        else:
            right = bool(rng.random() < 0.5)
            inner, outer = street.sidewalk_range(right)
            x = float(rng.uniform(min(inner, outer) + 0.3, max(inner, outer) - 0.3))
            z = site.vru_z(rng)
            view = (View.FRONT, View.BACK, View.SIDE)[int(rng.choice(3, p=[0.35, 0.35, 0.3]))]
        if _in_view(cam, x, z) and ground.claim(x - 0.25, x + 0.25, z - 0.25, z + 0.25):
            style = sample_person(rng, view)
            out.append(
                _Placed("pedestrian", x, z, functools.partial(draw_pedestrian, st=style), view.value, style.height)
            )
            if rng.random() < 0.25:  # a companion walking alongside, often overlapping
                x2, z2 = x + rng.choice([-1.0, 1.0]) * rng.uniform(0.45, 0.8), z + rng.uniform(-0.3, 1.5)
                if _in_view(cam, x2, z2) and ground.claim(x2 - 0.2, x2 + 0.2, z2 - 0.2, z2 + 0.2):
                    st2 = sample_person(rng, view, child_p=0.3)
                    out.append(_Placed("pedestrian", x2, z2, functools.partial(draw_pedestrian, st=st2), view.value,
                                       st2.height))  # fmt: skip
            return


def _cyclist(rng: np.random.Generator, site: _Site, out: list[_Placed]) -> None:
    cam, street, bg, ground, lit = site.cam, site.street, site.bg, site.ground, site.cond.lit
    for _ in range(6):
        mode = int(rng.choice(4, p=[0.5, 0.15, 0.25, 0.1]))
        z = site.vru_z(rng)
        if mode == 0 or (mode == 1 and not street.lanes_left):  # riding ahead near the right kerb
            x, view, foot = street.road_right - rng.uniform(0.6, 1.3), View.BACK, (0.35, 0.0, 1.8)
        elif mode == 1:  # oncoming near the left kerb
            x, view, foot = street.road_left + rng.uniform(0.6, 1.3), View.FRONT, (0.35, 0.0, 1.8)
        elif mode == 2:  # crossing
            if bg.crosswalk_z and rng.random() < 0.5 and bg.crosswalk_z < site.reach * MAX_VRU_Z:
                z = bg.crosswalk_z + rng.uniform(0.5, 2.5)
            x, view, foot = rng.uniform(street.road_left + 1, street.road_right - 1), View.SIDE, (0.9, -0.3, 0.3)
        else:  # on the sidewalk
            inner, outer = street.sidewalk_range(bool(rng.random() < 0.5))
            x, view, foot = (inner + outer) / 2, (View.FRONT, View.BACK)[int(rng.integers(2))], (0.35, 0.0, 1.8)
        if _in_view(cam, x, z) and ground.claim(x - foot[0], x + foot[0], z + foot[1], z + foot[2]):
            bike = sample_bike(rng, view)
            paint = functools.partial(draw_cyclist, b=bike, lights=lit and rng.random() < 0.6)
            out.append(_Placed("cyclist", float(x), float(z), paint, view.value, 1.7))
            return


def _car(rng: np.random.Generator, site: _Site, out: list[_Placed]) -> None:
    cam, street, ground, reach = site.cam, site.street, site.ground, site.reach
    for _ in range(6):
        mode = int(rng.choice(3, p=[0.6, 0.3, 0.1])) if street.lanes_left else int(rng.choice([0, 2], p=[0.88, 0.12]))
        z = float(rng.uniform(cam.near_z + 1.0, max(reach * MAX_CAR_Z, cam.near_z + 2.0)))
        if mode == 2:  # crossing at a junction
            view = View.SIDE
            x = float(rng.uniform(street.road_left, street.road_right))
            z = float(rng.uniform(max(15.0 * reach, cam.near_z + 2.0), max(60.0 * reach, cam.near_z + 3.0)))
        else:
            lanes = street.lane_centres(oncoming=mode == 1)
            x = float(lanes[int(rng.integers(len(lanes)))] + rng.normal(0, 0.2))
            view = View.FRONT if mode == 1 else View.BACK
            if abs(x) < 1.0 and z < 7.0:  # keep a gap to the car in front of the camera
                continue
        car = sample_car(rng, view)
        fx = (car.length / 2, 0.0, car.width) if view is View.SIDE else (car.width / 2, 0.0, car.length)
        if _in_view(cam, x, z, 0.3) and ground.claim(x - fx[0], x + fx[0], z + fx[1], z + fx[2]):
            zd = z + (car.width / 2 if view is View.SIDE else 0.0)
            paint = functools.partial(draw_car, c=car, lights=site.cond.lit)
            out.append(_Placed("car", x, zd, paint, view.value, car.height))
            return
