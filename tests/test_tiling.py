"""Tiled detection's pure logic: the grid, the plan, the merge, and the config's mistakes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from detectors import Detections
from detectors.tiling import (
    RELIABLE_INPUT_PX,
    Rect,
    TilePlan,
    auto_grid,
    detect_tiled,
    grid_tiles,
    merge,
    tile_side_for,
)
from gateway.camera.tiling import plan_tiling
from gateway.config import check_config
from gateway.config.tiling import TilingSection

FULL_HD = (1920, 1080)


def dets(*boxes: tuple[float, float, float, float], score: float = 0.9) -> Detections:
    array = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(array, np.full(len(array), score, np.float32), np.zeros(len(array), np.int32))


# --------------------------------------------------------------------------- grid


def test_grid_tiles_are_equal_cover_the_region_and_overlap() -> None:
    region = Rect(100, 50, 1900, 1050)
    tiles = grid_tiles(region, 4, 2, 0.2)
    assert len(tiles) == 8 and len({(t.width, t.height) for t in tiles}) == 1
    assert min(t.x0 for t in tiles) == 100 and max(t.x1 for t in tiles) == 1900
    assert min(t.y0 for t in tiles) == 50 and max(t.y1 for t in tiles) == 1050
    row = sorted((t for t in tiles if t.y0 == 50), key=lambda t: t.x0)
    for left, right in zip(row, row[1:], strict=False):
        assert left.x1 - right.x0 >= 0.2 * left.width - 1


def test_auto_tile_size_brings_the_smallest_person_to_the_reliable_height() -> None:
    width, height = tile_side_for(40, (416, 416))
    assert round(40 * 416 / width) == RELIABLE_INPUT_PX
    cols, rows = auto_grid(Rect(0, 0, *FULL_HD), (width, height), 0.2)
    tiles = grid_tiles(Rect(0, 0, *FULL_HD), cols, rows, 0.2)
    assert all(tile.width <= width and tile.height <= height for tile in tiles)
    assert auto_grid(Rect(0, 0, 300, 200), (width, height), 0.2) == (1, 1)


# --------------------------------------------------------------------------- plan


def plan(watched=None, resolution=None, size=FULL_HD, **tiling):
    return plan_tiling(TilingSection(**tiling), size, watched, (416, 416), resolution)


def test_off_plans_nothing_and_a_near_view_needs_no_tiles() -> None:
    assert plan(mode="off").plan is None
    near = plan(size=(640, 360), mode="auto", min_person_px=80)
    assert near.plan is None and "tiling not needed" in near.warnings[0]


def test_zones_region_tiles_only_the_zones_box() -> None:
    watched = np.zeros((1080, 1920), np.uint8)
    watched[500:800, 700:1100] = 255
    planned = plan(watched, mode="auto", min_person_px=30).plan
    whole = plan(mode="auto", min_person_px=30).plan
    assert planned.region.x0 >= 680 and planned.region.x1 <= 1120 and planned.inferences < whole.inferences


def test_a_grid_too_fine_for_the_frame_is_reduced_with_a_warning() -> None:
    planned = plan(size=(640, 360), mode="grid", grid=[8, 4])
    assert planned.plan.grid == (6, 3)
    assert "grid 8×4" in planned.warnings[0] and "using 6×3" in planned.warnings[0]


def test_frames_smaller_than_the_resolution_are_warned_about() -> None:
    planned = plan(size=(960, 540), resolution=(1920, 1080), mode="auto", min_person_px=30)
    assert any("smaller than the configured resolution 1920x1080" in w and "main stream" in w
               for w in planned.warnings)


def test_a_plan_beyond_the_tile_budget_is_capped_with_a_warning() -> None:
    planned = plan(size=(3840, 2160), mode="auto", min_person_px=12, overlap=0.5)
    assert planned.plan is not None and len(planned.plan.tiles) <= 48
    assert any("capped" in w for w in planned.warnings)


# --------------------------------------------------------------------------- merge


def test_a_person_cut_by_a_tile_border_is_one_box() -> None:
    left, right = Rect(0, 0, 600, 600), Rect(480, 0, 1080, 600)
    region = Rect(0, 0, 1080, 600)
    # The person stands at x 560-620: cut at the left tile's right edge (600), whole in the right one.
    merged = merge([(left, dets((560, 100, 600, 160))), (right, dets((80, 100, 140, 160)))], region)
    assert len(merged) == 1 and merged.boxes[0].tolist() == [560, 100, 620, 160]


def test_the_same_person_in_two_overlapping_tiles_and_the_whole_frame_is_one() -> None:
    left, right = Rect(0, 0, 600, 600), Rect(480, 0, 1080, 600)
    merged = merge([(None, dets((500, 100, 560, 220), score=0.5)),
                    (left, dets((501, 101, 559, 219))), (right, dets((21, 99, 81, 221)))], Rect(0, 0, 1080, 600))
    assert len(merged) == 1 and merged.scores[0] == pytest.approx(0.9)


def test_two_people_one_behind_the_other_in_one_tile_stay_two() -> None:
    tile = Rect(0, 0, 600, 600)
    merged = merge([(tile, dets((100, 100, 160, 220), (110, 110, 150, 200)))], tile)
    assert len(merged) == 2


def test_region_border_does_not_count_as_a_cut() -> None:
    tile = Rect(0, 0, 600, 600)
    merged = merge([(tile, dets((560, 100, 600, 160)))], Rect(0, 0, 600, 600))
    assert len(merged) == 1


class Recording:
    """A detector that finds one 20×40 person in the middle of any picture it gets."""

    input_size = (416, 416)
    class_names = {0: "person"}

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []

    def detect(self, frame: np.ndarray) -> Detections:
        self.shapes.append(frame.shape[:2])
        height, width = frame.shape[:2]
        return dets((width / 2 - 10, height / 2 - 20, width / 2 + 10, height / 2 + 20))

    def close(self) -> None:
        pass


def test_detect_tiled_runs_every_tile_and_the_whole_frame_and_maps_boxes_back() -> None:
    region = Rect(0, 0, 1000, 500)
    tile_plan = TilePlan((1000, 500), region, grid_tiles(region, 2, 1, 0.2), whole_frame=True)
    detector = Recording()
    found = detect_tiled(detector, np.zeros((500, 1000, 3), np.uint8), tile_plan)
    assert detector.shapes == [(500, 1000), (500, 556), (500, 556)]
    centres = sorted(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in found.boxes.tolist())
    assert centres == [(278.0, 250.0), (500.0, 250.0), (722.0, 250.0)]


# --------------------------------------------------------------------------- config


def test_tiling_config_mistakes_are_located(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw}}
        detector: {{model: {tmp_path / 'm.onnx'}}}
        cameras:
          - id: a
            source: {{rtsp: "rtsp://10.0.0.1/live"}}
            tiling: {{mode: grid}}
          - id: b
            source: {{rtsp: "rtsp://10.0.0.1/live"}}
            tiling: {{mode: auto, min_person_px: 5, grid: [2, 2]}}
          - id: c
            source: {{rtsp: "rtsp://10.0.0.1/live"}}
            resolution: [640, 360]
            tiling: {{mode: grid, grid: [8, 4]}}
        """), encoding="utf-8")
    _config, issues = check_config(site, env={})
    messages = {(issue.path, issue.line): issue.message for issue in issues}
    assert "mode grid needs grid" in messages[("cameras[0].tiling.grid", 6)]
    assert "only used with mode: grid" in messages[("cameras[1].tiling.grid", 9)]
    assert "below what the detector can find" in messages[("cameras[1].tiling.min_person_px", 9)]
    assert "smaller than 96 px" in messages[("cameras[2].tiling.grid", 13)]
