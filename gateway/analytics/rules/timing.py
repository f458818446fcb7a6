"""When a rule's condition becomes an event: the one timing state machine every rule type uses.

`Debounce` turns a per-frame boolean into start/end transitions:
- start when the condition has held for `for_s` (and any cooldown is over);
- end when the condition has been false for `clear_s` (so a person missed for a few frames
  neither ends nor restarts an event);
- after an end, no new start for `cooldown_s`.
`Schedule` says whether a rule is armed at a wall-clock time; outside its windows the condition
counts as false. Both are pure: the caller supplies `t` (monotonic seconds) and `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60


class Transition(Enum):
    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True)
class Timing:
    for_s: float
    clear_s: float
    cooldown_s: float = 0.0


class Debounce:
    """Hysteresis on one condition; `step` once per analysed frame, in time order."""

    def __init__(self, timing: Timing):
        self.timing = timing
        self.active = False
        self.true_since: float | None = None
        self.false_since: float | None = None
        self.cooldown_until = float("-inf")

    def step(self, condition: bool, t: float) -> Transition | None:
        if condition:
            self.false_since = None
            if self.true_since is None:
                self.true_since = t
            if not self.active and self._may_start(self.true_since, t):
                self.active = True
                return Transition.START
            return None
        self.true_since = None
        if not self.active:
            return None
        if self.false_since is None:
            self.false_since = t
        if t - self.false_since >= self.timing.clear_s:
            self.active = False
            self.cooldown_until = t + self.timing.cooldown_s
            return Transition.END
        return None

    def _may_start(self, true_since: float, t: float) -> bool:
        return t - true_since >= self.timing.for_s and t >= self.cooldown_until

    def dormant(self, t: float) -> bool:
        """Nothing pending, open or cooling down: the instance can be forgotten."""
        return not self.active and self.true_since is None and t >= self.cooldown_until


class Schedule:
    """Active time windows 'HH:MM-HH:MM' in the gateway's time zone; empty means always.

    A window whose end is before its start runs across midnight ('22:00-06:00'). The start
    minute is inside the window, the end minute is not.
    """

    def __init__(self, windows: list[str], timezone: ZoneInfo):
        self.timezone = timezone
        self.windows = [self._parse(window) for window in windows]

    @staticmethod
    def _parse(window: str) -> tuple[int, int]:
        start, end = window.split("-")
        return _minutes(start), _minutes(end)

    def active(self, now: datetime) -> bool:
        if not self.windows:
            return True
        local = now.astimezone(self.timezone)
        minute = local.hour * 60 + local.minute
        return any(_within(minute, start, end) for start, end in self.windows)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return min(int(hours) * 60 + int(minutes), MINUTES_PER_DAY)


def _within(minute: int, start: int, end: int) -> bool:
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end
