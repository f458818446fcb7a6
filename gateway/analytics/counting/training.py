"""Fitting a counting model from a few annotated frames, with an honest cross-validated error.

Input: per annotated frame, its raw cell features (taken with a warmed background) and one
point per person (source pixels; a click on the head, or on the body). The fit:

1. Shared weights: a non-negative ridge regression of each frame's head count on the frame's
   perspective-weighted feature sums. Its strength is chosen by k-fold cross-validation.
2. Regional factors: the picture is split into `REGION_GRID` regions; in each, the shared
   weights' count is compared with the points there and corrected by a factor shrunk towards 1
   (so zone counts follow the local look of the scene: shop windows, a bench, far rows).

The error reported is nested k-fold cross-validation: each frame's count is predicted by a
model that never saw it (strength chosen without it too), so it is what to expect on new
frames of the same camera, a little pessimistic because each fold trains on fewer frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.analytics.counting.background import BackgroundSettings, EmptyScene
from gateway.analytics.counting.features import CellGrid
from gateway.analytics.counting.model import CountingModel, feature_multipliers, region_map
from gateway.analytics.counting.perspective import Perspective
from gateway.analytics.counting.regression import kfold, nonnegative_ridge, shrunk_scales

MIN_FRAMES = 5
DEFAULT_FOLDS = 5
STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1)
REGION_GRID = (2, 2)
REGION_STRENGTH = 0.5
BODY_DROP = 0.25
"""A point is moved down by this share of a person's height before it is given to a region:
head clicks and body-centre clicks then land inside the same body."""


class TrainingError(ValueError):
    """The annotated frames cannot give a model (too few, or nothing to learn from)."""


@dataclass(frozen=True)
class AnnotatedFrame:
    """One annotated frame: its raw cell features and one point per visible person."""

    features: np.ndarray
    points: np.ndarray
    label: str = ""
    """Where it came from (a frame index, a snapshot id): for messages."""


@dataclass(frozen=True)
class CrossValidation:
    folds: int
    mae: float
    relative_error: float
    """Sum of absolute errors over the sum of true counts."""
    within_20: float
    """Share of frames counted within +-20 %."""
    predicted: list[float] = field(default_factory=list)
    """Each frame's held-out count, in input order."""

    def to_dict(self) -> dict[str, Any]:
        return {"folds": self.folds, "mae": round(self.mae, 3), "relative_error": round(self.relative_error, 4),
                "within_20": round(self.within_20, 3)}


@dataclass(frozen=True)
class FitResult:
    model: CountingModel
    validation: CrossValidation


def fit_model(frames: list[AnnotatedFrame], camera_id: str, frame_size: tuple[int, int],
              perspective: Perspective, background: BackgroundSettings | None = None,
              folds: int = DEFAULT_FOLDS, training: dict[str, Any] | None = None,
              scene: EmptyScene | None = None) -> FitResult:
    """Fit, cross-validate and describe a model (see the module docstring); `scene`: the empty
    scene (background and noise) the features were taken against, kept with the model."""
    if len(frames) < MIN_FRAMES:
        raise TrainingError(f"need at least {MIN_FRAMES} annotated frames, got {len(frames)}")
    data = _Design(frames, CellGrid.for_frame(frame_size), perspective)
    if not data.totals.any():
        raise TrainingError("the annotated frames show no change against the background at all "
                            "(is the camera covered, or the background still warming up?)")
    if data.counts.sum() == 0:
        raise TrainingError("no person is marked in any annotated frame")
    validation = data.cross_validate(folds)
    strength = data.choose_strength(np.arange(len(frames)), folds)
    weights, scales = data.fit(np.arange(len(frames)), strength)
    record = {
        **(training or {}),
        "frames": len(frames),
        "people": int(data.counts.sum()),
        "mean_people": round(float(data.counts.mean()), 2),
        "strength": strength,
        "cross_validation": validation.to_dict(),
    }
    model = CountingModel(camera_id, (int(frame_size[0]), int(frame_size[1])), perspective, weights,
                          scales, background or BackgroundSettings(), record, scene)
    return FitResult(model, validation)


