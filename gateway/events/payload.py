"""Alert payloads (DESIGN §3.3): the JSON a township centre turns into a case.

Building a payload is pure: static facts about the source (gateway, camera, place) and the
subject (rule type, zone) plus one message's reading go in, a JSON-ready dict comes out. The
shape is pinned by alert.schema.json.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gateway.events.snapshot import Snapshot
from gateway.events.timestamps import iso
from gateway.events.types import ALERT_TYPES

SCHEMA = "gw.alert/1"

TITLES_ZH = {name: alert_type.title_zh for name, alert_type in ALERT_TYPES.items()}


def title_zh(event_type: str, place: str, count: int | None, state: str) -> str:
    """'人员聚集：东门广场 12人'; the end message adds '（已结束）'. Only alerts about people carry
    a number: a camera that went offline has no count, not '0人'."""
    alert_type = ALERT_TYPES[event_type]
    title = f"{alert_type.title_zh}：{place}"
    if count is not None and alert_type.counts_people:
        title += f" {count}人"
    return title + ("（已结束）" if state == "end" else "")


class CameraPlace(Protocol):
    """What a camera's alerts say about where it is (a config `Camera` is one)."""

    id: str
    name: str
    grid_id: str
    location: Any  # .address, .lat, .lon


@dataclass(frozen=True)
class AlertSource:
    """Where alerts come from: the same for every event of one camera."""

    gateway_id: str
    camera_id: str | None
    camera_name: str
    grid_id: str
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    frame_size: tuple[int, int] | None = None

    @classmethod
    def for_camera(cls, gateway_id: str, camera: CameraPlace,
                   frame_size: tuple[int, int] | None = None) -> AlertSource:
        """The source of every alert a camera raises (video rules, outages, its own alarms)."""
        place = camera.location
        return cls(gateway_id=gateway_id, camera_id=camera.id, camera_name=camera.name, grid_id=camera.grid_id,
                   address=place.address, lat=place.lat, lon=place.lon, frame_size=frame_size)


@dataclass(frozen=True)
class AlertSubject:
    """What an event is about: the same for every message of one event."""

    type: str
    severity: int
    place: str
    """Human name of the place for title_zh: zone name, else camera name."""
    zone_id: str | None = None
    zone_name: str | None = None
    rule_id: str | None = None
    rule: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    """Type-specific facts (camera event topic, sensor input, PTZ preset); emitted as `details`."""


@dataclass(frozen=True)
class Reading:
    """One message's measurement. members: [{"track_id", "box", "score"}, ...].
    count_source: "detector" (tracked detections) or "model" (a counting model's estimate)."""

    count: int | None
    members: list[dict[str, Any]] = field(default_factory=list)
    density_per_m2: float | None = None
    count_source: str = "detector"


@dataclass(frozen=True)
class Stamp:
    """One message's place in its event's lifecycle."""

    event_id: str
    seq: int
    state: str
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    peak_count: int | None


def build_payload(
    source: AlertSource, subject: AlertSubject, stamp: Stamp, reading: Reading, snapshot: Snapshot | None
) -> dict[str, Any]:
    """The §3.3 payload. For the end message the title reports the peak, the count is 'now'."""
    title_count = stamp.peak_count if stamp.state == "end" else reading.count
    payload = {
        "schema": SCHEMA,
        "event_id": stamp.event_id,
        "seq": stamp.seq,
        "state": stamp.state,
        "type": subject.type,
        "severity": subject.severity,
        "gateway_id": source.gateway_id,
        "camera_id": source.camera_id,
        "camera_name": source.camera_name,
        "grid_id": source.grid_id,
        "location": {"address": source.address, "lat": source.lat, "lon": source.lon},
        "zone_id": subject.zone_id,
        "zone_name": subject.zone_name,
        "rule_id": subject.rule_id,
        "started_at": iso(stamp.started_at),
        "updated_at": iso(stamp.updated_at),
        "ended_at": iso(stamp.ended_at) if stamp.ended_at else None,
        "count": reading.count,
        "count_source": reading.count_source if ALERT_TYPES[subject.type].counts_people else None,
        "peak_count": stamp.peak_count,
        "density_per_m2": None if reading.density_per_m2 is None else round(reading.density_per_m2, 3),
        "members": reading.members,
        "frame_size": list(source.frame_size) if source.frame_size else None,
        "snapshot": snapshot.to_payload() if snapshot else None,
        "title_zh": title_zh(subject.type, subject.place, title_count, stamp.state),
        "rule": subject.rule,
    }
    if subject.details:
        payload["details"] = dict(subject.details)
    return payload


# --------------------------------------------------------------------------- the payload as stored and sent


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as every output sends it; NaN/Infinity are refused (they are not
    JSON and break consumers)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def has_inline_picture(payload: dict[str, Any]) -> bool:
    snapshot = payload.get("snapshot")
    return isinstance(snapshot, dict) and bool(snapshot.get("data"))


def inline_picture(payload: dict[str, Any]) -> bytes | None:
    """The evidence JPEG carried in the payload (base64), or None."""
    if not has_inline_picture(payload):
        return None
    try:
        return base64.b64decode(payload["snapshot"]["data"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None


def without_picture_data(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with the picture's metadata but not its base64 data (what the history keeps:
    the picture itself is a file of its own)."""
    snapshot = payload.get("snapshot")
    if not isinstance(snapshot, dict):
        return payload
    return {**payload, "snapshot": {key: value for key, value in snapshot.items() if key != "data"}}


def shed_picture(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without its inline picture: every other field kept, and a note that the
    picture was evicted (a full outbox or memory). The marker goes into `details` (the schema's
    open object for extras; gw.alert/1 allows no new top-level keys), so a shed message still
    validates."""
    slim = dict(payload)
    slim["snapshot"] = None
    details = slim.get("details")
    if details is None or isinstance(details, dict):
        slim["details"] = {**(details or {}), "snapshot_evicted": True}
    return slim
