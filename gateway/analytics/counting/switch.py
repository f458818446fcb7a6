"""Which count the rules use: the tracked detector count or the counting model's estimate.

Modes (`counting.mode` of a camera):
- `detector`: always the tracked detector count.
- `model`: the model's estimate whenever there is one (not while it warms up).
- `auto`: per zone (and for the whole frame), the model's estimate only where the scene is
  dense, the tracked detector count elsewhere. A place turns dense when the model sees at least
  `ENTER_RATIO` times and at least `ENTER_MARGIN` people more than the detector tracks there (the
  detector is missing people: occlusion, small far heads), and stops being dense when the
  estimate falls below `LEAVE_RATIO` times / `LEAVE_MARGIN` more than the detector count. In a
  sparse scene the detector sees everyone and the estimate stays within the model's noise of its
  count, so `auto` leaves the count the detector's: it never makes a sparse scene worse.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

ENTER_RATIO, ENTER_MARGIN = 1.3, 4.0
LEAVE_RATIO, LEAVE_MARGIN = 1.15, 2.0

Mode = Literal["detector", "model", "auto"]
Source = Literal["detector", "model"]


class CountSwitch:
    """Picks a count per place (zone id, or None for the whole frame), with hysteresis in auto."""

    def __init__(self, mode: Mode):
        self.mode = mode
        self._dense: dict[Hashable, bool] = {}

    def choose(self, place: Hashable, detected: int, estimated: float | None) -> tuple[int, Source]:
        if estimated is None or self.mode == "detector":
            return detected, "detector"
        if self.mode == "model":
            return round(estimated), "model"
        if self._dense.get(place, False):
            dense = estimated >= max(detected * LEAVE_RATIO, detected + LEAVE_MARGIN)
        else:
            dense = estimated >= max(detected * ENTER_RATIO, detected + ENTER_MARGIN)
        self._dense[place] = dense
        return (round(estimated), "model") if dense else (detected, "detector")
