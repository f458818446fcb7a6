"""`patrol_fault` alerts: a PTZ patrol, or one of its stops, that cannot be reached for
`patrol_fault_after_s` is reported once.

Pure logic, like `gateway.camera.offline`: the caller hands over the patrol's `PatrolStatus` once a
second or so; the watch says when the fault becomes an alert (start: 巡逻中断) and when it is over
(end: the camera reached the failing stop again). Retried failures shorter than the threshold (a
camera rebooting, a moment of network loss) never reach the duty officer; the driver's log has
them. While the camera is reported offline its `camera_offline` alert already says why nothing
moves: the fault waits until the camera is back and still cannot move (one cause, one case).
The alert is logged here, where it is raised, with how long the patrol had failed by then.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from gateway.config.models import Camera, GatewaySection
from gateway.events import AlertMessage, AlertSource, AlertSubject
from gateway.events.watch import ConditionWatch
from gateway.status import PatrolStatus

log = logging.getLogger("gateway.camera")

PATROL_FAULT_SEVERITY = 2


class PatrolFaultWatch:
    def __init__(self, camera: Camera, gateway: GatewaySection):
        self.camera = camera
        self._watch = ConditionWatch(AlertSource.for_camera(gateway.id, camera), self._subject(None))

    @property
    def open(self) -> bool:
        return self._watch.active

    def observe(self, status: PatrolStatus, camera_offline: bool, t: float,
                now: datetime) -> list[AlertMessage]:
        """A fault starts only while the camera is online; an open fault ends when the patrol moves."""
        holds = status.fault and (self.open or not camera_offline)
        since = now - timedelta(seconds=status.failing_for_s or 0.0)
        messages = self._watch.observe(holds, t, now, changed_at=None if self.open else since,
                                       subject=self._subject(status))
        for message in messages:
            self._log(message.payload.get("state"), status)
        return messages

    def close(self, t: float, now: datetime) -> list[AlertMessage]:
        """End an open fault (the camera is being stopped)."""
        return self._watch.close(t, now)

    def _target(self, status: PatrolStatus) -> tuple[int, str]:
        """The stop the patrol cannot reach, and its configured preset."""
        stop = status.stop if status.failing_stop is None else status.failing_stop
        stops = self.camera.patrol or []
        return stop, str(stops[stop].preset) if 0 <= stop < len(stops) else status.preset

    def _log(self, state: object, status: PatrolStatus) -> None:
        stop, preset = self._target(status)
        if state == "start":
            log.error("camera %s: PTZ patrol cannot reach patrol[%d] (preset %s) for %.0f s "
                      "(patrol_fault_after_s %g): %s; raising a patrol_fault alert (巡逻中断), ended when "
                      "the camera gets there", self.camera.id, stop, preset, status.failing_for_s or 0.0,
                      self.camera.patrol_fault_after_s, status.last_error or "no reason given")
        elif state == "end":
            log.info("camera %s: PTZ patrol reaches its stops again; patrol_fault alert ended", self.camera.id)

    def _subject(self, status: PatrolStatus | None) -> AlertSubject:
        """The stop it cannot reach is `target_preset`, not `preset`: alerts carry `details.preset`
        only for a view the camera is confirmed to show."""
        details = None
        if status is not None:
            stop, preset = self._target(status)
            details = {"patrol_stop": stop, "target_preset": preset, "state": status.state,
                       "error": status.last_error}
        return AlertSubject(
            type="patrol_fault", severity=PATROL_FAULT_SEVERITY, place=self.camera.name or self.camera.id,
            rule={"type": "patrol_fault", "patrol_fault_after_s": self.camera.patrol_fault_after_s},
            details=details,
        )
