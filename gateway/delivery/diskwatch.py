"""The `disk_full` alert: the data disk cannot take alerts. Pure logic, like `gateway.camera.offline`.

The caller says, once a second or so, whether the disk is full (some outbox holds alerts in memory
because of it, or the history cannot write); the watch says when that becomes an alert (at once:
a full disk is never a blip worth ignoring) and when it is over (after the disk has taken writes
for `clear_s`, so a disk that frees a few kB and fills again does not flap). While it lasts, the
alert repeats itself every heartbeat so the centre sees it is still going.

The alert is about the gateway itself: no camera (topic `events/gateway`), the gateway's name as
the place (`存储空间已满：东门网关`), `details.data_dir` naming the folder to clean up.
"""

from __future__ import annotations

from datetime import datetime

from gateway.config.models import GatewaySection
from gateway.events import AlertMessage, AlertSource, AlertSubject
from gateway.events.watch import ConditionWatch

DISK_FULL_SEVERITY = 3
CLEAR_S = 10.0


class DiskFullWatch:
    def __init__(self, gateway: GatewaySection, clear_s: float = CLEAR_S) -> None:
        source = AlertSource(gateway_id=gateway.id, camera_id=None, camera_name="", grid_id="")
        subject = AlertSubject(
            type="disk_full", severity=DISK_FULL_SEVERITY, place=gateway.name or gateway.id,
            rule={"type": "disk_full"}, details={"data_dir": str(gateway.data_dir)},
        )
        self._watch = ConditionWatch(source, subject, clear_s=clear_s)

    @property
    def active(self) -> bool:
        return self._watch.active

    def observe(self, full: bool, t: float, now: datetime) -> list[AlertMessage]:
        """`t`: monotonic seconds; `now`: the wall clock (timezone-aware)."""
        return self._watch.observe(full, t, now)

    def close(self, t: float, now: datetime) -> list[AlertMessage]:
        """End an open alert (the gateway is stopping)."""
        return self._watch.close(t, now)
