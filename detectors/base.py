"""The one interface every detector backend implements.

Detectors know nothing of cameras, zones or alerts: a BGR frame goes in, person boxes in the
frame's own pixel coordinates come out. Everything downstream (masks, zones, tracking, rules)
works on `Detections`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


class DetectorError(Exception):
    """A model could not be loaded or run; the message names the file and what was expected."""


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes found in one frame, as parallel arrays (row i of each describes detection i).

    boxes: float32 (N, 4) x1, y1, x2, y2 in source-frame pixels, clipped to the frame.
    scores: float32 (N,) final confidence in 0..1.
    class_ids: int32 (N,) model class ids.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, keep: np.ndarray) -> Detections:
        """The subset picked by a boolean mask or an index array."""
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep])


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """What a backend needs to know, in plain values (the gateway maps its YAML onto this).

    person_classes: class names or ids that count as a person; empty means "the model's
    'person' class if it has one, else class 0".
    input_size: (width, height) of the network input; None reads it from the model.
    layout: "auto" detects the output layout from its shape and the ONNX metadata;
    "yolox" or "ultralytics" forces one.
    """

    model: Path
    backend: str = "onnxruntime"
    input_size: tuple[int, int] | None = None
    confidence: float = 0.3
    nms_iou: float = 0.45
    threads: int = 2
    person_classes: tuple[str | int, ...] = field(default_factory=tuple)
    layout: str = "auto"


@runtime_checkable
class Detector(Protocol):
    """A loaded, warmed-up model that finds people in BGR uint8 frames of any size."""

    class_names: dict[int, str]
    input_size: tuple[int, int]

    def detect(self, frame: np.ndarray) -> Detections:
        """People in `frame` (H x W x 3 BGR uint8), boxes in `frame` pixels."""
        ...

    def close(self) -> None:
        """Release the model (sessions, threads)."""
        ...
