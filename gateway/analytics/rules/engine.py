"""Runs one configured rule: its condition per frame, gated by schedule and timed per instance.

The engine owns the rule's instances (one `Debounce` each) and reports, per frame, what
happened to each open instance: it started, it is still open ("hold"), or it ended. Turning
that into messages (ids, seq, update policy, payload) is the events package's job.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.analytics.rules.conditions import (
    Condition,
    CrowdCondition,
    GrowthCondition,
    IntrusionCondition,
    LoiteringCondition,
)
from gateway.analytics.rules.gathering import GatheringCondition
from gateway.analytics.rules.scene import Observation, Scene
from gateway.analytics.rules.timing import Debounce, Schedule, Timing, Transition
from gateway.config.models import (
    CrowdRule,
    GatheringRule,
    GrowthRule,
    IntrusionRule,
    LoiteringRule,
    RuleBase,
)

CONDITIONS: dict[type[RuleBase], type] = {
    CrowdRule: CrowdCondition,
    GatheringRule: GatheringCondition,
    GrowthRule: GrowthCondition,
    LoiteringRule: LoiteringCondition,
    IntrusionRule: IntrusionCondition,
}


@dataclass(frozen=True)
class Signal:
    """What happened to one open rule instance in one frame.

    kind: "start" (the condition has held for for_s), "hold" (still open; `holds` says whether
        the condition is true right now), or "end" (false for clear_s, or shut down).
    observation: this frame's reading of the instance; None when it was not seen (a dissolved
        gathering, a track that left), which readers treat as a count of 0.
    since_t: when the condition began to hold (start) or stopped holding (end).
    """

    rule: RuleBase
    key: Hashable
    kind: Literal["start", "hold", "end"]
    observation: Observation | None
    holds: bool
    since_t: float | None = None


class RuleEngine:
    """One rule's condition, schedule and per-instance timing."""

    def __init__(self, rule: RuleBase, timezone: ZoneInfo):
        self.rule = rule
        self.condition: Condition = CONDITIONS[type(rule)](rule)
        self.schedule = Schedule(rule.schedule, timezone)
        self.timing = Timing(rule.for_s, rule.clear_s, rule.cooldown_s)
        self._instances: dict[Hashable, Debounce] = {}

    def step(self, scene: Scene, now: datetime) -> list[Signal]:
        armed = self.schedule.active(now) and self._sensor_allows(scene)
        seen = {obs.key: obs for obs in self.condition.observe(scene)}
        signals = []
        keys = list(self._instances) + [key for key in seen if key not in self._instances]
        for key in keys:
            obs = seen.get(key)
            holds = armed and obs is not None and obs.holds
            debounce = self._instances.setdefault(key, Debounce(self.timing))
            since = debounce.false_since
            transition = debounce.step(holds, scene.t)
            if transition is Transition.START:
                signals.append(Signal(self.rule, key, "start", obs, holds, debounce.true_since))
            elif transition is Transition.END:
                signals.append(Signal(self.rule, key, "end", obs, holds, since if since is not None else scene.t))
            elif debounce.active:
                signals.append(Signal(self.rule, key, "hold", obs, holds))
            if obs is None and debounce.dormant(scene.t):
                del self._instances[key]
                self.condition.forget(key)
        return signals

    def _sensor_allows(self, scene: Scene) -> bool:
        """A rule with `when_sensor` is armed only while that sensor is active (e.g. intrusion
        in the equipment yard only while its door contact is open)."""
        sensor = self.rule.when_sensor
        return sensor is None or scene.sensors.get(sensor, False)

    def close(self, t: float) -> list[Signal]:
        """End every open instance now (shutdown, end of a replay) and forget all state."""
        signals = [
            Signal(self.rule, key, "end", None, False, debounce.false_since if debounce.false_since is not None else t)
            for key, debounce in self._instances.items()
            if debounce.active
        ]
        for key in self._instances:
            self.condition.forget(key)
        self._instances.clear()
        return signals
