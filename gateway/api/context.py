"""What every route of the API works with: the gateway's live view, the event history, the
outbox (acks), the delivery (outputs' health, the page's acks to the centre), metrics and the
clock's time zone, gathered once by `create_app`.

Routes get it through the `context` dependency instead of closures, so each resource's router
lives in its own module (gateway/api/routes/) and reads like any FastAPI router.
"""

from __future__ import annotations

import time
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Annotated, Any, Protocol, TypedDict

from fastapi import Depends, HTTPException, Request

from gateway.api.auth import Auth
from gateway.api.metrics import GatewayMetrics
from gateway.api.schemas import AckOut, CameraOut, CaseOut, EventDetail, EventOut, camera_out, redact_tree
from gateway.api.stream import StreamHub
from gateway.api.web import WebFiles
from gateway.delivery.history import EventHistory, EventRecord
from gateway.delivery.outbox import AckRecord, OutboxStats
from gateway.status import GatewayView

SNAPSHOT_CACHE_S = 0.5


class AckLedger(Protocol):
    """The acks the outbox records (the centre's and the page's): what the API reads and writes."""

    def ack_for(self, event_id: str) -> AckRecord | None: ...

    def is_known_event(self, event_id: str) -> bool: ...

    def record_ack(self, event_id: str, case_id: str, by: str) -> tuple[AckRecord, bool]: ...

    def stats(self) -> OutboxStats:
        """Depth, bytes and age of the outbox, for /metrics."""
        ...


class DeliveryView(Protocol):
    """The alert router as the API sees it (gateway.delivery.router.AlertRouter)."""

    def health(self) -> dict[str, Any]:
        """{"outputs": {name: {"alive", "connected", "queued", ...}}, "disk_full": bool, ...}"""
        ...

    def failures(self) -> list[str]:
        """Outputs whose delivery thread is dead."""
        ...

    def announce_page_ack(self, ack: AckRecord, note: str | None) -> None:
        """Tell the centre about an acknowledgement made on the page (MQTT `acks`)."""
        ...


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
    acks: AckLedger
    metrics: GatewayMetrics
    auth: Auth
    hub: StreamHub
    web: WebFiles
    snapshots: SnapshotCache
    timezone: tzinfo | None
    sse_heartbeat_s: float
    delivery: DeliveryView | None = None

    def fmt_time(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self.timezone).astimezone(self.timezone).isoformat(timespec="seconds")

    def ack_of(self, record: EventRecord) -> AckOut | None:
        """The ack as the outbox knows it (the truth), with the page's note when it is the same ack."""
        truth = self.acks.ack_for(record.event_id)
        mirror = record.ack
        if truth is not None:
            note = mirror.note if mirror and mirror.by == truth.by and mirror.case_id == truth.case_id else None
            return AckOut(by=truth.by, case_id=truth.case_id, at=self.fmt_time(truth.received_at), note=note)
        if mirror is not None:
            return AckOut(by=mirror.by, case_id=mirror.case_id, at=self.fmt_time(mirror.at), note=mirror.note)
        return None

    def event_out(self, record: EventRecord, detail: bool = False) -> EventOut:
        base = f"/api/events/{record.event_id}"
        links: _Links = {
            "snapshot_url": f"{base}/snapshot.jpg" if record.has_snapshot else None,
            "peak_snapshot_url": f"{base}/snapshot.jpg?which=peak" if record.has_peak_snapshot else None,
            "ack": self.ack_of(record),
            "case": CaseOut.of(record.case) if record.case is not None else None,
        }
        if detail:
            cases = [CaseOut.of(step) for step in self.history.cases(record.event_id)]
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


def _record_fields(model: type[EventOut], record: EventRecord, computed: Container[str]) -> dict[str, Any]:
    """The model's fields that the record carries as they are (everything but `computed`)."""
    return {name: getattr(record, name) for name in model.model_fields
            if name not in computed and name != "payload"}


def context(request: Request) -> ApiContext:
    return request.app.state.context


Context = Annotated[ApiContext, Depends(context)]
