"""Events: the alert history with filters, the live stream, evidence pictures, acknowledgement."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BeforeValidator

from gateway.api.context import Context
from gateway.api.query import epoch_or_none, known_query, rfc3339
from gateway.api.schemas import AckIn, AckOut, AckResult, EventDetail, EventOut, EventPageOut, Problem
from gateway.api.stream import SSE_MAX_CLIENTS, EventStreamResponse, event_stream
from gateway.api.thumbnails import THUMB_MAX_BYTES, THUMB_WIDTH
from gateway.config.models import IDENT_PATTERN
from gateway.delivery.ledger import LedgerError, UnknownEventError
from gateway.events.lifecycle import EVENT_ID_RE
from gateway.events.types import ALERT_TYPE_NAMES

log = logging.getLogger("gateway.api")

EventIdParam = Annotated[str, PathParam(pattern=EVENT_ID_RE.pattern, description="The event's uuid.")]

router = APIRouter(tags=["events"])


@router.get("/api/events", response_model=EventPageOut, summary="Events, newest first, with filters and paging",
            dependencies=[Depends(known_query("camera", "type", "state", "since", "acked", "limit", "offset"))])
def list_events(
    ctx: Context,
    camera: Annotated[str | None, Query(pattern=IDENT_PATTERN, description="Camera id.")] = None,
    type: Annotated[Literal[ALERT_TYPE_NAMES] | None, Query(description="Event type.")] = None,  # type: ignore[valid-type]
    state: Annotated[Literal["start", "update", "end", "active"] | None,
                     Query(description="Lifecycle state of the last message; 'active' = not ended.")] = None,
    since: Annotated[datetime | None, BeforeValidator(rfc3339),
                     Query(description="Only events updated at or after this time (RFC 3339, with offset: "
                                       "2024-05-01T08:00:00+08:00).")] = None,
    acked: Annotated[bool | None, Query(description="Only acknowledged (true) or unacknowledged (false).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> EventPageOut:
    try:
        since_epoch = epoch_or_none(since)
    except (OverflowError, ValueError, OSError):
        raise HTTPException(422, "since is out of range") from None
    page = ctx.history.list(camera=camera, type=type, state=state, since=since_epoch, acked=acked,
                            limit=limit, offset=offset)
    return EventPageOut(items=ctx.events_out(page.items), total=page.total, limit=page.limit,
                        offset=page.offset, rev=page.rev)


@router.get("/api/events/stream", summary="Live event changes (server-sent events)",
            dependencies=[Depends(known_query("after"))],
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "`event: hello` first, then `event: alert` with an EventOut "
                                            "as data and its rev as `id:`; comments as heartbeats."},
                       429: {"model": Problem}})
async def stream(
    request: Request,
    ctx: Context,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="Send changes after this revision "
                                                                     "(from GET /api/events).")] = None,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    if len(ctx.hub.clients) >= SSE_MAX_CLIENTS:
        raise HTTPException(429, "too many live streams open")
    ctx.hub.bind(ctx.history)
    start = after
    if last_event_id and last_event_id.isdigit() and len(last_event_id) < 19:
        start = int(last_event_id)
    if start is None:
        start = ctx.history.rev
    return EventStreamResponse(
        event_stream(ctx.hub, ctx.history, ctx.event_out, start, ctx.sse_heartbeat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/api/events/{event_id}", response_model=EventDetail, responses={404: {"model": Problem}})
def get_event(event_id: EventIdParam, ctx: Context) -> EventOut:
    return ctx.event_out(ctx.find_event(event_id), detail=True)


@router.get("/api/events/{event_id}/snapshot.jpg", summary="Evidence picture",
            description="The event's evidence picture as kept (JPEG). `size=thumb` gives a small copy for "
                        f"lists: at most {THUMB_WIDTH} px wide and {THUMB_MAX_BYTES // 1000} kB, made from the "
                        "kept picture the first time it is asked for and cached; the full picture stays "
                        "available without `size`.",
            dependencies=[Depends(known_query("which", "size"))],
            responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                       404: {"model": Problem, "description": "Unknown event, or no picture kept."}})
def event_snapshot(
    event_id: EventIdParam,
    ctx: Context,
    which: Annotated[Literal["start", "peak", "latest"], Query(description="start picture, latest peak "
                                                                            "picture, or the newer one")] = "start",
    size: Annotated[Literal["full", "thumb"], Query(description=f"full: as kept; thumb: at most {THUMB_WIDTH} px "
                                                                 "wide, for lists")] = "full",
) -> Response:
    ctx.find_event(event_id)
    jpeg = ctx.history.snapshot(event_id, which)
    if jpeg is None:
        raise HTTPException(404, f"event {event_id} has no {which} picture (none taken, or deleted by retention)")
    if size == "thumb":
        thumb = ctx.thumbnails.get(event_id, which, jpeg)
        if thumb is None:
            log.warning("event %s: its %s picture does not decode as a JPEG; sending it whole", event_id, which)
        jpeg = thumb or jpeg
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.post("/api/events/{event_id}/ack", response_model=AckResult,
             summary="Acknowledge an event (recorded in the case ledger with the centre's acks; the centre "
                     "is told on MQTT `acks`)",
             responses={400: {"model": Problem, "description": "The body is not JSON text."},
                        404: {"model": Problem}, 409: {"model": Problem},
                        503: {"model": Problem, "description": "The data disk cannot take the ack (full)."}})
def acknowledge(event_id: EventIdParam, body: AckIn, ctx: Context) -> AckResult:
    if ctx.history.get(event_id) is None and not ctx.ledger.is_known(event_id):
        raise HTTPException(404, f"no event {event_id}")
    try:
        ack, new = ctx.ledger.acknowledge_on_page(event_id, body.by, body.case_id, body.note)
    except UnknownEventError:
        raise HTTPException(409, f"event {event_id} is too old to acknowledge (the ledger forgot it)") from None
    except LedgerError as exc:
        log.error("event %s: the page's acknowledgement by %s could not be recorded: %s", event_id, body.by, exc)
        raise HTTPException(503, "the acknowledgement could not be stored (is the data disk full?); try again "
                                 "in a moment") from None
    updated = ctx.history.get(event_id)
    return AckResult(
        event_id=event_id, new=new,
        ack=AckOut(by=ack.by, case_id=ack.case_id, at=ctx.fmt_time(ack.received_at), note=ack.note),
        event=ctx.event_out(updated) if updated else None,
    )
