"""`camera_offline` alerts: a camera that sends no frames for `offline_after_s` is reported once.

Pure logic: the caller says, once a second or so, whether frames are flowing; this class says
when the outage becomes an alert (start) and when it is over (end). Short drops that the reader
bridges by reconnecting never reach the duty officer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.config.models import Camera, GatewaySection
from gateway.events import AlertMessage, AlertSource, AlertSubject, OpenEvent, Reading, UpdatePolicy

OFFLINE_SEVERITY = 3
OFFLINE_HEARTBEAT_S = 600.0
"""An open outage repeats itself every 10 minutes so the centre sees it is still going."""


class OfflineWatch:
    def __init__(self, camera: Camera, gateway: GatewaySection):
        self.offline_after_s = camera.offline_after_s
        self.source = AlertSource.for_camera(gateway.id, camera)
        self.subject = AlertSubject(
            type="camera_offline", severity=OFFLINE_SEVERITY, place=camera.name or camera.id,
            rule={"type": "camera_offline", "offline_after_s": camera.offline_after_s},
        )
        self._event: OpenEvent | None = None

    @property
    def offline(self) -> bool:
        return self._event is not None

    def close(self, t: float, now: datetime) -> list[AlertMessage]:
        """End an open outage (the camera is being stopped or removed)."""
        if self._event is None:
            return []
        event, self._event = self._event, None
        return [event.end(Reading(count=None), t, now, ended_at=now)]

    def observe(self, silent_for_s: float, t: float, now: datetime) -> list[AlertMessage]:
        """`silent_for_s`: seconds since the last frame (or since the reader started)."""
        reading = Reading(count=None)
        if self._event is None:
            if silent_for_s < self.offline_after_s:
                return []
            since = now - timedelta(seconds=silent_for_s)
            policy = UpdatePolicy(min_change=1, every_s=OFFLINE_HEARTBEAT_S)
            self._event = OpenEvent(self.source, self.subject, policy, started_at=since)
            return [self._event.start(reading, t, now, lambda: None)]
        if silent_for_s < self.offline_after_s:
            event, self._event = self._event, None
            return [event.end(reading, t, now, ended_at=now - timedelta(seconds=silent_for_s))]
        if self._event.observe(0, t):
            return [self._event.update(reading, t, now, lambda: None)]
        return []
