"""Sensor changes as `sensor` alerts, with the linked cameras' evidence at the trigger time.

A sensor alone is an unverified signal; the duty officer needs to see what triggered it. So the
start message carries, from every linked camera, a snapshot and the person count at the moment
the sensor fired: the first camera's picture is the alert's `snapshot`, the others ride in
`details.linked[i].snapshot` (same base64 shape). With `link.post_s` one `update` follows that
long after the trigger with fresh pictures from every linked camera (by then a PTZ camera has
reached its preset). Silence past `heartbeat_s` is its own `sensor` alert (`details.kind:
offline`), ended when the sensor is heard again.

Pure: the live view supplies the evidence and the caller the clock; see `SensorAlerts.handle`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from gateway.config.models import Camera, GatewaySection, Sensor
from gateway.events import AlertMessage, AlertSource, AlertSubject, Snapshot
from gateway.events.timestamps import iso
from gateway.events.watch import HEARTBEAT, NO_COUNT, AlertWatch
from gateway.sensors.state import SensorChange

log = logging.getLogger(__name__)

OFFLINE_SEVERITY = 2
TRIGGER, SILENCE = "trigger", "offline"
"""The two events a sensor can have open: it was triggered, and it went silent."""


@dataclass(frozen=True)
class LinkedEvidence:
    """One linked camera at the trigger: people seen there, and its annotated picture."""

    camera_id: str
    count: int | None = None
    snapshot: Snapshot | None = None


class LinkedCameras(Protocol):
    """The running cameras' evidence (the live view, gateway.runtime.live.LiveGateway)."""

    def linked_evidence(self, camera_ids: list[str], before_s: float = 0.0) -> list[LinkedEvidence]:
        """Per camera, the analysed frame from `before_s` seconds ago (0: the latest) and its
        count; cameras that are not running are left out. No network I/O."""
        ...


