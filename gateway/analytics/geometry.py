"""Where people are: polygons in frame pixels, foot points, and distances/areas on the ground.

Everything here is plain numpy over arrays of points so that it costs microseconds per frame.
A person's position is the foot point (bottom centre of the box): that is where they stand on
the ground, which is what zones, masks and distances are about.

Distances and areas come from a `GroundModel`:
- `GroundPlane` (calibrated): a homography from 4+ image points to metres on the ground.
- `PersonScale` (uncalibrated): distances measured in person heights, a box's height taken as
  1.7 m. This is only sound between people at similar depth, which is exactly the case for the
  near neighbours a gathering is made of; it cannot give areas, so no density without calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from gateway.config.models import Camera

PERSON_HEIGHT_M = 1.7
"""Assumed height of a standing person, the unit of distance when a camera is not calibrated."""


def polygon_to_frame(
    points: Sequence[tuple[float, float]], camera: Camera, frame_size: tuple[int, int]
) -> np.ndarray:
    """Config points (pixels of `camera.resolution`, or 0..1 when normalized) in frame pixels.

    Installers draw zones on one stream (often the main stream) while the gateway may analyse
    another (the sub stream): pixel polygons are scaled by the ratio of the two sizes.
    """
    width, height = frame_size
    scale: tuple[float, float]
    if camera.coordinates == "normalized":
        scale = (width, height)
    elif camera.resolution is not None:
        scale = (width / camera.resolution[0], height / camera.resolution[1])
    else:
        scale = (1.0, 1.0)
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) * np.asarray(scale)


def frame_rectangle(frame_size: tuple[int, int]) -> np.ndarray:
    """The whole frame as a polygon, the 'zone' of rules without one."""
    width, height = frame_size
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)


def foot_points(boxes: np.ndarray) -> np.ndarray:
    """(N, 2) bottom-centre of x1, y1, x2, y2 boxes: where each person stands."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) * 0.5, boxes[:, 3]], axis=1)


class Region:
    """A polygon prepared for containment tests: its edges are computed once, not per frame."""

    def __init__(self, polygon: np.ndarray):
        self.polygon = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        x1, y1 = self.polygon[:, 0], self.polygon[:, 1]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        self._x1, self._y1, self._y2 = x1, y1, y2
        with np.errstate(divide="ignore", invalid="ignore"):
            self._slope = (x2 - x1) / (y2 - y1)  # horizontal edges never straddle: value unused

    def contains(self, points: np.ndarray) -> np.ndarray:
        """bool (N,): which points lie inside (even-odd ray casting, all points x all edges)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        x, y = points[:, :1], points[:, 1:]
        straddles = (self._y1 > y) != (self._y2 > y)
        with np.errstate(invalid="ignore"):
            x_cross = self._x1 + (y - self._y1) * self._slope
        return (np.count_nonzero(straddles & (x < x_cross), axis=1) % 2) == 1


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """bool (N,): which points lie inside the polygon (for one-off tests; see `Region`)."""
    return Region(polygon).contains(points)


def polygon_area(polygon: np.ndarray) -> float:
    """Area of a simple polygon (shoelace), in the square of its units."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) * 0.5)


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    """(N, N) Euclidean distances between rows of `points`."""
    x, y = points[:, 0], points[:, 1]
    return np.hypot(x[:, None] - x, y[:, None] - y)


class GroundModel(Protocol):
    """Turns boxes in frame pixels into distances (and areas) in metres."""

    calibrated: bool

    def distances_m(self, boxes: np.ndarray) -> np.ndarray:
        """(N, N) ground distances in metres between the people in `boxes`."""
        ...

    def area_m2(self, polygon: np.ndarray) -> float | None:
        """Ground area of a frame polygon, or None when it cannot be measured."""
        ...


class PersonScale:
    """Uncalibrated camera: pixel distances divided by the pair's mean box height, times 1.7 m."""

    calibrated = False

    def distances_m(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        heights = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        metres_per_pixel = 2 * PERSON_HEIGHT_M / (heights[:, None] + heights)  # of the pair's mean height
        return pairwise_distances(foot_points(boxes)) * metres_per_pixel

    def area_m2(self, polygon: np.ndarray) -> float | None:
        return None


class GroundPlane:
    """Calibrated camera: a homography maps foot points onto the ground plane in metres."""

    calibrated = True

    def __init__(self, image_points: np.ndarray, ground_points_m: np.ndarray):
        image_points = np.asarray(image_points, dtype=np.float64).reshape(-1, 2)
        ground_points_m = np.asarray(ground_points_m, dtype=np.float64).reshape(-1, 2)
        homography, _ = cv2.findHomography(image_points, ground_points_m, 0)
        if homography is None or not _invertible(homography):
            raise ValueError(
                "calibration points are degenerate (collinear or repeated): "
                "need 4+ points spread over the ground, no three on one line"
            )
        self.homography = homography
        centre = np.append(image_points.mean(axis=0), 1.0)
        self._valid_sign = float(np.sign(homography[2] @ centre))

    def to_ground(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) ground coordinates (m) of image points; NaN for points at or above the horizon."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        projected = np.c_[points, np.ones(len(points))] @ self.homography.T
        w = projected[:, 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            ground = projected[:, :2] / w
        # Points on the far side of the horizon project "behind" the camera: w has the other
        # sign than at the calibration points. Those have no position on the ground.
        ground[(w[:, 0] * self._valid_sign) <= 0] = np.nan
        return ground

    def distances_m(self, boxes: np.ndarray) -> np.ndarray:
        distances = pairwise_distances(self.to_ground(foot_points(boxes)))
        return np.nan_to_num(distances, nan=np.inf)

    def area_m2(self, polygon: np.ndarray) -> float | None:
        ground = self.to_ground(polygon)
        if not np.all(np.isfinite(ground)):
            return None
        return polygon_area(ground)


def _invertible(matrix: np.ndarray) -> bool:
    """A usable homography: finite and well-conditioned (collinear points give a singular one)."""
    return bool(np.all(np.isfinite(matrix)) and np.linalg.cond(matrix) < 1e12)


def ground_model(camera: Camera, frame_size: tuple[int, int]) -> GroundModel:
    """The camera's calibration as a ground plane in frame pixels, or the person-height scale."""
    if camera.calibration is None:
        return PersonScale()
    image_points = polygon_to_frame(camera.calibration.image_points, camera, frame_size)
    return GroundPlane(image_points, np.asarray(camera.calibration.ground_points_m))
