"""The `detector:` section: which model runs, at what input size, on how many threads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from detectors import DetectorSettings, backend_names
from gateway.config.base import StrictModel


class DetectorSection(StrictModel):
    backend: str = Field(default="onnxruntime", description="A registered detector backend "
                         "(detectors/registry.py): onnxruntime, or ultralytics with the optional extra.")
    model: Path = Field(description="Model file; relative paths are relative to the config file.")
    input_size: int | tuple[int, int] | None = Field(
        default=None, description="Network input (square int or [width, height]); default: the model's."
    )
    confidence: float = Field(default=0.3, gt=0, lt=1)
    nms_iou: float = Field(default=0.45, gt=0, le=1)
    threads: int = Field(default=2, ge=1, le=64)
    person_classes: list[str | int] = Field(
        default_factory=list,
        description="Class names or ids counted as people; default the model's 'person' class.",
    )
    layout: Literal["auto", "yolox", "ultralytics"] = "auto"

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in backend_names():
            raise ValueError(f"unknown detector backend {value!r}; expected one of {', '.join(backend_names())}")
        return value

    @field_validator("input_size")
    @classmethod
    def _positive_multiple_of_32(cls, value: int | tuple[int, int] | None):
        if value is None:
            return value
        sizes = (value, value) if isinstance(value, int) else value
        for size in sizes:
            if size < 32 or size > 4096 or size % 32:
                raise ValueError(f"input size {size} must be a multiple of 32 between 32 and 4096")
        return value

    def settings(self) -> DetectorSettings:
        """The section as the detectors package takes it (it knows no YAML)."""
        size = self.input_size
        return DetectorSettings(
            model=self.model, backend=self.backend, input_size=(size, size) if isinstance(size, int) else size,
            confidence=self.confidence, nms_iou=self.nms_iou, threads=self.threads,
            person_classes=tuple(self.person_classes), layout=self.layout,
        )
