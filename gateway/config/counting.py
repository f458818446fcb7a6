"""`cameras[].counting`: how a camera counts people (detector, a fitted counting model, or both).

    counting:
      mode: auto                 # detector (default) | model | auto
      model: models/gate.json    # from `gateway calibrate count` or the page's 标注人数 tool
      person_height_px: [40, 140]  # optional: a standing person's height at the top and bottom row

`model` defaults to the file the page's tool writes, `<data_dir>/counting/<camera id>.json`;
`mode`, when not written, is `auto` if there is a model (named here or fitted on the page),
else `detector` (gateway.calibration.choice has the rules).
`person_height_px` is the installer's perspective ramp, used by calibration when the camera
has no ground-plane `calibration` and the detector sees too few people to measure it.
`gateway check` reads the model file (gateway.checks, gateway.calibration.files): it must exist, be a counting model
of this camera, and match the camera's `resolution` when that is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.config.base import StrictModel

COUNTING_MODES = ("detector", "model", "auto")


class CountingSection(StrictModel):
    mode: Literal["detector", "model", "auto"] = Field(
        default="detector",
        description="detector: tracked detections; model: the counting model's estimate; auto: the "
                    "estimate where the scene is dense, the detector where it is sparse. Not written: auto "
                    "when there is a model (named here, or fitted on the page), else detector.")
    model: Path | None = Field(default=None, description="Counting model file (JSON); relative to this file.")
    person_height_px: tuple[float, float] | None = Field(
        default=None, description="[top, bottom]: a standing person's height in pixels at the top and "
                                  "at the bottom row of the picture (perspective for calibration).")

    @field_validator("person_height_px")
    @classmethod
    def _positive_heights(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and min(value) <= 0:
            raise ValueError(f"heights must be positive pixels, got {list(value)}")
        return value


def default_model_path(data_dir: Path, camera_id: str) -> Path:
    """Where the page's annotation tool writes a camera's model."""
    return data_dir / "counting" / f"{camera_id}.json"
