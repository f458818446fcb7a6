"""Tiled detection: find small, far-away people by running the detector on overlapping crops.

Why: a nano detector sees the whole frame shrunk to its input (416 px). In a 1920×1080 view from a
high pole a person is 30–60 px tall and becomes 7–12 px at the input, far below what the model
finds. Cut into tiles, each crop is shrunk much less (or not at all), so the same person reaches
a size the model finds. A low-resolution pass over the whole frame runs beside the tiles, so a
person near the camera, larger than a tile, is still found once.

Merging is the part that decides quality. Each tile's boxes are mapped back to frame pixels; a
person cut by a tile border leaves a fragment in one tile and (thanks to the overlap) a whole box
in its neighbour: fragments — boxes touching a tile edge that lies inside the analysed region —
are dropped when a box that is not cut covers most of them. What is left goes through one person
NMS across all tiles and the whole-frame pass, with intersection-over-smaller-box as a second
test so a box inside a bigger box of the same person does not survive as a second person.

Pure functions plus `detect_tiled`, which only calls `Detector.detect` on numpy views: no
threads, no I/O, testable with a fake detector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.base import Detections, Detector

RELIABLE_INPUT_PX = 24
"""The person height, in model-input pixels, from which YOLOX-Nano (416) finds people reliably.
Measured on vtest.avi by `bench/bench_person_size.py` (recall against the full-size reference:
0.00 below 12 px, 0.32 at 12–16, 0.72 at 16–20, 0.89 at 20–24, 0.97 at 24–28, ≥ 0.98 above).
`auto` tiling scales the frame so a person `min_person_px` tall in the source reaches this."""

MAX_UPSCALE = 2.0
"""Tiles are never enlarged more than this to reach the input: enlarging adds no detail, so a
person smaller than RELIABLE_INPUT_PX / MAX_UPSCALE source pixels cannot be found at all."""

SMALLEST_FINDABLE_PX = RELIABLE_INPUT_PX / MAX_UPSCALE
"""The smallest `min_person_px` tiling accepts (12 px): below it no grid helps."""

MAX_TILES = 48
"""A plan with more tiles than this costs more than any box can spend on one camera (48 × 27 ms
is 1.3 s per frame on a 2-core x86, ~5 s on a Pi); `auto` is capped here and says so."""

CUT_EDGE_PX = 2.0
"""A box within this many pixels of an inner tile edge was cut by it."""

FRAGMENT_COVER = 0.6
"""A cut box whose area lies this much inside an uncut box is a fragment of that box's person."""

CONTAINED_SHARE = 0.8
"""After NMS, a box lying this much inside a higher-scored box is the same person, not two."""


@dataclass(frozen=True, slots=True)
class Rect:
    """A pixel rectangle [x0, x1) × [y0, y1) of the frame."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True, slots=True)
class TilePlan:
    """Where one camera's frames are cut: the tiles, and whether a whole-frame pass runs too.

    frame_size (w, h) is the size the plan was made for; `region` the area the tiles cover.
    `inferences` is the real cost of one frame, in detector runs."""

    frame_size: tuple[int, int]
    region: Rect
    tiles: tuple[Rect, ...]
    whole_frame: bool

    @property
    def inferences(self) -> int:
        return len(self.tiles) + int(self.whole_frame)

    @property
    def grid(self) -> tuple[int, int]:
        """(cols, rows) of the tiles."""
        cols = len({tile.x0 for tile in self.tiles})
        rows = len({tile.y0 for tile in self.tiles})
        return cols, rows


def tile_side_for(min_person_px: float, input_size: tuple[int, int]) -> tuple[int, int]:
    """The tile size (w, h) in source pixels at which a `min_person_px` person reaches
    RELIABLE_INPUT_PX at the input: the input size divided by the scale that needs."""
    scale = min(RELIABLE_INPUT_PX / min_person_px, MAX_UPSCALE)
    return max(1, round(input_size[0] / scale)), max(1, round(input_size[1] / scale))


def auto_grid(region: Rect, tile_size: tuple[int, int], overlap: float) -> tuple[int, int]:
    """The fewest (cols, rows) whose tiles of at most `tile_size`, overlapping by at least
    `overlap` of a tile, cover `region`."""
    return (_count(region.width, tile_size[0], overlap), _count(region.height, tile_size[1], overlap))


def _count(length: int, tile: int, overlap: float) -> int:
    if length <= tile:
        return 1
    step = tile * (1.0 - overlap)
    return 1 + math.ceil((length - tile) / step)


def grid_tiles(region: Rect, cols: int, rows: int, overlap: float) -> tuple[Rect, ...]:
    """cols × rows equal tiles covering `region`, neighbours overlapping by `overlap` of a tile.

    Equal sizes matter: the detector's letterbox keeps one geometry for all tiles of a frame."""
    width = _tile_length(region.width, cols, overlap)
    height = _tile_length(region.height, rows, overlap)
    xs = _starts(region.x0, region.width, width, cols)
    ys = _starts(region.y0, region.height, height, rows)
    return tuple(Rect(x, y, x + width, y + height) for y in ys for x in xs)


