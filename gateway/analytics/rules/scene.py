"""What rules see of one analysed frame, and what they report back about it."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from gateway.analytics.counting import CountMap
from gateway.analytics.geometry import GroundModel
from gateway.analytics.tracker import TrackFrame


@dataclass(frozen=True)
class Scene:
    """The tracked people at time `t`, with their zone membership.

    people: every confirmed track still alive (seen now, or lost within the tracker's buffer).
    present: the people counted now: seen in this frame or missed for only a few frames, so
        that a detector miss does not change counts (and thereby start, end or update events).
    in_zone: zone id -> bool per person (foot point inside); key None is the whole frame.
    zone_area_m2: zone id -> ground area when the camera is calibrated, else None.
    sensors: sensor id -> active now, for rules conditioned on a sensor (`when_sensor`,
        `escalate`); a sensor missing here counts as inactive.
    counts: place (zone id, None = whole frame) -> (count, "detector"|"model"): the count that
        crowd and growth rules use (see gateway.analytics.counting.switch); a place missing
        here counts its present people.
    count_map: the counting model's estimate of this frame (density for evidence pictures).
    """

    t: float
    people: TrackFrame
    present: np.ndarray
    in_zone: Mapping[str | None, np.ndarray]
    zone_area_m2: Mapping[str | None, float | None]
    ground: GroundModel
    sensors: Mapping[str, bool] = field(default_factory=dict)
    counts: Mapping[str | None, tuple[int, str]] = field(default_factory=dict)
    count_map: CountMap | None = None

    def count_in(self, zone: str | None) -> tuple[int, str]:
        """(people, source) in `zone` for crowd and growth rules."""
        chosen = self.counts.get(zone)
        return chosen if chosen is not None else (len(self.present_in(zone)), "detector")

    def present_in(self, zone: str | None) -> np.ndarray:
        """Row indices of the people counted in `zone`."""
        return np.flatnonzero(self.present & self.in_zone[zone])

    def alive_in(self, zone: str | None) -> np.ndarray:
        """Row indices of every live track whose (last known) position is in `zone`."""
        return np.flatnonzero(self.in_zone[zone])

    def distances_m(self, rows: np.ndarray) -> np.ndarray:
        """Ground distances between the people in `rows` (shared by every gathering rule)."""
        return self._distances[np.ix_(rows, rows)]

    @cached_property
    def _distances(self) -> np.ndarray:
        return self.ground.distances_m(self.people.boxes)

    def density(self, zone: str | None, count: int) -> float | None:
        area = self.zone_area_m2[zone]
        return count / area if area else None


@dataclass(frozen=True)
class Observation:
    """One rule instance's reading in one frame.

    key: the instance within its rule (None for rules with one instance per zone, a track id for
        loitering, a gathering number for gatherings).
    holds: the rule's condition (before schedule and timing).
    members: row indices into `Scene.people` of the people the reading is about.
    """

    key: Hashable
    holds: bool
    count: int
    members: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    density_per_m2: float | None = None
    count_source: str = "detector"
    """Where `count` comes from: the tracked detections, or the counting model's estimate."""