class SensorAlerts:
    def __init__(self, sensor: Sensor, gateway: GatewaySection, cameras: Sequence[Camera],
                 live: LinkedCameras):
        """`cameras`: the configured cameras (only the sensor's linked ones are used); `live`:
        where their pictures come from."""
        self.sensor = sensor
        self.live = live
        by_id = {camera.id: camera for camera in cameras}
        self._watch = AlertWatch(_source(sensor, gateway, [by_id[c] for c in sensor.link.cameras if c in by_id]))
        self.trigger = AlertSubject(type="sensor", severity=sensor.alert_severity, place=sensor.label,
                                    rule_id=sensor.id, rule=_rule(sensor), details=self._details("trigger"))
        self.silence = AlertSubject(type="sensor", severity=OFFLINE_SEVERITY, place=f"{sensor.label} 离线",
                                    rule_id=sensor.id, rule={"type": "sensor_offline",
                                                             "heartbeat_s": sensor.heartbeat_s},
                                    details=self._details("offline"))
        self._post_due: float | None = None
        self._linked: list[dict[str, Any]] = []

    def handle(self, changes: list[SensorChange], t: float, now: datetime) -> list[AlertMessage]:
        """Messages for these changes, plus any due follow-up; call at least once a second."""
        messages = [message for change in changes for message in self._change(change, t, now)]
        return messages + self._follow_up(t, now)

    def close_all(self, t: float, now: datetime) -> list[AlertMessage]:
        """End whatever is open (the sensor is removed or the gateway stops)."""
        return self._end(t, now, now) + self._watch.end(NO_COUNT, t, now, key=SILENCE)

    # ----------------------------------------------------------------- transitions

    def _change(self, change: SensorChange, t: float, now: datetime) -> list[AlertMessage]:
        if change.kind == "active" and not self._watch.is_open(TRIGGER):
            return [self._start(change, t, now)]
        if change.kind == "inactive":
            return self._end(t, now, change.at)
        if change.kind == "offline" and not self._watch.is_open(SILENCE):
            return [self._watch.start(self._offline_subject(change), HEARTBEAT, change.at, NO_COUNT, t, now,
                                      key=SILENCE)]
        if change.kind == "online":
            return self._watch.end(NO_COUNT, t, now, ended_at=change.at, key=SILENCE)
        return []

    def _start(self, change: SensorChange, t: float, now: datetime) -> AlertMessage:
        found = self._gather(self.sensor.link.pre_s)
        self._linked = [_linked_entry(item, with_picture=index > 0) for index, item in enumerate(found)]
        subject = replace(self.trigger, details=self._details("trigger", change.value, self._linked))
        self._post_due = t + self.sensor.link.post_s if self.sensor.link.post_s > 0 else None
        first = found[0].snapshot if found else None
        return self._watch.start(subject, HEARTBEAT, change.at, NO_COUNT, t, now, lambda: first, key=TRIGGER)

    def _end(self, t: float, now: datetime, ended_at: datetime) -> list[AlertMessage]:
        """End the trigger alert; its end message lists the linked cameras without their pictures."""
        event = self._watch.event(TRIGGER)
        if event is None:
            return []
        self._post_due = None
        light = [{key: value for key, value in entry.items() if key != "snapshot"} for entry in self._linked]
        event.subject = replace(event.subject, details={**(event.subject.details or {}), "linked": light})
        return self._watch.end(NO_COUNT, t, now, ended_at=ended_at, key=TRIGGER)

    def _follow_up(self, t: float, now: datetime) -> list[AlertMessage]:
        """The post_s evidence update, and the still-going heartbeat of open alerts."""
        messages = []
        event = self._watch.event(TRIGGER)
        if event is not None and self._post_due is not None and t >= self._post_due:
            self._post_due = None
            after = [_linked_entry(item, with_picture=True) for item in self._gather()]
            details = {**(self.trigger.details or {}), "value": (event.subject.details or {}).get("value"),
                       "evidence": "post", "linked": after}
            event.subject = replace(event.subject, details=details)
            messages += self._watch.update(NO_COUNT, t, now, key=TRIGGER)
        for key in (TRIGGER, SILENCE):
            messages += self._watch.update_if_due(NO_COUNT, t, now, key=key)
        return messages

    # ----------------------------------------------------------------- evidence and details

    def _gather(self, before_s: float = 0.0) -> list[LinkedEvidence]:
        """Linked evidence in link order; a failing callback costs the pictures, never the alert."""
        cameras = list(self.sensor.link.cameras)
        if not cameras:
            return []
        try:
            found = {item.camera_id: item for item in self.live.linked_evidence(cameras, before_s)}
        except Exception:
            log.exception("sensor %s: linked-camera evidence failed; alerting without pictures", self.sensor.label)
            found = {}
        return [found.get(camera_id, LinkedEvidence(camera_id)) for camera_id in cameras]

    def _details(self, kind: str, value: Any = None, linked: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        details: dict[str, Any] = {"kind": kind, "sensor_id": self.sensor.id, "sensor_name": self.sensor.label,
                                   "sensor_type": self.sensor.type, "topic": _topic(self.sensor), "value": value}
        if kind == "trigger":
            details["linked"] = linked or []
            if self.sensor.link.preset is not None:
                details["preset"] = self.sensor.link.preset
        return details

    def _offline_subject(self, change: SensorChange) -> AlertSubject:
        details = {**(self.silence.details or {}), "last_seen": iso(change.at)}
        return replace(self.silence, details=details)


def _linked_entry(item: LinkedEvidence, with_picture: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "camera_id": item.camera_id, "count": item.count,
        "snapshot_taken_at": iso(item.snapshot.taken_at) if item.snapshot else None,
    }
    if with_picture and item.snapshot is not None:
        entry["snapshot"] = item.snapshot.to_payload()
    return entry


def _source(sensor: Sensor, gateway: GatewaySection, linked: list[Camera]) -> AlertSource:
    """The sensor's own place; the first linked camera names the video (and fills the gaps)."""
    camera = linked[0] if linked else None
    own = sensor.location
    place = own if (own.address or own.lat is not None) or camera is None else camera.location
    return AlertSource(
        gateway_id=gateway.id, camera_id=camera.id if camera else None,
        camera_name=(camera.name or camera.id) if camera else "",
        grid_id=sensor.grid_id or (camera.grid_id if camera else ""),
        address=place.address, lat=place.lat, lon=place.lon,
    )


def _rule(sensor: Sensor) -> dict[str, Any]:
    return {
        "type": "sensor", "sensor_type": sensor.type, "format": sensor.format,
        "min_active_s": sensor.min_active_s, "cooldown_s": sensor.cooldown_s,
        "schedule": list(sensor.schedule), "link": sensor.link.model_dump(),
    }


def _topic(sensor: Sensor) -> str:
    """Where the sensor's state comes from: its MQTT topic, or `onvif:<camera>/<event>[/<input>]`."""
    if sensor.onvif is None:
        return sensor.topic or ""
    alarm = sensor.onvif
    return f"onvif:{alarm.camera}/{alarm.event}" + (f"/{alarm.input}" if alarm.input else "")
