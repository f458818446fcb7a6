"""The `disk_full` alert: the data disk cannot take alerts. Pure logic, like `gateway.camera.offline`.

The caller says, once a second or so, whether the disk is full (some outbox holds alerts in memory
because of it, or the history cannot write); this class says when that becomes an alert (at
once: a full disk is never a blip worth ignoring) and when it is over (after the disk has taken
writes for `clear_s`, so a disk that frees a few kB and fills again does not flap). While it
lasts, the alert repeats itself every `HEARTBEAT_S` so the centre sees it is still going.

The alert is about the gateway itself: no camera (topic `events/gateway`), the gateway's name
as the place (`存储空间已满：东门网关`), `details.data_dir` naming the folder to clean up.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.config.models import GatewaySection
from gateway.events import AlertMessage, AlertSource, AlertSubject, OpenEvent, Reading, UpdatePolicy

DISK_FULL_SEVERITY = 3
HEARTBEAT_S = 600.0
CLEAR_S = 10.0


class DiskFullWatch:
    def __init__(self, gateway: GatewaySection, clear_s: float = CLEAR_S) -> None:
        self.clear_s = clear_s
        self.source = AlertSource(gateway_id=gateway.id, camera_id=None, camera_name="", grid_id="")
        self.subject = AlertSubject(
            type="disk_full", severity=DISK_FULL_SEVERITY, place=gateway.name or gateway.id,
            rule={"type": "disk_full"}, details={"data_dir": str(gateway.data_dir)},
        )
        self._event: OpenEvent | None = None
        self._clear_since: float | None = None

    @property
    def active(self) -> bool:
        return self._event is not None

    def observe(self, full: bool, t: float, now: datetime) -> list[AlertMessage]:
        """`t`: monotonic seconds; `now`: the wall clock (timezone-aware)."""
        reading = Reading(count=None)
        if self._event is None:
            if not full:
                return []
            self._event = OpenEvent(self.source, self.subject, UpdatePolicy(min_change=1, every_s=HEARTBEAT_S),
                                    started_at=now)
            self._clear_since = None
            return [self._event.start(reading, t, now, lambda: None)]
        if full:
            self._clear_since = None
        elif self._clear_since is None:
            self._clear_since = t
        elif t - self._clear_since >= self.clear_s:
            event, self._event = self._event, None
            return [event.end(reading, t, now, ended_at=now - timedelta(seconds=t - self._clear_since))]
        if self._event.observe(0, t):
            return [self._event.update(reading, t, now, lambda: None)]
        return []

    def close(self, t: float, now: datetime) -> list[AlertMessage]:
        """End an open alert (the gateway is stopping)."""
        if self._event is None:
            return []
        event, self._event = self._event, None
        return [event.end(Reading(count=None), t, now, ended_at=now)]
