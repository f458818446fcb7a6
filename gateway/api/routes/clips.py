"""Evidence clips: the video of an event, as the camera sent it (MP4, no re-encoding).

`GET /api/events/{event_id}/clip` serves the clip with HTTP Range (a browser's <video> seeks
with it), with the API's auth like every route. A clip being recorded is a fragmented MP4 that
plays up to its last whole GOP: it is served as far as it is written. Only an event's own clip
is ever served: the file name is built from the validated event id, nothing else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from gateway.api.context import Context
from gateway.api.schemas import Problem
from gateway.events.lifecycle import EVENT_ID_RE

EventIdParam = Annotated[str, PathParam(pattern=EVENT_ID_RE.pattern, description="The event's uuid.")]

router = APIRouter(tags=["events"])


@router.get("/api/events/{event_id}/clip", summary="The event's video clip (MP4, HTTP Range)",
            responses={200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "The clip; 206 for a Range request."},
                       404: {"model": Problem, "description": "Unknown event, no clip, or the clip was deleted "
                                                             "(quota, full disk) or failed."}})
def event_clip(event_id: EventIdParam, ctx: Context) -> FileResponse:
    ctx.find_event(event_id)
    info = ctx.clips.get(event_id) if ctx.clips is not None else None
    if info is None or info.status == "failed":
        reason = f": {info.reason}" if info is not None and info.reason else ""
        raise HTTPException(404, f"event {event_id} has no clip{reason}")
    path = ctx.clips.path(event_id) if ctx.clips is not None else None
    if path is None or not path.is_file():
        raise HTTPException(404, f"the clip of event {event_id} is not on disk (deleted for space, or not "
                                 "written yet)")
    cache = "no-store" if info.status == "recording" else "private, max-age=3600"
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": cache},
                        filename=f"{event_id}.mp4", content_disposition_type="inline")
