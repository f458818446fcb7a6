"""Camera rules (`rules:`), told apart by `type:`: crowd, gathering, growth, loitering, intrusion."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gateway.config.base import TIME_WINDOW, Ident, StrictModel


def _time_window(window: str) -> str:
    """One 'HH:MM-HH:MM' window; checked per item so the error points at the item's line."""
    match = TIME_WINDOW.match(window.strip())
    if not match:
        raise ValueError(f"time window {window!r} must look like '22:00-06:00' (24-hour clock)")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise ValueError(f"time window {window!r} has an impossible time (00:00..23:59, or 24:00 as end)")
    if (start_h, start_m) == (end_h, end_m):
        raise ValueError(f"time window {window!r} is empty (start equals end)")
    return window.strip()


TimeWindow = Annotated[str, AfterValidator(_time_window)]
"""'22:00-06:00' spans midnight; '24:00' is allowed as an end time only."""


class RuleUpdates(StrictModel):
    """When an open event sends `update` messages."""

    min_change: int = Field(default=2, ge=1, description="count changed by at least this much")
    min_change_share: float = Field(
        default=0.1, ge=0, le=1, description="and by at least this share of the count last sent (0.1: a tenth)")
    settle_s: float = Field(default=3, ge=0, description="and stayed changed this long (noise never lasts)")
    every_s: float = Field(default=60, gt=0, description="or this long since the last message")


class Escalation(StrictModel):
    """While `sensor` is active, alerts of the rule carry `severity` (sent as an update)."""

    sensor: Ident
    severity: int = Field(default=4, ge=1, le=4)


class RuleBase(StrictModel):
    id: Ident | None = Field(default=None, description="Default: '<type>-<zone or frame>'.")
    zone: Ident | None = Field(default=None, description="Zone id; omitted means the whole frame.")
    for_s: float = Field(default=5, ge=0, description="Condition must hold this long to start.")
    clear_s: float = Field(default=5, ge=0, description="Condition must be false this long to end.")
    cooldown_s: float = Field(default=0, ge=0, description="After an end, no new start this long.")
    schedule: list[TimeWindow] = Field(
        default_factory=list, description="Active windows 'HH:MM-HH:MM' (local time); empty = always."
    )
    severity: int = Field(default=2, ge=1, le=4)
    updates: RuleUpdates = Field(default_factory=RuleUpdates)
    when_sensor: Ident | None = Field(
        default=None, description="Sensor id: the rule is armed only while that sensor is active.")
    escalate: Escalation | None = Field(
        default=None, description="Raise the severity while a sensor is active (e.g. an SOS button).")

    @property
    def rule_id(self) -> str:
        return self.id or f"{self.type}-{self.zone or 'frame'}"  # type: ignore[attr-defined]


class CrowdRule(RuleBase):
    """Too many people: count >= min_people, or density >= min_density_per_m2 (calibrated)."""

    type: Literal["crowd"]
    min_people: int | None = Field(default=None, ge=1)
    min_density_per_m2: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_threshold(self) -> CrowdRule:
        if self.min_people is None and self.min_density_per_m2 is None:
            raise ValueError("a crowd rule needs min_people or min_density_per_m2")
        return self


class GatheringRule(RuleBase):
    """People clustered within radius_m of each other (single linkage), persisting."""

    type: Literal["gathering"]
    min_people: int = Field(default=4, ge=2)
    radius_m: float = Field(default=2.0, gt=0, le=50)


class GrowthRule(RuleBase):
    """The count rises by at least `delta` within `window_s` seconds."""

    type: Literal["growth"]
    delta: int = Field(ge=1)
    window_s: float = Field(default=20, gt=0)
    for_s: float = Field(default=0, ge=0)


class LoiteringRule(RuleBase):
    """One person (track) stays in the zone for at least `for_s` seconds."""

    type: Literal["loitering"]
    for_s: float = Field(default=120, gt=0)


class IntrusionRule(RuleBase):
    """Anyone in the zone while the schedule is active."""

    type: Literal["intrusion"]
    min_people: int = Field(default=1, ge=1)
    for_s: float = Field(default=1, ge=0)


Rule = Annotated[
    CrowdRule | GatheringRule | GrowthRule | LoiteringRule | IntrusionRule,
    Field(discriminator="type"),
]
