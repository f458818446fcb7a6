"""Per-frame conditions of the zone-level rules: crowd, growth, intrusion, loitering.

Crowd and growth read the place's count from `Scene.count_in` (the counting model's estimate
where the camera's counting mode chose it); intrusion and loitering are about the tracked people.

Each condition turns a `Scene` into `Observation`s; it knows nothing of timing (see timing.py)
or of events. Gatherings, which need cluster identities, live in gathering.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Protocol

from gateway.analytics.rules.scene import Observation, Scene
from gateway.config.models import CrowdRule, GrowthRule, IntrusionRule, LoiteringRule


class Condition(Protocol):
    def observe(self, scene: Scene) -> list[Observation]:
        """The instances seen in this frame (instances not returned count as not holding)."""
        ...

    def forget(self, key: Hashable) -> None:
        """The engine dropped instance `key`: release any memory of it."""
        ...


class ZoneCondition:
    """Base of the rules with a single instance per zone."""

    def __init__(self, zone: str | None):
        self.zone = zone

    def forget(self, key: Hashable) -> None:
        """Nothing is remembered per instance."""


class CrowdCondition(ZoneCondition):
    """count >= min_people, or density >= min_density_per_m2 when calibrated."""

    def __init__(self, rule: CrowdRule):
        super().__init__(rule.zone)
        self.rule = rule

    def observe(self, scene: Scene) -> list[Observation]:
        members = scene.present_in(self.zone)
        count, source = scene.count_in(self.zone)
        density = scene.density(self.zone, count)
        rule = self.rule
        holds = (rule.min_people is not None and count >= rule.min_people) or (
            rule.min_density_per_m2 is not None
            and density is not None
            and density >= rule.min_density_per_m2
        )
        return [Observation(None, holds, count, members, density, source)]


class IntrusionCondition(ZoneCondition):
    """At least min_people in the zone (the schedule says when that is forbidden)."""

    def __init__(self, rule: IntrusionRule):
        super().__init__(rule.zone)
        self.min_people = rule.min_people

    def observe(self, scene: Scene) -> list[Observation]:
        members = scene.present_in(self.zone)
        count = len(members)
        return [Observation(None, count >= self.min_people, count, members, scene.density(self.zone, count))]


class GrowthCondition(ZoneCondition):
    """The count is at least `delta` above its minimum over the last `window_s` seconds.

    The window minimum is kept in a monotonic deque (amortised O(1) per frame).
    """

    def __init__(self, rule: GrowthRule):
        super().__init__(rule.zone)
        self.delta = rule.delta
        self.window_s = rule.window_s
        self._minima: deque[tuple[float, int]] = deque()

    def observe(self, scene: Scene) -> list[Observation]:
        members = scene.present_in(self.zone)
        count, source = scene.count_in(self.zone)
        while self._minima and self._minima[-1][1] >= count:
            self._minima.pop()
        self._minima.append((scene.t, count))
        while self._minima[0][0] < scene.t - self.window_s:
            self._minima.popleft()
        rise = count - self._minima[0][1]
        return [Observation(None, rise >= self.delta, count, members, scene.density(self.zone, count), source)]


class LoiteringCondition(ZoneCondition):
    """One instance per live track in the zone; the rule's for_s is the dwell time.

    Lost tracks (briefly occluded people) still count as in the zone at their last known
    position, so an occlusion shorter than the tracker's buffer does not reset the dwell time.
    """

    def __init__(self, rule: LoiteringRule):
        super().__init__(rule.zone)

    def observe(self, scene: Scene) -> list[Observation]:
        ids = scene.people.ids
        rows = scene.alive_in(self.zone)
        return [Observation(int(ids[row]), True, 1, rows[i : i + 1]) for i, row in enumerate(rows)]
