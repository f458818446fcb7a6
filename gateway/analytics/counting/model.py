"""A fitted counting model and its file format (plain dicts in, plain dicts out; no file I/O).

The model turns a frame's per-cell features (`features.py`) into people per cell:

    people[cell] = region_scale[region of cell] * sum_f weight[f] * perspective_f(row) * feature[cell, f]

`weight` is shared by every cell (fitted on whole-frame counts), `perspective_f` is 1, h_ref/h
or (h_ref/h)^2 by how the feature grows with a person's size, and `region_scale` corrects the
shared weights per part of the picture (fitted on the annotated points, shrunk towards 1).

The format (JSON, versioned) carries everything a camera needs to use it: the camera it was
fitted for, the frame size, the perspective, the background settings, the training record and,
optionally, the empty scene it was fitted against (`scene`: the small grey background picture
and its per-pixel noise as 16-bit PNGs, base64), from which a camera that starts into a crowd
counts at once (`background.BackgroundModel.start_from`) instead of learning the crowd as its
floor.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from gateway.analytics.counting.background import BackgroundSettings, EmptyScene
from gateway.analytics.counting.features import CELL_PX, FEATURES, WEIGHTING, CellGrid, working_size
from gateway.analytics.counting.perspective import Perspective

FORMAT = "gw.counting-model"
VERSION = 1


class ModelFormatError(ValueError):
    """The data is not a usable counting model; the message says what is wrong."""


@dataclass(frozen=True)
class CountingModel:
    camera_id: str
    frame_size: tuple[int, int]
    perspective: Perspective
    weights: np.ndarray
    """One non-negative weight per entry of FEATURES."""
    region_scale: np.ndarray
    """(region rows, region columns) factors; the regions split the grid evenly."""
    background: BackgroundSettings = field(default_factory=BackgroundSettings)
    training: dict[str, Any] = field(default_factory=dict)
    scene: EmptyScene | None = field(default=None, repr=False, compare=False)
    """The empty scene the model was fitted against (the grid's working size)."""

    @property
    def grid(self) -> CellGrid:
        return CellGrid.for_frame(self.frame_size)

    def cell_multipliers(self) -> np.ndarray:
        """(rows, columns, features): what each raw feature sum is worth in people, per cell."""
        return feature_multipliers(self.grid, self.perspective, self.weights) * self.scale_map()[..., None]

    def scale_map(self) -> np.ndarray:
        """(rows, columns): each cell's regional factor."""
        return region_map(self.grid.shape, self.region_scale)

    def to_dict(self) -> dict[str, Any]:
        width, height = self.frame_size
        return {
            "format": FORMAT,
            "version": VERSION,
            "camera_id": self.camera_id,
            "frame_size": [width, height],
            "grid": {"working_size": list(self.grid.working), "cell_px": self.grid.cell_px},
            "perspective": self.perspective.to_dict(height),
            "background": self.background.to_dict(),
            "features": list(FEATURES),
            "weights": [round(float(w), 9) for w in self.weights],
            "region_scale": np.round(self.region_scale, 4).tolist(),
            "training": self.training,
            **({"scene": _scene_out(self.scene)} if self.scene is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> CountingModel:
        """Parse and check a model; raises ModelFormatError naming the first problem."""
        if not isinstance(data, dict):
            raise ModelFormatError("not a counting model: expected a JSON object")
        if data.get("format") != FORMAT:
            raise ModelFormatError(f"not a counting model: 'format' is {data.get('format')!r}, expected {FORMAT!r}")
        if data.get("version") != VERSION:
            raise ModelFormatError(f"model format version {data.get('version')!r} is not supported "
                                   f"(this gateway reads version {VERSION}): fit the model again")
        try:
            camera_id = _text(data, "camera_id")
            frame_size = _size(data.get("frame_size"))
            grid = data.get("grid") or {}
            expected = working_size(frame_size)
            if list(grid.get("working_size", [])) != list(expected) or grid.get("cell_px") != CELL_PX:
                raise ModelFormatError(f"grid {grid!r} does not match this gateway's grid for "
                                       f"{frame_size[0]}x{frame_size[1]} ({list(expected)}, {CELL_PX} px cells)")
            if list(data.get("features", [])) != list(FEATURES):
                raise ModelFormatError(f"features {data.get('features')!r} differ from {list(FEATURES)!r}")
            weights = _numbers(data.get("weights"), "weights", (len(FEATURES),))
            if (weights < 0).any():
                raise ModelFormatError("weights must not be negative")
            scales = np.asarray(data.get("region_scale"), dtype=np.float64)
            if scales.ndim != 2 or not scales.size:
                raise ModelFormatError("region_scale must be a non-empty list of rows of numbers")
            _numbers(scales.tolist(), "region_scale", scales.shape)
            if (scales < 0).any():
                raise ModelFormatError("region_scale must not be negative")
            perspective = Perspective.from_dict(data.get("perspective") or {})
            background = BackgroundSettings.from_dict(data.get("background") or {})
            training = data.get("training") or {}
            scene = _scene_in(data.get("scene"), expected)
        except ModelFormatError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFormatError(f"malformed model: {error}") from None
        return cls(camera_id, frame_size, perspective, weights, scales, background,
                   training if isinstance(training, dict) else {}, scene)

    def check_fits(self, camera_id: str, frame_size: tuple[int, int] | None) -> None:
        """Raise ModelFormatError if this model was fitted for another camera or frame size."""
        if self.camera_id != camera_id:
            raise ModelFormatError(f"fitted for camera {self.camera_id!r}, not {camera_id!r}")
        if frame_size is not None and tuple(frame_size) != tuple(self.frame_size):
            raise ModelFormatError(f"fitted on {self.frame_size[0]}x{self.frame_size[1]} frames, not "
                                   f"{frame_size[0]}x{frame_size[1]}: fit it on this camera's stream")


def feature_multipliers(grid: CellGrid, perspective: Perspective, weights: np.ndarray) -> np.ndarray:
    """(rows, columns, features): feature weight times the perspective weight of each cell row."""
    edge, area = perspective.row_weights(grid.row_centres(), grid.frame_size[1])
    by_kind = {"edge": edge, "area": area}
    per_row = np.stack([by_kind[kind] for kind in WEIGHTING], axis=-1) * np.asarray(weights)
    rows, columns = grid.shape
    return np.broadcast_to(per_row[:, None, :], (rows, columns, len(WEIGHTING))).astype(np.float32)


def region_map(shape: tuple[int, int], scales: np.ndarray) -> np.ndarray:
    """(rows, columns) of cells: the factor of the region each cell lies in."""
    rows, columns = shape
    region_rows, region_columns = scales.shape
    row_region = np.minimum(np.arange(rows) * region_rows // rows, region_rows - 1)
    column_region = np.minimum(np.arange(columns) * region_columns // columns, region_columns - 1)
    return scales[row_region][:, column_region].astype(np.float32)


SCENE_ENCODING = "png16+base64"
SCENE_SCALES = {"background": 16.0, "noise": 4.0}
"""16-bit PNGs hold grey levels in sixteenths and noise in quarters of a level: rounding to whole
levels (8-bit) would cost counts (0.01 people of MAE on the mall clip); a scene is about 200 KB."""


def _scene_out(scene: EmptyScene) -> dict[str, Any]:
    out: dict[str, Any] = {"encoding": SCENE_ENCODING}
    for name, scale in SCENE_SCALES.items():
        values = np.clip(np.round(getattr(scene, name) * scale), 0, 65535).astype(np.uint16)
        ok, png = cv2.imencode(".png", values)
        if not ok:
            raise ModelFormatError(f"the scene's {name} could not be encoded")
        out[name] = base64.b64encode(png.tobytes()).decode("ascii")
    return out


def _scene_in(value: Any, working: tuple[int, int]) -> EmptyScene | None:
    """The model's empty scene, None when the file has none."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("encoding") != SCENE_ENCODING:
        raise ModelFormatError(f"'scene' must be {{\"encoding\": \"{SCENE_ENCODING}\", \"background\": ..., "
                               f"\"noise\": ...}}")
    pictures = {}
    for name, scale in SCENE_SCALES.items():
        try:
            png = base64.b64decode(str(value.get(name) or ""), validate=True)
        except (binascii.Error, ValueError):
            raise ModelFormatError(f"'scene.{name}' is not base64") from None
        picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED) if png else None
        if picture is None or picture.dtype != np.uint16 or picture.ndim != 2:
            raise ModelFormatError(f"'scene.{name}' is not a 16-bit grey PNG picture")
        if picture.shape != (working[1], working[0]):
            raise ModelFormatError(f"'scene.{name}' is {picture.shape[1]}x{picture.shape[0]}, the grid's working "
                                   f"picture is {working[0]}x{working[1]}")
        pictures[name] = picture.astype(np.float32) / scale
    return EmptyScene(pictures["background"], pictures["noise"])


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ModelFormatError(f"'{key}' must be a non-empty string")
    return value


def _size(value: Any) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ModelFormatError(f"'frame_size' must be [width, height] in pixels, got {value!r}")
    return int(value[0]), int(value[1])


def _numbers(value: Any, key: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelFormatError(f"'{key}' must hold numbers") from None
    if array.shape != shape or not all(math.isfinite(v) for v in array.ravel()):
        raise ModelFormatError(f"'{key}' must be {shape} finite numbers, got {value!r}")
    return array
