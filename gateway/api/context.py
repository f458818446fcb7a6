"""What every route of the API works with: the gateway's live view, the event history, the case
ledger (acknowledgements and case steps), metrics and the clock's time zone, gathered once by
`create_app`.

Routes get it through the `context` dependency instead of closures, so each resource's router
lives in its own module (gateway/api/routes/) and reads like any FastAPI router.
"""

from __future__ import annotations

import time
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Annotated, Any, TypedDict

from fastapi import Depends, HTTPException, Request

from gateway.api.auth import Auth
from gateway.api.metrics import GatewayMetrics
from gateway.api.schemas import AckOut, CameraOut, CaseOut, ClipOut, EventDetail, EventOut, camera_out, redact_tree
from gateway.api.stream import StreamHub
from gateway.api.thumbnails import ThumbnailCache
from gateway.api.web import WebFiles
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import CaseLedger, CaseUpdate
from gateway.events.record import EventRecord
from gateway.evidence.store import ClipStore
from gateway.status import GatewayView

SNAPSHOT_CACHE_S = 0.5


class SnapshotCache:
    """Reuse a live JPEG for a moment: several pages refreshing the same camera cost one encode."""

    def __init__(self, view: GatewayView, ttl_s: float = SNAPSHOT_CACHE_S) -> None:
        self.view = view
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, bytes]] = {}

    def get(self, camera_id: str) -> bytes | None:
        now = time.monotonic()
        hit = self._cache.get(camera_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        jpeg = self.view.camera_snapshot(camera_id)
        if jpeg:
            self._cache[camera_id] = (now, jpeg)
        else:
            self._cache.pop(camera_id, None)
        return jpeg


@dataclass
class ApiContext:
    view: GatewayView
    history: EventHistory
    ledger: CaseLedger
    metrics: GatewayMetrics
    auth: Auth
    hub: StreamHub
    web: WebFiles
    snapshots: SnapshotCache
    timezone: tzinfo | None
    sse_heartbeat_s: float
    clips: ClipStore | None = None
    """The evidence clips (None: the gateway records none)."""
    thumbnails: ThumbnailCache = field(default_factory=ThumbnailCache)

    def fmt_time(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self.timezone).astimezone(self.timezone).isoformat(timespec="seconds")

    def ack_of(self, record: EventRecord) -> AckOut | None:
        """The latest acknowledgement as the ledger keeps it (else the history's copy of it)."""
        ack = self.ledger.ack_for(record.event_id)
        if ack is not None:
            return AckOut(by=ack.by, case_id=ack.case_id, at=self.fmt_time(ack.received_at), note=ack.note)
        mirror = record.ack
        if mirror is not None:
            return AckOut(by=mirror.by, case_id=mirror.case_id, at=self.fmt_time(mirror.at), note=mirror.note)
        return None

    def clip_of(self, event_id: str) -> ClipOut | None:
        """The event's clip as the clip store knows it now (None: the camera records none)."""
        info = self.clips.get(event_id) if self.clips is not None else None
        if info is None:
            return None
        return ClipOut.model_validate({
            "status": info.status, "url": None if info.status == "failed" else f"/api/events/{event_id}/clip",
            "from": None if info.from_ts is None else self.fmt_time(info.from_ts),
            "to": None if info.to_ts is None else self.fmt_time(info.to_ts), "reason": info.reason,
        })

    def events_out(self, records: list[EventRecord]) -> list[EventOut]:
        """Several events as the page lists them (their latest case steps read at once)."""
        cases = self.ledger.latest_cases(record.event_id for record in records)
        return [self.event_out(record, case=cases.get(record.event_id)) for record in records]

    def event_out(self, record: EventRecord, detail: bool = False, case: CaseUpdate | None = None) -> EventOut:
        """One event; `case`: its latest case step when the caller read it already."""
        if case is None:
            case = self.ledger.latest_cases([record.event_id]).get(record.event_id)
        base = f"/api/events/{record.event_id}"
        links: _Links = {
            "snapshot_url": f"{base}/snapshot.jpg" if record.has_snapshot else None,
            "peak_snapshot_url": f"{base}/snapshot.jpg?which=peak" if record.has_peak_snapshot else None,
            "ack": self.ack_of(record),
            "case": CaseOut.of(case) if case is not None else None,
            "clip": self.clip_of(record.event_id),
        }
        if detail:
            cases = [CaseOut.of(step) for step in self.ledger.cases(record.event_id)]
            return EventDetail(**_record_fields(EventDetail, record, {*links, "cases"}), **links,
                               payload=redact_tree(record.payload), cases=cases)
        return EventOut(**_record_fields(EventOut, record, links), **links)

    def find_event(self, event_id: str) -> EventRecord:
        record = self.history.get(event_id)
        if record is None:
            raise HTTPException(404, f"no event {event_id}")
        return record

    def cameras(self) -> list[CameraOut]:
        return [camera_out(camera) for camera in self.view.cameras()]

    def find_camera(self, camera_id: str) -> CameraOut:
        for camera in self.cameras():
            if camera.id == camera_id:
                return camera
        raise HTTPException(404, f"no camera {camera_id!r}")


class _Links(TypedDict):
    """The `EventOut` fields the API works out rather than copies from the record."""

    snapshot_url: str | None
    peak_snapshot_url: str | None
    ack: AckOut | None
    case: CaseOut | None
    clip: ClipOut | None


def _record_fields(model: type[EventOut], record: EventRecord, computed: Container[str]) -> dict[str, Any]:
    """The model's fields that the record carries as they are (everything but `computed`)."""
    return {name: getattr(record, name) for name in model.model_fields
            if name not in computed and name != "payload"}


def context(request: Request) -> ApiContext:
    return request.app.state.context


Context = Annotated[ApiContext, Depends(context)]
