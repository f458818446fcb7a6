"""How the gateway's alert types become GB/T 28181 alarm codes. Pure.

A GB/T 28181 alarm (MANSCDP `Notify`, `CmdType` `Alarm`) carries an `AlarmMethod` (where the
alarm comes from: 2 device, 5 video, 6 device fault, ...) and, inside `<Info>`, an `AlarmType`
whose meaning depends on the method. Platforms file and filter alarms by these codes; the
open platform wvp-GB28181-pro, for instance, reads `Info/AlarmType` and shows the standard's
names for it. The standard's video-alarm types (method 5, GB/T 28181-2016 A.2.6) are:
1 manual, 2 moving target, 3 left object, 4 removed object, 5 tripwire, 6 intrusion,
7 wrong direction, 8 loitering, 9 flow statistics (流量统计), 10 density (密度检测),
11 video anomaly (视频异常), 12 fast movement. Device alarms (method 2): 1 video loss,
2 anti-tamper (the housing opened), 3 disk full, 4/5 temperature; without AlarmType, the
default alarm of an alarm device (e.g. an alarm input).

The standard has no code for crowds, gatherings or surges, so the choice follows what the
duty officer should understand from the code alone (the Chinese title, in AlarmDescription,
says exactly which rule fired):

- crowd -> 5/10 density: too many people in a zone *is* a density alarm.
- gathering -> 5/10 density: a cluster of people staying together is local density; loitering
  (8) is one person staying, flow statistics (9) is people passing.
- growth -> 5/9 flow statistics: the count rising fast says people are arriving over time,
  i.e. flow, before it is (yet) crowded.
- loitering -> 5/8 loitering; intrusion -> 5/6 intrusion: the same notions.
- camera_tamper -> 5/11 video anomaly: ONVIF tamper means the picture is covered, blurred or
  moved; device alarm 2/2 "anti-tamper" means the housing was opened.
- camera_offline -> 2/1 video loss: the video is gone, a device alarm, not an analysis result.
- sensor -> 2 without AlarmType: an IoT sensor or a camera's alarm input is an alarm input
  device, whose alarm is the standard's default device alarm.
- Every other type (patrol_fault: a PTZ head that cannot move) falls back to that default
  device alarm: the standard has no closer code, and a new alert type reaches the platform
  without anyone having to touch this table.

`AlarmPriority` runs the other way from the gateway's severity: GB/T 28181 level 1 (一级警情)
is the most serious, the gateway's severity 4 is. So priority = 5 - severity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from gateway.outputs.gb28181.manscdp import Alarm

VIDEO_ALARM = 5
DEVICE_ALARM = 2


@dataclass(frozen=True)
class AlarmCode:
    method: int
    type: int | None
    """None: the method's default alarm (no <Info><AlarmType>)."""


ALARM_CODES: dict[str, AlarmCode] = {
    "crowd": AlarmCode(VIDEO_ALARM, 10),
    "gathering": AlarmCode(VIDEO_ALARM, 10),
    "growth": AlarmCode(VIDEO_ALARM, 9),
    "loitering": AlarmCode(VIDEO_ALARM, 8),
    "intrusion": AlarmCode(VIDEO_ALARM, 6),
    "camera_tamper": AlarmCode(VIDEO_ALARM, 11),
    "camera_offline": AlarmCode(DEVICE_ALARM, 1),
    "sensor": AlarmCode(DEVICE_ALARM, None),
    "disk_full": AlarmCode(DEVICE_ALARM, 3),
}
"""Alert types with a specific code (keys are names from gateway.events.types; a test checks)."""

FALLBACK = AlarmCode(DEVICE_ALARM, None)
"""An alert type added without a mapping still reaches the platform, as the default device
alarm: a video alarm (5) without <Info><AlarmType> trips up platforms that expect one."""


def alarm_code(alert_type: str) -> AlarmCode:
    return ALARM_CODES.get(alert_type, FALLBACK)


def alarm_priority(severity: int) -> int:
    """Gateway severity 1 (low) .. 4 (life safety) -> GB/T 28181 AlarmPriority 4 .. 1."""
    return 5 - min(4, max(1, int(severity)))


def local_alarm_time(started_at: object, timezone: tzinfo, fallback: datetime) -> str:
    """The alert's start as the platform wants it: local wall time of the gateway's time zone,
    'YYYY-MM-DDTHH:MM:SS', no offset, no fraction (what GB/T 28181 writes and platforms parse)."""
    moment = fallback
    if isinstance(started_at, str):
        try:
            parsed = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
            moment = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone)
        except ValueError:
            pass
    return moment.astimezone(timezone).strftime("%Y-%m-%dT%H:%M:%S")


def alarm_notice(payload: Mapping[str, Any], *, channel_id: str, timezone: tzinfo, now: datetime) -> Alarm:
    """The GB/T 28181 alarm for an alert `start` payload (gw.alert/1), raised on `channel_id`."""
    code = alarm_code(str(payload.get("type")))
    location = payload.get("location")
    if not isinstance(location, Mapping):
        location = {}
    severity = payload.get("severity")
    return Alarm(
        device_id=channel_id,
        priority=alarm_priority(severity if isinstance(severity, int) else 2),
        method=code.method,
        alarm_type=code.type,
        time=local_alarm_time(payload.get("started_at"), timezone, now),
        description=str(payload.get("title_zh") or payload.get("type") or "告警"),
        longitude=_number(location.get("lon")),
        latitude=_number(location.get("lat")),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
