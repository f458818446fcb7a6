"""How tall a person looks at each row of the picture: the perspective a counting model corrects.

A person far away covers a few pixels, one close by hundreds; counting by pixels needs each
pixel weighted by how much of a person it is. Edge-like features (outlines, edges) grow with a
person's height, area features with its square, so a pixel at row y is weighted by
`h_ref / h(y)` or `(h_ref / h(y))**2`, where h(y) is the height of a standing person whose feet
are at row y and h_ref the height at the bottom of the picture.

For a camera over flat ground h(y) is a straight line in y, found from (best first):
1. the ground-plane `calibration`: the picture's scale (pixels per metre) at each row, times
   1.7 m;
2. the person boxes the detector sees: a robust line through (foot row, box height);
3. a ramp the installer sets: the height of a person at the top and at the bottom of the picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PERSON_HEIGHT_M = 1.7
MIN_HEIGHT_PX = 8.0
"""No one is counted as smaller than this (keeps far rows from exploding the weights)."""
MIN_BOXES = 30
MIN_ROW_SPREAD = 0.2
"""The boxes' feet must span at least this share of the picture height to fit a line."""
FIT_ROUNDS = 5
MAX_SLOPE = 100.0
MAX_INTERCEPT_PX = 100_000.0
"""A perspective read from a file: a person grows by at most 100 px per row, and is at most
100 000 px tall at row 0 (real ones: a fraction of a pixel per row, tens to hundreds of px)."""


@dataclass(frozen=True)
class Perspective:
    """h(y) = slope * y + intercept, in source-frame pixels; `source` says where it came from."""

    slope: float
    intercept: float
    source: str

    def height_at(self, rows: np.ndarray | float) -> np.ndarray:
        """Height (px) of a standing person whose feet are at `rows` (source pixels)."""
        return np.maximum(self.slope * np.asarray(rows, dtype=np.float64) + self.intercept, MIN_HEIGHT_PX)

    def row_weights(self, rows: np.ndarray, frame_height: int) -> tuple[np.ndarray, np.ndarray]:
        """(edge weights, area weights) for pixels at `rows`: h_ref/h and (h_ref/h)**2."""
        ratio = self.height_at(frame_height) / self.height_at(rows)
        return ratio, ratio**2

    def to_dict(self, frame_height: int) -> dict:
        return {"source": self.source, "slope": round(self.slope, 6), "intercept": round(self.intercept, 4),
                "height_px_top": round(float(self.height_at(0.0)), 1),
                "height_px_bottom": round(float(self.height_at(frame_height)), 1)}

    @classmethod
    def from_dict(cls, data: dict) -> Perspective:
        """Raises ValueError unless slope and intercept are plausible finite numbers."""
        slope, intercept = data.get("slope"), data.get("intercept")
        if not (isinstance(slope, int | float) and isinstance(intercept, int | float)) \
                or isinstance(slope, bool) or isinstance(intercept, bool):
            raise ValueError("perspective slope and intercept must be numbers")
        slope, intercept = float(slope), float(intercept)
        if not np.isfinite([slope, intercept]).all():
            raise ValueError("perspective slope and intercept must be finite numbers")
        if abs(slope) > MAX_SLOPE or abs(intercept) > MAX_INTERCEPT_PX:
            raise ValueError(f"perspective slope must be within ±{MAX_SLOPE:g} and intercept within "
                             f"±{MAX_INTERCEPT_PX:g} px (a person's height in pixels per row and at row 0)")
        source = data.get("source", "file")
        return cls(slope, intercept, source[:32] if isinstance(source, str) else "file")


def from_ramp(top_px: float, bottom_px: float, frame_height: int) -> Perspective:
    """The installer's estimate: a person is `top_px` tall at the top row, `bottom_px` at the bottom."""
    return Perspective((bottom_px - top_px) / frame_height, float(top_px), "ramp")


def from_boxes(boxes: np.ndarray, frame_height: int) -> Perspective | None:
    """A robust line through the detector's person boxes (N x 4, x1 y1 x2 y2), or None when there
    are too few of them, their feet do not spread over enough rows, or the line is implausible
    (people higher up in the picture coming out larger)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) < MIN_BOXES:
        return None
    feet, heights = boxes[:, 3], boxes[:, 3] - boxes[:, 1]
    if np.ptp(feet) < MIN_ROW_SPREAD * frame_height:
        return None
    design = np.c_[feet, np.ones_like(feet)]
    keep = np.ones(len(feet), bool)
    for _ in range(FIT_ROUNDS):
        (slope, intercept), *_ = np.linalg.lstsq(design[keep], heights[keep], rcond=None)
        residual = heights - design @ (slope, intercept)
        spread = 1.5 * float(np.median(np.abs(residual[keep]))) + 1e-6
        keep = np.abs(residual) < 2.5 * spread
        if keep.sum() < MIN_BOXES // 2:
            return None
    if slope < 0 or slope * frame_height + intercept <= MIN_HEIGHT_PX:
        return None
    return Perspective(float(slope), float(intercept), "detector")


def from_ground_plane(to_ground: Callable[[np.ndarray], np.ndarray], frame_size: tuple[int, int]) -> Perspective | None:
    """From a calibrated ground plane (`to_ground`: image points -> metres, NaN beyond the
    horizon): the horizontal scale at the picture's centre column at every row, times 1.7 m."""
    width, height = frame_size
    rows = np.linspace(0, height, 25)
    half = width * 0.05
    centre = width / 2
    left = to_ground(np.c_[np.full_like(rows, centre - half), rows])
    right = to_ground(np.c_[np.full_like(rows, centre + half), rows])
    metres = np.hypot(*(right - left).T)
    valid = np.isfinite(metres) & (metres > 0)
    if valid.sum() < 2:
        return None
    heights = PERSON_HEIGHT_M * (2 * half) / metres[valid]
    slope, intercept = np.polyfit(rows[valid], heights, 1)
    return Perspective(float(slope), float(intercept), "calibration")
