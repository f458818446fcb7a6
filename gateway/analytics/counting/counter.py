"""The per-camera counter: a frame and the detector's boxes in, a count map out.

`CrowdCounter` owns one camera's background (`features.FeatureExtractor`) and, once it has
one, a fitted `CountingModel`. Each analysed frame gives a `CountMap`: the estimated number
of people in the frame, in every zone, and where they are (people per grid cell). Without a
model it still keeps its background warm and its latest features, which is what an installer
annotating frames in the page needs; a model fitted then is swapped in (`use_model`) without
warming up again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from gateway.analytics.counting.background import BackgroundSettings
from gateway.analytics.counting.features import CellGrid, FeatureExtractor
from gateway.analytics.counting.model import CountingModel, ModelFormatError

PERSON_WIDTH_SHARE = 0.35
"""A standing person's outline is about this much as wide as tall (for the crowding map)."""


class CountingFailed(ValueError):
    """The model gave no usable count for a frame (e.g. values that overflow to inf/NaN)."""


@dataclass(frozen=True)
class CountMap:
    """One frame's estimate. density: (rows, columns) people per grid cell (masked areas 0);
    person_area: (rows,) source pixels one person covers at each row of cells."""

    total: float
    zones: dict[str, float]
    density: np.ndarray
    grid: CellGrid = field(repr=False)
    person_area: np.ndarray = field(repr=False, default_factory=lambda: np.ones(1))

    def heat_map(self) -> np.ndarray:
        """float32 (height, width) of the source frame: crowding, the share of the picture covered
        by people's outlines (0 empty, 1 shoulder to shoulder), the same near and far."""
        width, height = self.grid.frame_size
        rows, columns = self.density.shape
        cell_area = (width / columns) * (height / rows)
        crowding = (self.density * (self.person_area[:, None] / cell_area)).astype(np.float32)
        return cv2.resize(crowding, (width, height), interpolation=cv2.INTER_LINEAR)


class CrowdCounter:
    """One camera's counter (see the module docstring).

    zones: zone id -> polygon in source-frame pixels; masks: private areas (source pixels),
    never counted. The frame size is fixed: a model fitted on another size is refused.
    """

    def __init__(self, frame_size: tuple[int, int], zones: Mapping[str, np.ndarray] | None = None,
                 masks: list[np.ndarray] | None = None, model: CountingModel | None = None):
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.model: CountingModel | None = None
        self._settings = model.background if model else BackgroundSettings()
        self.extractor = FeatureExtractor(self.frame_size, self._settings)
        grid = self.extractor.grid
        hidden = sum((grid.coverage(mask) for mask in masks or []), np.zeros(grid.shape, np.float32))
        self._visible = np.clip(1.0 - hidden, 0.0, 1.0)
        self._zones = {zone: grid.coverage(polygon) * self._visible for zone, polygon in (zones or {}).items()}
        self._multipliers: np.ndarray | None = None
        self.last_features: np.ndarray | None = None
        """The raw cell features of the last analysed frame (None while warming up)."""
        if model is not None:
            self.use_model(model)

    @property
    def grid(self) -> CellGrid:
        return self.extractor.grid

    @property
    def warmup_left_s(self) -> float:
        return self.extractor.background.warmup_left_s

    def use_model(self, model: CountingModel) -> None:
        """Count with `model` from the next frame on. The background is kept when the model
        learns it the same way, else it warms up again; a camera still warming up starts from
        the empty scene the model was fitted against, if the model has one."""
        if tuple(model.frame_size) != self.frame_size:
            raise ModelFormatError(f"fitted on {model.frame_size[0]}x{model.frame_size[1]} frames, "
                                   f"the camera delivers {self.frame_size[0]}x{self.frame_size[1]}")
        if model.background != self._settings:
            self._settings = model.background
            self.extractor = FeatureExtractor(self.frame_size, self._settings)
            self.last_features = None
        background = self.extractor.background
        if model.scene is not None and not background.ready:
            background.start_from(model.scene, origin="scene")
        self.model = model
        self._multipliers = model.cell_multipliers() * self._visible[..., None]
        heights = model.perspective.height_at(self.grid.row_centres())
        self._person_area = PERSON_WIDTH_SHARE * heights**2

    def drop_model(self) -> None:
        """Stop counting with the model (its features are still kept for annotation)."""
        self.model = None
        self._multipliers = None

    def warm_from(self, images: list[np.ndarray]) -> None:
        """Start the background from frames of this camera (e.g. the first minutes of a recording)."""
        self.extractor.warm_from(images)

    def observe(self, image: np.ndarray, boxes: np.ndarray, t: float) -> CountMap | None:
        """Features of this frame and, with a model, its count map (None while warming up or
        without a model). `boxes`: the detector's person boxes, source pixels."""
        features = self.extractor.observe(image, boxes, t)
        self.last_features = features
        if features is None or self._multipliers is None:
            return None
        return self.estimate(features)

    def estimate(self, features: np.ndarray) -> CountMap:
        """The count map of raw cell features (needs a model)."""
        if self._multipliers is None:
            raise ModelFormatError("no counting model to estimate with")
        with np.errstate(over="ignore", invalid="ignore"):
            density = np.maximum((features * self._multipliers).sum(axis=-1), 0.0)
        if not np.isfinite(density).all():
            raise CountingFailed("the model's estimate is not a finite number (its weights or region_scale "
                                 "overflow)")
        zones = {zone: float((density * share).sum()) for zone, share in self._zones.items()}
        return CountMap(float(density.sum()), zones, density, self.grid, self._person_area)
