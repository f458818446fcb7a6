"""Where things are in a camera's picture and on the ground: locations, zones, masks, calibration.

Coordinates: polygons are in pixels of the camera's `resolution` (the frame the installer drew
on) unless the camera says `coordinates: normalized`, in which case every point is in 0..1 of the
frame's width and height. The camera model checks every point lies inside the frame.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Ident, LocatedValueError, OneLine, Point, StrictModel


class Location(StrictModel):
    address: OneLine = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class Polygon(StrictModel):
    """Shared shape of zones and masks: at least 3 points, range-checked against the camera."""

    polygon: list[Point] = Field(min_length=3)

    @field_validator("polygon", mode="before")
    @classmethod
    def _at_least_three_points(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) < 3:
            raise ValueError(f"need at least 3 points, got {len(value)}")
        return value


class Zone(Polygon):
    id: Ident
    name: OneLine = ""


class Mask(Polygon):
    """A private area (window, courtyard) blanked out of analysis and snapshots."""

    name: OneLine = ""


class Calibration(StrictModel):
    """Ground-plane calibration: image points (same units as polygons) and where they lie in metres."""

    image_points: list[Point] = Field(min_length=4)
    ground_points_m: list[Point] = Field(min_length=4)

    @model_validator(mode="after")
    def _same_length(self) -> Calibration:
        if len(self.image_points) != len(self.ground_points_m):
            raise LocatedValueError(
                "ground_points_m",
                f"image_points has {len(self.image_points)} points but ground_points_m has "
                f"{len(self.ground_points_m)}: they must pair up",
            )
        return self