class _Design:
    """The annotated frames as regression inputs: whole-frame and per-region feature sums."""

    def __init__(self, frames: list[AnnotatedFrame], grid: CellGrid, perspective: Perspective):
        self.grid = grid
        multipliers = feature_multipliers(grid, perspective, np.ones(frames[0].features.shape[-1]))
        regions = region_map(grid.shape, np.arange(np.prod(REGION_GRID), dtype=np.float64).reshape(REGION_GRID))
        self.region_of = regions.astype(int).ravel()
        region_count = int(np.prod(REGION_GRID))
        self.regional = np.zeros((len(frames), region_count, multipliers.shape[-1]))
        self.regional_counts = np.zeros((len(frames), region_count))
        for k, frame in enumerate(frames):
            if frame.features.shape != multipliers.shape:
                raise TrainingError(f"frame {frame.label or k}: features of shape {frame.features.shape}, "
                                    f"expected {multipliers.shape} (taken on another frame size?)")
            weighted = (frame.features * multipliers).reshape(-1, multipliers.shape[-1])
            np.add.at(self.regional[k], self.region_of, weighted)
            points = np.asarray(frame.points, dtype=np.float64).reshape(-1, 2)
            bodies = points + np.c_[np.zeros(len(points)), BODY_DROP * perspective.height_at(points[:, 1])]
            np.add.at(self.regional_counts[k], self.region_of[self._cells(bodies)], 1.0)
        self.totals = self.regional.sum(axis=1)
        self.counts = np.array([len(np.asarray(f.points).reshape(-1, 2)) for f in frames], dtype=np.float64)

    def _cells(self, points: np.ndarray) -> np.ndarray:
        row, column = self.grid.cells_of(points)
        return row * self.grid.shape[1] + column

    def fit(self, rows: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
        weights = nonnegative_ridge(self.totals[rows], self.counts[rows], strength)
        predicted = self.regional[rows] @ weights
        scales = shrunk_scales(predicted, self.regional_counts[rows], REGION_STRENGTH)
        return weights, scales.reshape(REGION_GRID)

    def predict(self, rows: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
        return (self.regional[rows] @ weights) @ scales.ravel()

    def held_out(self, rows: np.ndarray, folds: int, strength: float | None) -> np.ndarray:
        """Each of `rows` predicted by a model fitted on the others (strength chosen inside
        each fold when None)."""
        predicted = np.zeros(len(rows))
        for held in kfold(len(rows), folds):
            keep = np.setdiff1d(np.arange(len(rows)), held)
            chosen = strength if strength is not None else self.choose_strength(rows[keep], folds)
            weights, scales = self.fit(rows[keep], chosen)
            predicted[held] = self.predict(rows[held], weights, scales)
        return predicted

    def choose_strength(self, rows: np.ndarray, folds: int) -> float:
        """The ridge strength with the lowest cross-validated error over `rows` (ties: stronger)."""
        if len(rows) < 3:
            return STRENGTHS[-1]
        errors = [np.abs(self.held_out(rows, folds, strength) - self.counts[rows]).mean() for strength in STRENGTHS]
        best = min(errors)
        return max(s for s, e in zip(STRENGTHS, errors, strict=True) if e <= best + 1e-9)

    def cross_validate(self, folds: int) -> CrossValidation:
        rows = np.arange(len(self.counts))
        predicted = self.held_out(rows, folds, None)
        errors = np.abs(predicted - self.counts)
        truth = self.counts
        within = np.abs(predicted - truth) <= 0.2 * np.maximum(truth, 1e-9)
        return CrossValidation(
            folds=len(kfold(len(rows), folds)),
            mae=float(errors.mean()),
            relative_error=float(errors.sum() / max(truth.sum(), 1.0)),
            within_20=float(within.mean()),
            predicted=[round(float(p), 2) for p in predicted],
        )
