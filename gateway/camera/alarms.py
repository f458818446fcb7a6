"""Camera-side alarms as alerts: ONVIF tamper becomes `camera_tamper`; motion and digital
inputs become `sensor` alerts, on the same lifecycle (start/end, stable id, seq) as video rules.

Pure logic: the ONVIF listener produces `CameraEvent` records (gateway.onvif.events); the
service feeds them here with its clock and queues the messages like any other alert.
A state the camera re-sends after a (re)subscription (`initial`) starts an alert only if it is
active, and never repeats one already open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.config.models import Camera, GatewaySection
from gateway.events import AlertMessage, AlertSource, AlertSubject
from gateway.events.lifecycle import SnapshotSource
from gateway.events.watch import HEARTBEAT, NO_COUNT, AlertWatch, no_picture

SEVERITY = {"tamper": 3, "digital_input": 2, "motion": 1}
ALERT_TYPE = {"tamper": "camera_tamper", "digital_input": "sensor", "motion": "sensor"}
PLACE_SUFFIX = {"tamper": "", "digital_input": " 报警输入", "motion": " 移动侦测"}


class CameraEventAlerts:
    """One open alert per (kind, input or video source) of the camera."""

    def __init__(self, camera: Camera, gateway: GatewaySection):
        self.camera = camera
        self._watch = AlertWatch(AlertSource.for_camera(gateway.id, camera))

    def handle(self, kind: str, active: bool, topic: str, data: dict[str, Any], t: float,
               now: datetime, snapshot: SnapshotSource = no_picture) -> list[AlertMessage]:
        """One camera event (from `CameraEvent`'s fields); returns the messages it causes.
        `snapshot` gives the camera's recent picture for the start message (None without one)."""
        if kind not in ALERT_TYPE:
            return []
        key = (kind, _source_key(data))
        if active and not self._watch.is_open(key):
            subject = self._subject(kind, topic, data)
            return [self._watch.start(subject, HEARTBEAT, now, NO_COUNT, t, now, snapshot, key=key)]
        if not active:
            return self._watch.end(NO_COUNT, t, now, key=key)
        return []

    def close_all(self, t: float, now: datetime) -> list[AlertMessage]:
        return self._watch.end_all(t, now)

    def _subject(self, kind: str, topic: str, data: dict[str, Any]) -> AlertSubject:
        details: dict[str, Any] = {"source": "onvif", "kind": kind, "topic": topic,
                   **{key: data[key] for key in ("reason", "input") if key in data}}
        return AlertSubject(
            type=ALERT_TYPE[kind], severity=SEVERITY[kind],
            place=(self.camera.name or self.camera.id) + PLACE_SUFFIX[kind],
            rule={"type": "onvif_event", "kind": kind}, details=details,
        )


def _source_key(data: dict[str, Any]) -> str:
    """Which input or video source the event is about (one alert per source)."""
    source = data.get("source") or {}
    return ",".join(f"{key}={value}" for key, value in sorted(source.items())) if isinstance(source, dict) \
        else str(source)
