"""`cameras[].tiling`: tiled detection for far views, where people are 30–60 px tall.

    tiling:
      mode: auto            # off (default) | auto | grid
      min_person_px: 40     # auto: the smallest person to find, in source pixels (height)
      grid: [4, 2]          # grid: columns and rows
      overlap: 0.2          # share of a tile its neighbours overlap
      region: zones         # zones: tile only the zones' bounding box; frame: the whole frame
      whole_frame: true     # also one pass over the whole frame (people larger than a tile)

`auto` cuts tiles small enough that a `min_person_px` person reaches the height YOLOX-Nano finds
reliably at its input (detectors.tiling.RELIABLE_INPUT_PX, measured by bench/bench_person_size.py).
Each tile is one detector run: a frame costs `tiles + 1` inferences.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from detectors.tiling import MAX_TILES, SMALLEST_FINDABLE_PX
from gateway.config.base import LocatedErrors, StrictModel, located

MIN_TILE_PX = 96
"""A tile narrower or lower than this holds no whole person worth finding: a grid that cuts the
frame finer is refused at `check` (resolution known) or reduced at run time, with a warning."""

GridSide = Annotated[int, Field(ge=1, le=16)]


class TilingSection(StrictModel):
    mode: Literal["off", "auto", "grid"] = Field(
        default="off", description="off: the whole frame at the detector's input size; auto: a grid "
                                   "chosen from min_person_px; grid: the grid given.")
    min_person_px: float = Field(
        default=40, description="auto: the smallest person height to find, in source pixels.")
    grid: tuple[GridSide, GridSide] | None = Field(default=None, description="grid: [columns, rows].")
    overlap: float = Field(default=0.2, ge=0, le=0.5,
                           description="Share of a tile its neighbours overlap (people cut by a border "
                                       "are whole in the neighbour).")
    region: Literal["zones", "frame"] = Field(
        default="zones", description="zones: tile the bounding box of the zones (minus private masks); "
                                     "frame: the whole frame.")
    whole_frame: bool = Field(default=True, description="Also run the detector once over the whole "
                                                        "frame, for people larger than a tile.")

    @model_validator(mode="after")
    def _consistent(self) -> TilingSection:
        problems = []
        if self.mode == "grid" and self.grid is None:
            problems.append(located("grid", "mode grid needs grid: [columns, rows]"))
        if self.mode != "grid" and self.grid is not None:
            problems.append(located("grid", f"grid is only used with mode: grid (mode is {self.mode})"))
        if self.min_person_px < SMALLEST_FINDABLE_PX:
            problems.append(located(
                "min_person_px", f"{self.min_person_px:g} px is below what the detector can find: people "
                f"shorter than {SMALLEST_FINDABLE_PX:g} px stay invisible however the frame is tiled "
                "(use the camera's main stream or zoom in)"))
        if self.grid is not None and self.grid[0] * self.grid[1] > MAX_TILES:
            problems.append(located("grid", f"{self.grid[0]}×{self.grid[1]} is more than {MAX_TILES} tiles "
                                            "per frame, more than any box can run"))
        if problems:
            raise LocatedErrors(problems)
        return self
