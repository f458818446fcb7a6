"""`camera_offline` alerts: a camera that sends no frames for `offline_after_s` is reported once.

Pure logic: the caller says, once a second or so, how long the camera has been silent; the
watch says when the outage becomes an alert (start, dated when the silence began) and when it is
over (end, dated when frames came back). Short drops that the reader bridges by reconnecting
never reach the duty officer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.config.models import Camera, GatewaySection
from gateway.events import AlertMessage, AlertSource, AlertSubject
from gateway.events.watch import ConditionWatch

OFFLINE_SEVERITY = 3


class OfflineWatch:
    def __init__(self, camera: Camera, gateway: GatewaySection):
        self.offline_after_s = camera.offline_after_s
        subject = AlertSubject(
            type="camera_offline", severity=OFFLINE_SEVERITY, place=camera.name or camera.id,
            rule={"type": "camera_offline", "offline_after_s": camera.offline_after_s},
        )
        self._watch = ConditionWatch(AlertSource.for_camera(gateway.id, camera), subject)

    @property
    def offline(self) -> bool:
        return self._watch.active

    def observe(self, silent_for_s: float, t: float, now: datetime) -> list[AlertMessage]:
        """`silent_for_s`: seconds since the last frame (or since the reader started)."""
        silence_began = now - timedelta(seconds=silent_for_s)
        return self._watch.observe(silent_for_s >= self.offline_after_s, t, now, changed_at=silence_began)

    def close(self, t: float, now: datetime) -> list[AlertMessage]:
        """End an open outage (the camera is being stopped or removed)."""
        return self._watch.close(t, now)
