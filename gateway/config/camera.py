"""A camera (`cameras[]`) and the defaults every camera inherits (`defaults:`).

Cross-field checks live here so one validation pass reports every problem of a camera: zones
that rules and patrol stops refer to, density rules without calibration, and every polygon
point inside the frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.base import (
    Ident,
    LocatedErrors,
    LocatedValueError,
    OneLine,
    Point,
    StrictModel,
    duplicates,
    located,
)
from gateway.config.clips import ClipsSection
from gateway.config.counting import CountingSection
from gateway.config.geometry import Calibration, Location, Mask, Zone
from gateway.config.rules import CrowdRule, Rule
from gateway.config.sources import CameraSource, OnvifSource
from gateway.config.tiling import MIN_TILE_PX, TilingSection


class MotionSettings(StrictModel):
    enabled: bool = True
    sensitivity: float = Field(default=0.5, gt=0, le=1)
    max_skip_s: float = Field(default=5, gt=0)


class PatrolStop(StrictModel):
    preset: OneLine = Field(min_length=1, description="The camera's preset: token, name or number.")
    dwell_s: float = Field(default=30, gt=0)
    settle_s: float = Field(default=3, ge=0)
    zones: list[Ident] = Field(default_factory=list)

    @field_validator("preset", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        """`preset: 3` means the same as `preset: "3"` (YAML reads an unquoted number as one)."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


PositiveInt = Annotated[int, Field(gt=0)]


class CameraDefaults(StrictModel):
    """Values every camera inherits unless it sets its own."""

    fps: float = Field(default=2, gt=0, le=60, description="Frames analysed per second.")
    resolution: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None, description="[width, height] of the frame the pixel polygons were drawn on."
    )
    coordinates: Literal["pixels", "normalized"] = "pixels"
    decode: Literal["auto", "keyframes", "all"] = "auto"
    offline_after_s: float = Field(default=60, gt=0)
    stall_s: float = Field(default=10, gt=0, description="No new frame this long: reconnect. "
                           "Must exceed the camera's keyframe interval.")
    motion: MotionSettings = Field(default_factory=MotionSettings)
    clips: ClipsSection = Field(default_factory=ClipsSection, description="A video clip for every alert.")
    patrol_move_s: float = Field(default=3, ge=0, description="PTZ patrol: a move counts as done this "
                                 "long after GotoPreset when the camera does not report its PTZ status.")
    patrol_move_timeout_s: float = Field(default=20, gt=0, description="PTZ patrol: a move the camera "
                                         "reports must end at the preset within this; else it failed.")
    patrol_fault_after_s: float = Field(default=120, gt=0, description="PTZ patrol: unable to move this "
                                        "long raises a patrol_fault alert (ended when it moves again).")


class Camera(CameraDefaults):
    id: Ident
    name: OneLine = ""
    grid_id: OneLine = ""
    location: Location = Field(default_factory=Location)
    source: CameraSource
    masks: list[Mask] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    calibration: Calibration | None = None
    patrol: list[PatrolStop] = Field(default_factory=list)
    counting: CountingSection = Field(default_factory=CountingSection)
    tiling: TilingSection = Field(default_factory=TilingSection)

    @model_validator(mode="after")
    def _consistent(self) -> Camera:
        problems = [
            *duplicates("zones", [zone.id for zone in self.zones]),
            *duplicates("rules", [rule.rule_id for rule in self.rules]),
            *self._rule_problems(),
            *self._patrol_problems(),
            *self._polygon_problems(),
            *self._tiling_problems(),
        ]
        if problems:
            raise LocatedErrors(problems)
        return self

    def _rule_problems(self) -> Iterator[LocatedValueError]:
        zone_ids = {zone.id for zone in self.zones}
        for index, rule in enumerate(self.rules):
            if rule.zone is not None and rule.zone not in zone_ids:
                yield located(f"rules[{index}].zone", f"unknown zone {rule.zone!r}", zone_ids)
            if isinstance(rule, CrowdRule) and rule.min_density_per_m2 and not self.calibration:
                yield located(
                    f"rules[{index}].min_density_per_m2",
                    "a density threshold needs the camera's calibration (or use min_people)",
                )

    def _patrol_problems(self) -> Iterator[LocatedValueError]:
        zone_ids = {zone.id for zone in self.zones}
        if self.patrol and not isinstance(self.source, OnvifSource):
            yield located("patrol", "a PTZ patrol needs an onvif: source (presets are ONVIF)")
        for index, stop in enumerate(self.patrol):
            for position, zone in enumerate(stop.zones):
                if zone not in zone_ids:
                    yield located(f"patrol[{index}].zones[{position}]", f"unknown zone {zone!r}", zone_ids)

    def _tiling_problems(self) -> Iterator[LocatedValueError]:
        """A grid too fine for the frame, when the frame size is known (else a warning at run time)."""
        if self.tiling.grid is None or self.resolution is None:
            return
        (cols, rows), (width, height) = self.tiling.grid, self.resolution
        if width / cols < MIN_TILE_PX or height / rows < MIN_TILE_PX:
            yield located("tiling.grid", f"{cols}×{rows} tiles of a {width}x{height} frame are smaller than "
                                         f"{MIN_TILE_PX} px: no person fits in a tile that small")

    def _polygon_problems(self) -> Iterator[LocatedValueError]:
        shapes: list[tuple[str, list[Point]]] = [
            (f"zones[{i}].polygon", zone.polygon) for i, zone in enumerate(self.zones)
        ] + [(f"masks[{i}].polygon", mask.polygon) for i, mask in enumerate(self.masks)]
        if self.calibration:
            shapes.append(("calibration.image_points", self.calibration.image_points))
        if self.coordinates == "normalized":
            width, height = 1.0, 1.0
        elif self.resolution is not None:
            width, height = self.resolution
        elif shapes:
            yield located(
                shapes[0][0],
                "pixel coordinates need the camera's resolution: [width, height] "
                "(or set coordinates: normalized)",
            )
            return
        else:
            return
        for where, points in shapes:
            for index, (x, y) in enumerate(points):
                if not (0 <= x <= width and 0 <= y <= height):
                    yield located(
                        f"{where}[{index}]",
                        f"point [{x:g}, {y:g}] lies outside the frame {width:g}x{height:g}"
                        + (" (normalized coordinates are 0..1)" if self.coordinates == "normalized" else ""),
                    )
