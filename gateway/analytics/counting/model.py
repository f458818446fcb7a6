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

A model file may come from anywhere (copied between boxes, edited by hand), so `from_dict`
checks all of it before a camera counts with it: every key of the right type and shape, every
number finite and within what a fitted model can hold, and what they multiply to per cell too
(`MAX_MULTIPLIER`): a model that passes cannot overflow into NaN counts frames later.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from gateway.analytics.counting.background import BackgroundSettings, EmptyScene
from gateway.analytics.counting.features import CELL_PX, FEATURES, WEIGHTING, CellGrid, working_size
from gateway.analytics.counting.perspective import Perspective

FORMAT = "gw.counting-model"
VERSION = 1
MAX_FRAME_SIDE = 16384
MAX_WEIGHT = 1000.0
"""People per unit of a feature; fitted weights are thousandths."""
MAX_REGION_SCALE = 100.0
"""Regional factors are fitted within 0.25..4 (regression.shrunk_scales)."""
MAX_REGIONS = 64
MAX_MULTIPLIER = 1e6
"""People per unit of a feature in any cell (weight x perspective x region): far above any
fitted model, far below where float32 sums overflow."""


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
        """(rows, columns, features): what each raw feature sum is worth in people, per cell
        (inf where a model built in code overflows: `from_dict` and the counter check)."""
        with np.errstate(over="ignore", invalid="ignore"):
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
            raise ModelFormatError(f"not a counting model: 'format' is {_shown(data.get('format'))}, "
                                   f"expected {FORMAT!r}")
        if data.get("version") != VERSION:
            raise ModelFormatError(f"model format version {_shown(data.get('version'))} is not supported "
                                   f"(this gateway reads version {VERSION}): fit the model again")
        try:
            model = cls._parse(data)
        except ModelFormatError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise ModelFormatError(f"malformed model: {_shown(error)}") from None
        multipliers = model.cell_multipliers()
        if not np.isfinite(multipliers).all() or float(multipliers.max(initial=0.0)) > MAX_MULTIPLIER:
            raise ModelFormatError(f"its weights, perspective and region_scale multiply to more than "
                                   f"{MAX_MULTIPLIER:g} people per feature unit in some cell: not a fitted model; "
                                   "fit it again")
        return model

    @classmethod
    def _parse(cls, data: dict) -> CountingModel:
        camera_id = _text(data, "camera_id")
        frame_size = _size(data.get("frame_size"))
        grid = _map(data, "grid")
        expected = working_size(frame_size)
        if grid.get("working_size") != list(expected) or grid.get("cell_px") != CELL_PX:
            raise ModelFormatError(f"'grid' does not match this gateway's grid for {frame_size[0]}x{frame_size[1]} "
                                   f"(working_size {list(expected)}, cell_px {CELL_PX}): fit the model again")
        if data.get("features") != list(FEATURES):
            raise ModelFormatError(f"'features' must be {list(FEATURES)!r}: fit the model again")
        weights = _numbers(data.get("weights"), "weights", (len(FEATURES),), MAX_WEIGHT)
        scales = _grid_of_numbers(data.get("region_scale"), "region_scale", MAX_REGION_SCALE)
        perspective = Perspective.from_dict(_map(data, "perspective", required=True))
        background = BackgroundSettings.from_dict(_map(data, "background"))
        training = _map(data, "training")
        scene = _scene_in(data.get("scene"), expected)
        return cls(camera_id, frame_size, perspective, weights, scales, background, training, scene)

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
    with np.errstate(over="ignore"):
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
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ModelFormatError(f"'{key}' must be a non-empty string of at most 64 characters")
    return value


def _map(data: dict, key: str, required: bool = False) -> dict:
    """A nested object; absent is {} unless `required`."""
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ModelFormatError(f"'{key}' must be an object ({{...}}), got {_kind(value)}")
    return value


def _size(value: Any) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(_is_number(v) and isinstance(v, int) and 0 < v <= MAX_FRAME_SIDE for v in value)):
        raise ModelFormatError(f"'frame_size' must be [width, height] in pixels (1..{MAX_FRAME_SIDE}), "
                               f"got {_shown(value)}")
    return int(value[0]), int(value[1])


def _numbers(value: Any, key: str, shape: tuple[int, ...], limit: float) -> np.ndarray:
    """Finite numbers in 0..limit, as a float64 array of `shape` (lists of lists for 2-D)."""
    flat = value if len(shape) == 1 else [v for row in value for v in row] if _rows(value) else None
    if (not isinstance(value, list) or flat is None or not all(_is_number(v) for v in flat)
            or np.shape(value) != shape):
        raise ModelFormatError(f"'{key}' must be {_shape_text(shape)} numbers, got {_shown(value)}")
    array = np.asarray(value, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ModelFormatError(f"'{key}' must be {_shape_text(shape)} finite numbers")
    if (array < 0).any():
        raise ModelFormatError(f"'{key}' must not be negative")
    if (array > limit).any():
        raise ModelFormatError(f"'{key}' must be at most {limit:g} (a fitted model's are far smaller)")
    return array


def _grid_of_numbers(value: Any, key: str, limit: float) -> np.ndarray:
    if not _rows(value) or not value or not value[0] or len({len(row) for row in value}) != 1:
        raise ModelFormatError(f"'{key}' must be a non-empty list of equally long rows of numbers")
    shape = (len(value), len(value[0]))
    if shape[0] > MAX_REGIONS or shape[1] > MAX_REGIONS:
        raise ModelFormatError(f"'{key}' must have at most {MAX_REGIONS} rows and columns")
    return _numbers(value, key, shape, limit)


def _rows(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(row, list) for row in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape)


def _kind(value: Any) -> str:
    return {list: "a list", str: "text", bool: "true/false", type(None): "nothing"}.get(type(value), "a number")


def _shown(value: Any) -> str:
    """A value in an error message: at most 60 characters of it (a file may hold megabytes)."""
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
