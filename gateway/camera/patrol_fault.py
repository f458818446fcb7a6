"""`patrol_fault` alerts: a PTZ patrol that cannot move for `patrol_fault_after_s` is reported once.

Pure logic, like `gateway.camera.offline`: the caller hands over the patrol's `PatrolStatus` once a
second or so; this class says when the fault becomes an alert (start: 巡逻中断) and when it is
over (end: the camera moved to a stop again). Retried failures shorter than the threshold (a
camera rebooting, a moment of network loss) never reach the duty officer; the log has them.
While the camera is reported offline its `camera_offline` alert already says why nothing
moves: the fault waits until the camera is back and still cannot move (one cause, one case).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.config.models import Camera, GatewaySection
from gateway.events import AlertMessage, AlertSource, AlertSubject, OpenEvent, Reading, UpdatePolicy
from gateway.onvif.patrol import PatrolStatus

PATROL_FAULT_SEVERITY = 2
PATROL_FAULT_HEARTBEAT_S = 600.0
"""An open fault repeats itself every 10 minutes so the centre sees it is still going."""


class PatrolFaultWatch:
    def __init__(self, camera: Camera, gateway: GatewaySection):
        self.camera = camera
        self.source = AlertSource.for_camera(gateway.id, camera)
        self._event: OpenEvent | None = None

    @property
    def open(self) -> bool:
        return self._event is not None

    def observe(self, status: PatrolStatus, camera_offline: bool, t: float,
                now: datetime) -> list[AlertMessage]:
        reading = Reading(count=None)
        if self._event is None:
            if not status.fault or camera_offline:
                return []
            since = now - timedelta(seconds=status.failing_for_s or 0.0)
            policy = UpdatePolicy(min_change=1, every_s=PATROL_FAULT_HEARTBEAT_S)
            self._event = OpenEvent(self.source, self._subject(status), policy, started_at=since)
            return [self._event.start(reading, t, now, lambda: None)]
        if not status.fault:
            return self.close(t, now)
        if self._event.observe(0, t):
            return [self._event.update(reading, t, now, lambda: None)]
        return []

    def close(self, t: float, now: datetime) -> list[AlertMessage]:
        """End an open fault (the patrol moves again, or the camera is being stopped)."""
        if self._event is None:
            return []
        event, self._event = self._event, None
        return [event.end(Reading(count=None), t, now, ended_at=now)]

    def _subject(self, status: PatrolStatus) -> AlertSubject:
        """The stop it cannot reach is `target_preset`, not `preset`: alerts carry `details.preset`
        only for a view the camera is confirmed to show."""
        return AlertSubject(
            type="patrol_fault", severity=PATROL_FAULT_SEVERITY, place=self.camera.name or self.camera.id,
            rule={"type": "patrol_fault", "patrol_fault_after_s": self.camera.patrol_fault_after_s},
            details={"patrol_stop": status.stop, "target_preset": status.preset,
                     "state": status.state, "error": status.last_error},
        )
