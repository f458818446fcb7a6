"""The PTZ patrol's timetable and its reported state: pure logic, no threads, no I/O.

A patrol (`camera.patrol: [{preset, dwell_s, settle_s, zones}]`) cycles a PTZ camera through
presets. Each visit to a stop has three phases:

    moving (until the camera confirms it reached the preset)  →  settling (settle_s)
      →  watching (dwell_s)  →  the next stop's visit ...

Analysis runs only while *watching*: during the move the picture sweeps and during the settle
the image is still refocusing/exposing, and either would produce false counts. Unlike a fixed
timetable, a visit leaves *moving* only when the driver (gateway.onvif.ptz) says the camera is
there (`arrived`): applying the zones of one preset to the view of another would raise alerts
about places the camera is not looking at. A visit whose move keeps failing is given up after
the time the stop would have taken (move_s + settle_s + dwell_s), so one unreachable preset does
not hold up the others.

`visit` numbers the views: it changes exactly when the picture stops matching the previous one
(a new stop, or a linked sensor turned the camera away), which is when the analytics end the
open events of the old view.

`MoveFailures` is the patrol-fault timer: how long the patrol, or one of its stops, has not been
reachable (see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MOVE_S = 3.0
"""Move time assumed after a GotoPreset when the camera does not report its PTZ status."""
DEFAULT_MOVE_TIMEOUT_S = 20.0
"""Longest a move the camera reports may take before it counts as failed."""
DEFAULT_FAULT_AFTER_S = 120.0
"""A patrol that cannot move this long is a fault the duty desk hears about."""

MOVING, SETTLING, WATCHING, AWAY = "moving", "settling", "watching", "away"
FAILING, STOPPED = "failing", "stopped"
PATROL_STATES: tuple[str, ...] = (MOVING, SETTLING, WATCHING, AWAY, FAILING, STOPPED)
"""Every value of `PatrolStatus.state` (metrics export one series per state)."""


@dataclass(frozen=True)
class PatrolState:
    """Where the patrol is at one moment.

    index: the stop (position in `camera.patrol`); preset: the configured preset (name, token or
    number); zones: zone ids that apply at this stop (empty: all of the camera's zones); phase:
    moving, settling, watching or away; visit: the view's number (see the module docstring);
    phase_started_at / phase_ends_at: the phase's bounds on the plan's clock (ends_at is None
    while moving: a move ends when the camera confirms it). preset_token / preset_name: the
    camera's own preset the move was confirmed at (None until then).
    """

    index: int
    preset: str
    zones: tuple[str, ...]
    phase: str
    visit: int
    phase_started_at: float
    phase_ends_at: float | None
    preset_token: str | None = None
    preset_name: str | None = None

    @property
    def analysing(self) -> bool:
        return self.phase == WATCHING

    @property
    def preset_label(self) -> str:
        """The preset as people know it: the camera's name for it, else the configured value."""
        return self.preset_name or self.preset


@dataclass(frozen=True)
class FailedMoves:
    """A stop's failed moves since it was last reached: the first and last failure, and why the
    last one failed."""

    first_at: float
    last_at: float
    error: str


@dataclass(frozen=True)
class Failing:
    """The longest failure `MoveFailures` knows of: for how long, at which stop, and why."""

    for_s: float
    stop: int
    error: str


class MoveFailures:
    """The patrol-fault timer: how long the patrol has been unable to move. Pure bookkeeping.

    Two measures; the longer counts. The patrol stalled: from the first failure after the last
    confirmed move, while no stop is reached (a wrong password, a dead motor). One stop
    unreachable: from its first to its last failure since it was last reached, whatever the other
    stops do (a preset typo, a preset deleted on the camera: the other stops are reached every
    round, which must not restart this stop's timer). Between two tries of a stop nobody knows
    whether it would have worked, so a stop counts as failing up to its last failure only.
    """

    def __init__(self) -> None:
        self._stalled_since: float | None = None
        self._stalled_at: int | None = None
        self._stops: dict[int, FailedMoves] = {}

    def failed(self, stop: int, t: float, error: str) -> None:
        if self._stalled_since is None:
            self._stalled_since = t
        previous = self._stops.get(stop)
        self._stops[stop] = FailedMoves(previous.first_at if previous else t, t, error)
        self._stalled_at = stop

    def reached(self, stop: int) -> float | None:
        """The camera is at `stop`: the patrol moves. Returns when moves to this stop began to
        fail, None when they had not (another stop skipped meanwhile is no news: it was logged)."""
        run = self._stops.pop(stop, None)
        self._stalled_since = self._stalled_at = None
        return run.first_at if run else None

    def failing(self, stop: int) -> bool:
        """Moves to `stop` fail, or the patrol has not moved since a failure."""
        return self._stalled_since is not None or stop in self._stops

    def worst(self, t: float) -> Failing | None:
        """The longest failure at `t`, None while every stop tried was reached."""
        spans = [Failing(run.last_at - run.first_at, stop, run.error) for stop, run in self._stops.items()]
        if self._stalled_since is not None and self._stalled_at is not None:
            stop = self._stalled_at
            spans.append(Failing(t - self._stalled_since, stop, self._stops[stop].error))
        return max(spans, key=lambda failing: failing.for_s, default=None)


class PatrolPlan:
    """The patrol's timetable, advanced by what the camera does (see the module docstring).

    Not thread-safe: the driver owns it and guards it. `t` is any monotonic clock, the same one
    for every call.
    """

    def __init__(self, stops: Sequence[Any], *, move_s: float = DEFAULT_MOVE_S, start: float = 0.0):
        if not stops:
            raise ValueError("a patrol needs at least one stop")
        if move_s < 0:
            raise ValueError("move_s must be >= 0")
        for index, stop in enumerate(stops):
            if float(stop.dwell_s) <= 0:
                raise ValueError(f"patrol stop {index}: dwell_s must be > 0")
        self.stops = tuple(stops)
        self.move_s = float(move_s)
        self._visit = 0
        self._index = 0
        self._began_at = float(start)
        self._arrived_at: float | None = None
        self._arrived_preset: tuple[str | None, str | None] = (None, None)
        self._away_at: float | None = None

    def _settle(self, index: int) -> float:
        return float(getattr(self.stops[index], "settle_s", 0) or 0)

    def _dwell(self, index: int) -> float:
        return float(self.stops[index].dwell_s)

    def stop_length(self, index: int) -> float:
        """What a stop takes when its move takes `move_s`: the time a failing stop is retried."""
        return self.move_s + self._settle(index) + self._dwell(index)

    def _ends_at(self) -> float:
        """When the current stop's time is over."""
        if self._arrived_at is None:
            return self._began_at + self.stop_length(self._index)
        return self._arrived_at + self._settle(self._index) + self._dwell(self._index)

    def state_at(self, t: float) -> PatrolState:
        index = self._index
        if self._away_at is not None:
            phase, started, ends = AWAY, self._away_at, max(self._away_at, self._ends_at())
        elif self._arrived_at is None:
            phase, started, ends = MOVING, self._began_at, None
        else:
            watch_from = self._arrived_at + self._settle(index)
            if t < watch_from:
                phase, started, ends = SETTLING, self._arrived_at, watch_from
            else:
                phase, started, ends = WATCHING, watch_from, watch_from + self._dwell(index)
        stop = self.stops[index]
        token, name = self._arrived_preset
        return PatrolState(index=index, preset=str(stop.preset),
                           zones=tuple(getattr(stop, "zones", ()) or ()), phase=phase,
                           visit=self._visit, phase_started_at=started, phase_ends_at=ends,
                           preset_token=token, preset_name=name)

    def arrived(self, t: float, token: str | None = None, name: str | None = None) -> None:
        """The camera is at the stop's preset (the camera's `token` and `name` for it, as the
        move was confirmed): settle, then watch."""
        if self._arrived_at is None and self._away_at is None:
            self._arrived_at = t
            self._arrived_preset = (token, name or None)

    def due(self, t: float) -> bool:
        """The current stop's time is over: watched for dwell_s, or failed to move for its length."""
        return t >= self._ends_at()

    def advance(self, t: float) -> PatrolState:
        """Begin the next stop's visit (moving): a new view."""
        self._visit += 1
        self._index = (self._index + 1) % len(self.stops)
        self._began_at, self._arrived_at, self._away_at = t, None, None
        self._arrived_preset = (None, None)
        return self.state_at(t)

    def turned_away(self, t: float) -> None:
        """The camera was turned off the plan (a linked sensor's preset): a new view, without
        analysis, until the current stop's time is over; then the patrol moves it back."""
        self._visit += 1
        self._away_at = t
