"""Which count the rules use: the tracked detector count or the counting model's steady estimate.

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

Both are steadied over time (the caller passes each frame's time): the model's estimate per
place goes through a `SteadyCount` (smoothing.py), and `auto` changes its mind only when the
other side has been called for `DWELL_S` without a break, so a place near the threshold does
not flip between the two counts from frame to frame.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

from gateway.analytics.counting.smoothing import SmoothingSettings, SteadyCount

ENTER_RATIO, ENTER_MARGIN = 1.3, 4.0
LEAVE_RATIO, LEAVE_MARGIN = 1.15, 2.0
DWELL_S = 3.0

Mode = Literal["detector", "model", "auto"]
Source = Literal["detector", "model"]


@dataclass
class _Place:
    steady: SteadyCount
    dense: bool | None = None
    """auto's current call (None before the first estimate)."""
    other_since: float | None = None
    """Since when the estimates call for the other side."""


class CountSwitch:
    """Picks a count per place (zone id, or None for the whole frame); see the module docstring."""

    def __init__(self, mode: Mode, smoothing: SmoothingSettings | None = None, dwell_s: float = DWELL_S):
        self.mode = mode
        self.smoothing = smoothing or SmoothingSettings()
        self.dwell_s = dwell_s
        self._places: dict[Hashable, _Place] = {}

    def choose(self, place: Hashable, detected: int, estimated: float | None, t: float) -> tuple[int, Source]:
        """The count of `place` at time `t` (seconds) and where it comes from."""
        if estimated is None or self.mode == "detector":
            return detected, "detector"
        state = self._places.get(place)
        if state is None:
            state = self._places[place] = _Place(SteadyCount(self.smoothing))
        steady = state.steady.update(estimated, t)
        if self.mode == "model" or self._dense(state, detected, t):
            return steady, "model"
        return detected, "detector"

    def steady(self, place: Hashable) -> float | None:
        """The smoothed estimate of `place` (None before its first)."""
        state = self._places.get(place)
        return None if state is None else state.steady.value

    def _dense(self, state: _Place, detected: int, t: float) -> bool:
        estimate = state.steady.value
        assert estimate is not None  # updated just before
        if state.dense:
            wanted = estimate >= max(detected * LEAVE_RATIO, detected + LEAVE_MARGIN)
        else:
            wanted = estimate >= max(detected * ENTER_RATIO, detected + ENTER_MARGIN)
        if state.dense is None or wanted == state.dense:
            state.dense, state.other_since = wanted, None
        elif state.other_since is None:
            state.other_since = t
        elif t - state.other_since >= self.dwell_s:
            state.dense, state.other_since = wanted, None
        return state.dense
