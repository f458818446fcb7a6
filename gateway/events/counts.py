"""Live counts: how many people each camera and each of its zones counts now, and from what.

Until now counts only left the gateway inside alerts. An occupancy display, a dashboard at the
centre or a building system wants the count itself, all the time, the way Frigate publishes its
per-zone counts. Two ways out share these plain records:

- the web API: `GET /api/cameras` (and `/api/cameras/{id}`) carry `counts`;
- MQTT: the retained `{prefix}/{gateway id}/cameras/{camera id}/counts`, payload `counts_payload`
  (schema `gw.counts/1`, gateway/events/counts.schema.json), published when a count or its
  source changes, at most every `mqtt.counts_every_s` per camera (`CountsThrottle`), and
  again after every reconnect.

The counts are those of the camera's last analysed frame, the same the rules judged: the steady
count of the counting model where it counts (`source: model`), else the people the detector
tracks (`source: detector`). `stale` turns true when the camera is offline or its last analysed
frame is older than `STALE_S` (a retained count must never look current when it is not).
Pure: the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SCHEMA_ID = "gw.counts/1"
STALE_S = 30.0


@dataclass(frozen=True)
class ZoneCount:
    id: str
    name: str
    count: int
    source: str
    """detector | model"""


@dataclass(frozen=True)
class CameraCounts:
    """A camera's counts from its last analysed frame.

    count/source: the whole picture; detected: people the detector sees; estimated: the counting
    model's own estimate of that frame (None without a model, or while it learns its scene);
    mode: counting.mode in force (detector | model | auto); at: when the frame was analysed;
    stale: offline, or no frame analysed for STALE_S.
    """

    count: int
    source: str
    detected: int
    estimated: float | None
    mode: str
    at: datetime
    zones: list[ZoneCount] = field(default_factory=list)
    stale: bool = False


def counts_payload(gateway_id: str, camera_id: str, counts: CameraCounts) -> dict[str, Any]:
    """The retained MQTT message (gw.counts/1)."""
    return {
        "schema": SCHEMA_ID,
        "gateway_id": gateway_id,
        "camera_id": camera_id,
        "at": counts.at.isoformat(timespec="milliseconds"),
        "count": counts.count,
        "source": counts.source,
        "detected": counts.detected,
        "estimated": counts.estimated,
        "mode": counts.mode,
        "stale": counts.stale,
        "zones": {zone.id: {"name": zone.name, "count": zone.count, "source": zone.source} for zone in counts.zones},
    }


def _what_changed(payload: dict[str, Any]) -> tuple:
    """What a reader of the counts cares about (not `at`, not the raw estimate)."""
    zones = tuple(sorted((zone_id, zone["count"], zone["source"]) for zone_id, zone in payload["zones"].items()))
    return payload["count"], payload["source"], payload["mode"], payload["stale"], zones


class CountsThrottle:
    """Per camera: publish when the counts changed, at most every `min_interval_s` seconds.

    A change held back by the interval is published on the first offer after it (the caller
    offers the current counts about once a second).
    """

    def __init__(self, min_interval_s: float):
        self.min_interval_s = min_interval_s
        self._sent: dict[str, tuple[tuple, float]] = {}

    def due(self, camera_id: str, payload: dict[str, Any], now: float) -> bool:
        """True when `payload` should be published now (it is then taken as sent)."""
        key = _what_changed(payload)
        sent = self._sent.get(camera_id)
        if sent is not None and (sent[0] == key or now - sent[1] < self.min_interval_s):
            return False
        self._sent[camera_id] = (key, now)
        return True
