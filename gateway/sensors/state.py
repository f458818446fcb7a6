"""One sensor's state over time: what it reports, whether that is an alarm, whether it is alive.

Pure and clock-driven: the caller passes `t` (monotonic seconds) and `now` (aware wall clock)
with every message and with a periodic `tick` (about once a second), and gets `SensorChange`s.
The alarm condition is the reported state, gated by the sensor's schedule, through the same
`Debounce` as video rules (min_active_s as for_s, cooldown_s). Buttons (`sos`) report presses,
not states: a press holds the condition for `momentary_s`. A sensor with `heartbeat_s` that is
silent longer than that goes `offline` once, and `online` again at its next message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway.analytics.rules.timing import Debounce, Schedule, Timing, Transition
from gateway.config.models import Sensor
from gateway.events.timestamps import iso
from gateway.sensors.mapping import SensorReading

ChangeKind = Literal["active", "inactive", "offline", "online"]


@dataclass(frozen=True)
class SensorChange:
    """A transition worth telling the centre about. `at`: when it really happened (wall clock):
    for `active` when the sensor first reported it, for `offline` when it was last heard."""

    kind: ChangeKind
    at: datetime
    value: Any = None


class SensorState:
    def __init__(self, sensor: Sensor, timezone: ZoneInfo, t: float, now: datetime):
        self.sensor = sensor
        self.schedule = Schedule(list(sensor.schedule), timezone)
        self.debounce = Debounce(Timing(for_s=sensor.min_active_s, clear_s=0.0, cooldown_s=sensor.cooldown_s))
        self.reported: bool | None = None
        self.value: Any = None
        self.press_until = float("-inf")
        self.raw_since: datetime | None = None
        self.watch_from_t = t
        self.last_seen_t: float | None = None
        self.last_seen: datetime | None = None
        self.offline = False
        self.battery: float | None = None
        self.linkquality: int | None = None
        self.messages = 0
        self.errors = 0
        self.last_error: str | None = None

    @property
    def active(self) -> bool:
        """An alarm is open (debounced, scheduled, out of cooldown)."""
        return self.debounce.active

    def on_reading(self, reading: SensorReading, t: float, now: datetime) -> list[SensorChange]:
        changes = self._heard(t, now)
        if reading.battery is not None:
            self.battery = reading.battery
        if reading.linkquality is not None:
            self.linkquality = reading.linkquality
        if reading.active is not None:
            self._report(reading, t, now)
        return changes + self._evaluate(t, now)

    def on_error(self, reason: str, t: float, now: datetime) -> list[SensorChange]:
        """An unreadable message: counted, but the sensor is alive (it did send something)."""
        self.errors += 1
        self.last_error = reason
        return self._heard(t, now) + self._evaluate(t, now)

    def tick(self, t: float, now: datetime) -> list[SensorChange]:
        """Time passing: debounce and button timeouts, schedule edges, heartbeat."""
        return self._evaluate(t, now) + self._check_silence(t, now)

    def _report(self, reading: SensorReading, t: float, now: datetime) -> None:
        if self.sensor.momentary:
            if reading.active:
                self.press_until = t + self.sensor.momentary_s
                self.value = reading.value
            return
        if reading.active and not self.reported:
            self.raw_since = now
        self.reported = reading.active
        if reading.active or not self.debounce.active:
            self.value = reading.value

    def _condition(self, t: float) -> bool:
        return t < self.press_until if self.sensor.momentary else bool(self.reported)

    def _evaluate(self, t: float, now: datetime) -> list[SensorChange]:
        condition = self._condition(t) and self.schedule.active(now)
        transition = self.debounce.step(condition, t)
        if transition is Transition.START:
            since = now if self.sensor.momentary or self.raw_since is None else min(self.raw_since, now)
            return [SensorChange("active", since, self.value)]
        if transition is Transition.END:
            return [SensorChange("inactive", now, self.value)]
        return []

    def _heard(self, t: float, now: datetime) -> list[SensorChange]:
        self.messages += 1
        self.last_seen_t, self.last_seen = t, now
        if self.offline:
            self.offline = False
            return [SensorChange("online", now)]
        return []

    def _check_silence(self, t: float, now: datetime) -> list[SensorChange]:
        heartbeat = self.sensor.heartbeat_s
        if heartbeat is None or self.offline:
            return []
        silent = t - (self.last_seen_t if self.last_seen_t is not None else self.watch_from_t)
        if silent <= heartbeat:
            return []
        self.offline = True
        return [SensorChange("offline", self.last_seen or now - timedelta(seconds=silent))]

    def health(self, t: float) -> dict[str, Any]:
        """For the status message and the API: what an operator checks first."""
        if self.sensor.momentary:
            state = "active" if self._condition(t) else ("idle" if self.messages else "unknown")
        else:
            state = {None: "unknown", True: "active", False: "inactive"}[self.reported]
        return {
            "id": self.sensor.id, "name": self.sensor.label, "type": self.sensor.type,
            "state": state, "alarm": self.active, "online": not self.offline,
            "last_seen": iso(self.last_seen) if self.last_seen else None,
            "silent_s": None if self.last_seen_t is None else round(t - self.last_seen_t, 1),
            "battery": self.battery, "linkquality": self.linkquality,
            "messages": self.messages, "errors": self.errors, "last_error": self.last_error,
        }