def _tile_length(length: int, count: int, overlap: float) -> int:
    """Length of `count` tiles with fractional `overlap` spanning `length`: L = n·t − (n−1)·o·t."""
    return min(length, math.ceil(length / (count - (count - 1) * overlap)))


def _starts(origin: int, length: int, tile: int, count: int) -> list[int]:
    """Evenly spread tile starts, the first at the region's start and the last at its end."""
    if count == 1:
        return [origin]
    return [origin + round(i * (length - tile) / (count - 1)) for i in range(count)]


def detect_tiled(detector: Detector, frame: np.ndarray, plan: TilePlan | None, nms_iou: float = 0.45) -> Detections:
    """People in `frame` found tile by tile (back to back) plus the whole-frame pass, merged;
    without a plan, one run over the whole frame."""
    if plan is None:
        return detector.detect(frame)
    parts: list[tuple[Rect | None, Detections]] = []
    if plan.whole_frame:
        parts.append((None, detector.detect(frame)))
    for tile in plan.tiles:
        found = detector.detect(frame[tile.y0:tile.y1, tile.x0:tile.x1])
        parts.append((tile, found))
    return merge(parts, plan.region, nms_iou)


def merge(parts: Sequence[tuple[Rect | None, Detections]], region: Rect, nms_iou: float = 0.45) -> Detections:
    """One set of boxes in frame pixels from per-tile results (tile None: the whole frame).

    `region` is the area the tiles cover: a tile edge on the region's border cuts nobody."""
    boxes, scores, classes, cut, sources = [], [], [], [], []
    for source, (tile, found) in enumerate(parts):
        if len(found) == 0:
            continue
        placed = found.boxes.astype(np.float32, copy=True)
        if tile is not None:
            placed[:, 0::2] += tile.x0
            placed[:, 1::2] += tile.y0
        boxes.append(placed)
        scores.append(found.scores)
        classes.append(found.class_ids)
        cut.append(_cut_by_tile(placed, tile, region))
        sources.append(np.full(len(found), source, np.int32))
    if not boxes:
        return Detections.empty()
    all_boxes = np.concatenate(boxes)
    all_scores = np.concatenate(scores).astype(np.float32)
    all_classes = np.concatenate(classes).astype(np.int32)
    keep = _drop_fragments(all_boxes, np.concatenate(cut))
    merged = Detections(all_boxes[keep], all_scores[keep], all_classes[keep])
    return merged.select(suppress(merged.boxes, merged.scores, np.concatenate(sources)[keep], nms_iou))


def _cut_by_tile(boxes: np.ndarray, tile: Rect | None, region: Rect) -> np.ndarray:
    """Which boxes touch an edge of their tile that lies inside the region (cut by the tile)."""
    if tile is None:
        return np.zeros(len(boxes), bool)
    cut = np.zeros(len(boxes), bool)
    if tile.x0 > region.x0:
        cut |= boxes[:, 0] <= tile.x0 + CUT_EDGE_PX
    if tile.x1 < region.x1:
        cut |= boxes[:, 2] >= tile.x1 - CUT_EDGE_PX
    if tile.y0 > region.y0:
        cut |= boxes[:, 1] <= tile.y0 + CUT_EDGE_PX
    if tile.y1 < region.y1:
        cut |= boxes[:, 3] >= tile.y1 - CUT_EDGE_PX
    return cut


def _drop_fragments(boxes: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Indices to keep: every uncut box, and cut boxes no uncut box mostly covers."""
    whole = np.flatnonzero(~cut)
    keep = list(whole)
    for index in np.flatnonzero(cut):
        if whole.size == 0 or _covered_share(boxes[index], boxes[whole]).max() < FRAGMENT_COVER:
            keep.append(index)
    return np.asarray(sorted(keep), np.int64)


def _covered_share(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Share of `box`'s area inside each of `others`."""
    inter = _intersection(box, others)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-6)
    return inter / area


def _intersection(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    return width * height


def suppress(boxes: np.ndarray, scores: np.ndarray, sources: np.ndarray, nms_iou: float) -> np.ndarray:
    """Greedy NMS across tiles: a box goes if a better box *from another tile or pass* overlaps
    it by IoU ≥ nms_iou, or lies mostly (CONTAINED_SHARE) inside it or around it. Boxes of one
    tile already went through the detector's own NMS: two people one in front of the other stay
    two. Indices of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter = _intersection(boxes[best], boxes[rest])
        iou = inter / (areas[best] + areas[rest] - inter)
        smaller = inter / np.minimum(areas[best], areas[rest])
        same_person = (sources[rest] != sources[best]) & ((iou >= nms_iou) | (smaller >= CONTAINED_SHARE))
        order = rest[~same_person]
    return np.asarray(keep, np.int64)
