"""A camera's tile plan: its `tiling:` section turned into tiles for the frames it really sends.

The plan is made per frame size (a camera that switches streams gets a new plan) from the
watched area — the zones grown upwards by a person's height, minus the private masks — so a
wide view with one small plaza costs few tiles. Everything an installer should know about the
plan (a grid reduced to fit, frames smaller than the configured resolution, tiling that is
not needed) comes back as warnings for the camera's log, never as an exception: bad tiling
degrades to fewer tiles, the camera keeps analysing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from detectors.tiling import MAX_TILES, Rect, TilePlan, auto_grid, grid_tiles, tile_side_for
from gateway.analytics import CameraAnalytics
from gateway.config.models import Camera
from gateway.config.tiling import MIN_TILE_PX, TilingSection
from gateway.video.motion import region_mask

log = logging.getLogger(__name__)

REGION_MARGIN = 0.5
"""The zones' box is widened by this share of `min_person_px` on each side (a body is wider
than its feet's point)."""


@dataclass(frozen=True)
class PlannedTiling:
    """The plan (None: no tiling, the whole frame at the input size) and what to tell the installer."""

    plan: TilePlan | None
    warnings: tuple[str, ...] = ()


def camera_tile_plan(camera: Camera, analytics: CameraAnalytics, input_size: tuple[int, int]) -> PlannedTiling:
    """The plan for a camera's analysed frames (their size and zones are the analytics': a patrol
    stop's view has its own)."""
    tiling = camera.tiling
    if tiling.mode == "off":
        return PlannedTiling(None)
    size = analytics.frame_size
    watched = None
    if tiling.region == "zones" and analytics.zones:
        watched = region_mask((size[1], size[0]), list(analytics.zones.values()), analytics.masks,
                              grow_up_px=round(2 * tiling.min_person_px))
    return plan_tiling(tiling, size, watched, input_size, camera.resolution)


def log_plan(camera_id: str, planned: PlannedTiling) -> None:
    """Tell the installer how the camera's frames are cut, and what is wrong with its tiling."""
    for warning in planned.warnings:
        log.warning("camera %s: tiling: %s", camera_id, warning)
    plan = planned.plan
    if plan is not None:
        log.info("camera %s: tiled detection: %d×%d tiles of %dx%d over %dx%d at (%d, %d)%s: %d detector runs "
                 "per frame", camera_id, *plan.grid, plan.tiles[0].width, plan.tiles[0].height,
                 plan.region.width, plan.region.height, plan.region.x0, plan.region.y0,
                 " plus the whole frame" if plan.whole_frame else "", plan.inferences)


def plan_tiling(section: TilingSection, frame_size: tuple[int, int], watched: np.ndarray | None,
                input_size: tuple[int, int], resolution: tuple[int, int] | None = None) -> PlannedTiling:
    """The tile plan for frames of `frame_size` (w, h).

    watched: uint8 mask (frame size) of the pixels analysis looks at, or None for the whole frame;
    resolution: the camera's configured [width, height] (the frames it was planned for)."""
    if section.mode == "off":
        return PlannedTiling(None)
    warnings: list[str] = []
    width, height = frame_size
    if resolution is not None and (width < resolution[0] or height < resolution[1]):
        warnings.append(
            f"frames arrive at {width}x{height}, smaller than the configured resolution "
            f"{resolution[0]}x{resolution[1]}: people are {resolution[1] / height:.1f}x smaller than tiling "
            "was planned for (analyse the camera's main stream: its ONVIF profile or stream URL)")
    region = _region(section, frame_size, watched)
    if section.mode == "grid" and section.grid is not None:
        cols, rows = section.grid
        fit_cols = max(1, min(cols, region.width // MIN_TILE_PX))
        fit_rows = max(1, min(rows, region.height // MIN_TILE_PX))
        if (fit_cols, fit_rows) != (cols, rows):
            warnings.append(f"grid {cols}×{rows} cuts the {region.width}x{region.height} tiled area into tiles "
                            f"under {MIN_TILE_PX} px; using {fit_cols}×{fit_rows}")
            cols, rows = fit_cols, fit_rows
    else:
        tile = tile_side_for(section.min_person_px, input_size)
        cols, rows = auto_grid(region, tile, section.overlap)
        if cols * rows > MAX_TILES:
            shrink = (cols * rows / MAX_TILES) ** 0.5
            cols, rows = max(1, int(cols / shrink)), max(1, int(rows / shrink))
            warnings.append(f"finding {section.min_person_px:g} px people in {region.width}x{region.height} "
                            f"needs more than {MAX_TILES} tiles; capped at {cols}×{rows} (people under about "
                            f"{section.min_person_px * shrink:.0f} px may be missed)")
    if cols * rows == 1 and (region.width, region.height) == (width, height):
        return PlannedTiling(None, (*warnings, "tiling not needed: people of min_person_px are found on the "
                                                "whole frame at the detector's input size"))
    tiles = grid_tiles(region, cols, rows, section.overlap)
    return PlannedTiling(TilePlan((width, height), region, tiles, section.whole_frame), tuple(warnings))


def _region(section: TilingSection, frame_size: tuple[int, int], watched: np.ndarray | None) -> Rect:
    """The area to tile: the whole frame, or the bounding box of the watched pixels widened a
    little (people standing at the edge of a zone)."""
    width, height = frame_size
    if section.region == "frame" or watched is None or not watched.any():
        return Rect(0, 0, width, height)
    x, y, w, h = cv2.boundingRect(watched)
    margin = round(section.min_person_px * REGION_MARGIN)
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(width, x + w + margin), min(height, y + h + margin)
    return Rect(x0, y0, x1, y1)
