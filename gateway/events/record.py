"""An event as lists show it: the facts of its latest message, declared once.

The payload (payload.py, `gw.alert/1`) is what goes to the centre; `EventSummary` is the part of
it that the gateway keeps and shows per event: the history stores one row of these fields per
event (gateway.delivery.history, which adds its own bookkeeping), and the API serves them as they
are (gateway.api.schemas.EventOut adds links and the acknowledgement). A field added here is in
the history's table and in the API's answers, with one description.

`EventRecord` is the summary as the history keeps it (with its bookkeeping), `EventPage` a page
of the history's list.

`from_payload` is lenient on purpose: the history must keep whatever a (future or buggy) producer
sent, so missing or mistyped fields become empty values instead of errors; the schema check of
what goes out is payload.py's and schema.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STATES = ("start", "update", "end")


class EventSummary(BaseModel):
    """One event, as of its latest message."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    seq: int
    state: Literal["start", "update", "end"]
    type: str
    severity: int
    title_zh: str
    camera_id: str
    camera_name: str
    grid_id: str
    address: str
    lat: float | None
    lon: float | None
    zone_id: str | None
    zone_name: str | None
    rule_id: str | None
    count: int | None
    peak_count: int | None
    density_per_m2: float | None
    started_at: str = Field(description="ISO-8601 with the gateway's offset.")
    updated_at: str = Field(description="ISO-8601 with the gateway's offset: the latest message.")
    ended_at: str | None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> EventSummary:
        """The summary of one alert payload (its event_id and seq must already be checked)."""
        location = payload.get("location")
        if not isinstance(location, dict):
            location = {}
        state = payload.get("state")
        return cls(
            event_id=str(payload["event_id"]), seq=int(payload["seq"]),
            state=state if state in STATES else "update",
            type=str(payload.get("type") or "unknown"),
            severity=_integer(payload.get("severity")) or 2,
            title_zh=str(payload.get("title_zh") or ""),
            camera_id=str(payload.get("camera_id") or ""),
            camera_name=str(payload.get("camera_name") or ""),
            grid_id=str(payload.get("grid_id") or ""),
            address=str(location.get("address") or ""),
            lat=_number(location.get("lat")), lon=_number(location.get("lon")),
            zone_id=_text(payload.get("zone_id")), zone_name=_text(payload.get("zone_name")),
            rule_id=_text(payload.get("rule_id")),
            count=_integer(payload.get("count")), peak_count=_integer(payload.get("peak_count")),
            density_per_m2=_number(payload.get("density_per_m2")),
            started_at=str(payload.get("started_at") or payload.get("updated_at") or ""),
            updated_at=str(payload.get("updated_at") or ""),
            ended_at=_text(payload.get("ended_at")),
        )

    def started_epoch(self, default: float) -> float:
        """The start as epoch seconds (`default` when the payload's time is unreadable)."""
        return parse_time(self.started_at) or default

    def updated_epoch(self, default: float) -> float:
        return parse_time(self.updated_at) or default


@dataclass(frozen=True)
class HistoryAck:
    """The latest acknowledgement of an event, as the case ledger mirrors it onto the history."""

    by: str
    case_id: str
    at: float
    note: str | None = None


class EventRecord(EventSummary):
    """One event as the history keeps it: the summary, plus the history's bookkeeping (revision,
    times as epoch seconds), whether pictures are kept, and the latest acknowledgement."""

    rev: int
    started_ts: float
    updated_ts: float
    first_seen: float
    last_seen: float
    has_snapshot: bool
    has_peak_snapshot: bool
    snapshot_evicted: bool
    ack: HistoryAck | None
    payload: dict[str, Any] | None = None
    """The latest payload without the inline picture; only filled by `get`."""

    @property
    def active(self) -> bool:
        return self.state != "end"


@dataclass(frozen=True)
class EventPage:
    """One page of the history's list, newest first."""

    items: list[EventRecord]
    total: int
    limit: int
    offset: int
    rev: int
    """The newest revision when the page was read: stream changes after it to stay current."""



def parse_time(value: Any) -> float | None:
    """Epoch seconds of an ISO-8601 time (UTC when it carries no offset); None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
