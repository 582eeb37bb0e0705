"""Camera and street layout of a synthetic road scene (a flat ground plane seen by a pinhole dash camera).

World coordinates, metres: X to the right, Y up from the ground, Z forward from the camera. A point projects to
image pixels ``u = cx + f X / Z`` and ``v = horizon + f (cam_height - Y) / Z``, so everything standing on the ground
shrinks toward the horizon row and converges on the vanishing point ``(cx, horizon)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAR_Z = 400.0  # metres: where the road "ends" (a few pixels under the horizon)


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera at ``cam_height`` metres, image ``width`` x ``height`` pixels."""

    width: int
    height: int
    focal: float  # pixels
    cx: float  # vanishing point column
    horizon: float  # horizon row
    cam_height: float  # metres

    def project(self, x: np.ndarray | float, y: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
        """World points -> pixels, shape (..., 2) as (u, v); ``z`` must be > 0."""
        inv = self.focal / np.asarray(z, np.float64)
        u = self.cx + np.multiply(x, inv)
        v = self.horizon + np.multiply(np.subtract(self.cam_height, y), inv)
        shape = np.broadcast_shapes(np.shape(u), np.shape(v))
        out = np.empty((*shape, 2))
        out[..., 0], out[..., 1] = u, v
        return out

    def point(self, x: float, y: float, z: float) -> tuple[float, float]:
        """One world point -> (u, v) pixels, in plain floats."""
        return self.cx + self.focal * x / z, self.horizon + self.focal * (self.cam_height - y) / z

    def scale(self, z: float) -> float:
        """Pixels per metre for a fronto-parallel object at depth ``z``."""
        return self.focal / z

    def ground_row(self, z: float) -> float:
        return self.horizon + self.focal * self.cam_height / z

    def depth_of_row(self, v: np.ndarray | float) -> np.ndarray:
        """Depth of the ground at image row(s) ``v`` (inf at and above the horizon)."""
        dv = np.asarray(v, np.float64) - self.horizon
        with np.errstate(divide="ignore"):
            return np.where(dv > 0, self.focal * self.cam_height / np.maximum(dv, 1e-9), np.inf)

    @property
    def near_z(self) -> float:
        """Depth of the ground seen at the bottom image row."""
        return self.focal * self.cam_height / max(self.height - self.horizon, 1e-9)

    def z_for_column(self, x: float, u: float) -> float:
        """Depth at which world column ``x`` projects to image column ``u`` (inf if never)."""
        du = u - self.cx
        return self.focal * x / du if du * x > 0 else np.inf


@dataclass(frozen=True)
class Street:
    """Lanes and kerbs, as lateral positions (metres) with the camera at X = 0, in the middle of its lane."""

    lane_width: float
    lanes_right: int  # same direction as the camera, including its own lane
    lanes_left: int  # oncoming lanes
    sidewalk: float  # sidewalk width, both sides
    setback: float  # verge between sidewalk and buildings
    residential: bool

    @property
    def road_right(self) -> float:
        return self.lane_width * (self.lanes_right - 0.5)

    @property
    def road_left(self) -> float:
        return -self.lane_width * (self.lanes_left + 0.5)

    @property
    def centre_line(self) -> float:
        return -0.5 * self.lane_width

    def lane_centres(self, oncoming: bool) -> list[float]:
        if oncoming:
            return [self.centre_line - self.lane_width * (i + 0.5) for i in range(self.lanes_left)]
        return [self.lane_width * i for i in range(self.lanes_right)]

    def sidewalk_range(self, right: bool) -> tuple[float, float]:
        """(inner, outer) lateral limits of a sidewalk, inner next to the kerb."""
        if right:
            return self.road_right, self.road_right + self.sidewalk
        return self.road_left, self.road_left - self.sidewalk

    def facade_x(self, right: bool) -> float:
        inner, outer = self.sidewalk_range(right)
        return outer + (self.setback if right else -self.setback)


def sample_camera(rng: np.random.Generator, width: int, height: int) -> Camera:
    """A dash camera with some pitch (horizon row), yaw (vanishing column), focal length and mount height."""
    return Camera(
        width=width,
        height=height,
        focal=float(width * rng.uniform(0.72, 0.95)),
        cx=float(width * rng.uniform(0.44, 0.56)),
        horizon=float(height * rng.uniform(0.40, 0.50)),
        cam_height=float(rng.uniform(1.25, 1.6)),
    )


def sample_street(rng: np.random.Generator) -> Street:
    residential = bool(rng.random() < 0.35)
    return Street(
        lane_width=float(rng.uniform(3.0, 3.7)),
        lanes_right=int(rng.integers(1, 3)),
        lanes_left=int(rng.integers(0, 3)) if not residential else 1,
        sidewalk=float(rng.uniform(2.0, 4.5)),
        setback=float(rng.uniform(2.0, 7.0) if residential else rng.uniform(0.0, 1.5)),
        residential=residential,
    )
