"""Steady counts: a counting model's per-frame estimates as a count that holds still and follows
real changes within a few seconds.

A model's estimate of one frame is off by a couple of people either way (its MAE), differently
in every frame: shown raw, a crowd of 33 reads 31, 35, 32, 36 from one frame to the next, and a
poorly fitted model jumps far more. People do not come and go like that. `SteadyCount` is
an exponential average over time whose time constant depends on the change:

- a change within the model's noise (`band`: `BAND_PEOPLE`, or `BAND_SHARE` of the count when
  that is more) is averaged out slowly (`settle_s`);
- a change beyond it, seen in two estimates in a row on the same side, is a real one (a group
  arrived, a queue left) and is followed quickly (`follow_s`): 90 % of a step within about 2 s
  at 2 frames per second. One wild estimate alone moves it by about a quarter of its jump,
  and the next estimates take that back;
- the count shown (`shown`) is a whole number that moves only when the average is a whole
  person away from it (`HYSTERESIS`), so it never flickers between two neighbours.

On the held-out half of the mall clip (2 fps) this halves the frame-to-frame jitter of the count
at the same error against the annotations (bench/bench_counting_cold.py prints both).

Pure: the caller passes each estimate with its time (seconds, any monotonic clock). A gap
longer than `RESTART_GAP_S` (the camera was offline) restarts from the next estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SETTLE_S = 1.5
FOLLOW_S = 0.5
BAND_PEOPLE = 4.0
BAND_SHARE = 0.12
HYSTERESIS = 0.5
"""The shown count moves when the average is at least 0.5 + this away from it."""
RESTART_GAP_S = 30.0


@dataclass(frozen=True)
class SmoothingSettings:
    settle_s: float = SETTLE_S
    follow_s: float = FOLLOW_S
    band_people: float = BAND_PEOPLE
    band_share: float = BAND_SHARE
    hysteresis: float = HYSTERESIS


class SteadyCount:
    """One place's count (a zone, or the whole picture) over time; see the module docstring."""

    def __init__(self, settings: SmoothingSettings | None = None):
        self.settings = settings or SmoothingSettings()
        self.value: float | None = None
        """The smoothed estimate (None before the first)."""
        self.shown: int | None = None
        """The whole number to show and to judge rules by."""
        self._t: float | None = None
        self._beyond = 0
        """+1 / -1: the previous estimate was beyond the band above / below; 0: within it."""

    def update(self, estimate: float, t: float) -> int:
        """Take one estimate made at time `t`; returns the count to show."""
        if self.value is None or self._t is None or t - self._t > RESTART_GAP_S:
            self.value, self._beyond = float(estimate), 0
        else:
            self.value += self._step(float(estimate), max(t - self._t, 0.0))
        self._t = t
        self.shown = self._whole(self.value)
        return self.shown

    def _step(self, estimate: float, elapsed: float) -> float:
        assert self.value is not None
        settings = self.settings
        change = estimate - self.value
        band = max(settings.band_people, settings.band_share * abs(self.value))
        side = 0 if abs(change) <= band else (1 if change > 0 else -1)
        real = side != 0 and side == self._beyond
        self._beyond = side
        time_constant = settings.follow_s if real else settings.settle_s
        return change * (1.0 - math.exp(-elapsed / time_constant))

    def _whole(self, value: float) -> int:
        shown = self.shown
        if shown is None or abs(value - shown) >= 0.5 + self.settings.hysteresis:
            return max(0, round(value))
        return shown
