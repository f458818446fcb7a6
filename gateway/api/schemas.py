"""Request and response models of the web API (they are its OpenAPI contract), and the
conversions from the gateway's own records into them.

Every string that can carry a URL or an installer's free text is redacted on the way out, and
numbers that may be NaN or infinite (rates of a camera that never streamed) become null.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.events.counts import CameraCounts
from gateway.events.record import EventSummary
from gateway.redaction import redact
from gateway.status import CameraStatus, PatrolStatus, ZoneOutline
from gateway.untrusted import NAME, NOTE, ONE_LINE

# Printable text on one line; one line with a visible character; text with line feeds and tabs.
# Control characters, line separators and bidirectional overrides are refused (gateway.untrusted).


# --------------------------------------------------------------------------- health


class OutputHealth(BaseModel):
    alive: bool = Field(description="Its delivery thread runs.")
    connected: bool = Field(description="Its far end took the last delivery (MQTT: connected).")
    queued: int = Field(description="Alerts not yet delivered (in its outbox, or held in memory).")


class Health(BaseModel):
    """Liveness. Without the delivery view (tests of the page alone) only `status: ok`."""

    status: Literal["ok", "degraded", "failing"] = Field(
        default="ok", description="failing (HTTP 503): a thread or task of the gateway is dead or hangs (the "
                                  "heartbeat and the log name it); degraded: the data disk is full, an output "
                                  "cannot reach its far end, or a PTZ patrol is failing (patrols_failing).")
    outputs: dict[str, OutputHealth] | None = None
    disk_full: bool | None = None
    patrols_failing: int | None = Field(
        default=None, description="PTZ patrols at fault: a stop not reachable for patrol_fault_after_s (their "
                                  "patrol_fault alert waits while the camera is offline). Which camera and why: "
                                  "the heartbeat and /api/cameras. Absent without patrols.")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


class Info(BaseModel):
    gateway_id: str
    gateway_name: str
    version: str
    auth: bool = Field(description="True when the API needs a token (the page then offers a logout).")
    time: str = Field(description="The gateway's clock, ISO-8601 with offset.")
    rev: int = Field(description="Newest event revision (stream changes after it).")
    alert_types: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Every alert type with its labels: {type: {zh, en}}.")


class Problem(BaseModel):
    detail: str


# --------------------------------------------------------------------------- cameras


class ZoneOut(BaseModel):
    id: str
    name: str
    polygon: list[tuple[float, float]] = Field(description="Points in decoded-frame pixels.")


class ZoneCountOut(BaseModel):
    name: str
    count: int
    source: Literal["detector", "model"]


class CountsOut(BaseModel):
    """What a camera counts now (gateway.events.counts; the same as its retained MQTT `counts`)."""

    count: int = Field(description="People in the whole picture.")
    source: Literal["detector", "model"] = Field(
        description="model: the counting model's steady estimate (a dense scene); detector: the tracked people.")
    detected: int = Field(description="People the detector sees.")
    estimated: float | None = Field(description="The counting model's own estimate of the frame, unsmoothed; null "
                                                "without a model or while it learns its empty scene.")
    mode: Literal["detector", "model", "auto"] = Field(description="counting.mode in force.")
    at: str = Field(description="When the counted frame was analysed, ISO-8601 with offset.")
    stale: bool = Field(description="The camera is offline or has analysed no frame for 30 s.")
    zones: dict[str, ZoneCountOut] = Field(description="Per zone id.")


class CameraOut(BaseModel):
    id: str
    name: str
    grid_id: str
    address: str
    state: str = Field(description="connecting | streaming | backoff | stopped | offline")
    analysed_fps: float
    decoded_fps: float
    last_frame_age_s: float | None
    reconnects: int
    last_error: str | None = Field(description="Last stream error, credentials redacted.")
    skip_ratio: float | None
    frame_size: tuple[int, int] | None = Field(description="[width, height] of the decoded frame.")
    zones: list[ZoneOut]
    masks: list[ZoneOut]
    preset: str | None
    source: str = Field(description="Stream address, credentials redacted.")
    resolution: tuple[int, int] | None = Field(description="[width, height] the YAML's pixel polygons refer to.")
    coordinates: Literal["pixels", "normalized"]
    snapshot_url: str
    patrol: PatrolStatus | None = Field(default=None, description="PTZ patrol state; null without a patrol.")
    tiles_per_frame: int = Field(default=1, description="Detector runs per analysed frame (tiled detection).")
    inference_ms: float | None = Field(default=None, description="Mean detector time per analysed frame, "
                                                                 "all its tiles; null before the first.")
    counts: CountsOut | None = Field(default=None, description="What it counts now, per zone, and from what; "
                                                               "null before the first analysed frame.")


def zone_out(zone: ZoneOutline | dict[str, Any]) -> ZoneOut:
    zone = ZoneOutline.coerce(zone)
    return ZoneOut(id=redact(zone.id), name=redact(zone.name), polygon=[(float(x), float(y)) for x, y in zone.polygon])


def finite(value: float | None) -> float | None:
    """The number, or None for None, NaN and infinities (JSON has no such numbers)."""
    if value is None:
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _rounded(value: float | None, digits: int) -> float | None:
    value = finite(value)
    return None if value is None else round(value, digits)


def _pair(value: tuple[int, int] | None) -> tuple[int, int] | None:
    """A [width, height] as a tuple (a status may hold it as a list); None when unknown."""
    if not value:
        return None
    width, height = value
    return width, height


def camera_out(camera: CameraStatus) -> CameraOut:
    return CameraOut(
        id=camera.id,
        name=redact(camera.name),
        grid_id=redact(camera.grid_id),
        address=redact(camera.address),
        state=camera.state,
        analysed_fps=_rounded(camera.analysed_fps, 2) or 0.0,
        decoded_fps=_rounded(camera.decoded_fps, 2) or 0.0,
        last_frame_age_s=_rounded(camera.last_frame_age_s, 2),
        reconnects=int(camera.reconnects or 0),
        last_error=redact(camera.last_error) if camera.last_error else None,
        skip_ratio=_rounded(camera.skip_ratio, 3),
        frame_size=_pair(camera.frame_size),
        zones=[zone_out(z) for z in camera.zones],
        masks=[zone_out(z) for z in camera.masks],
        preset=redact(camera.preset) if camera.preset else None,
        source=redact(camera.source or ""),
        resolution=_pair(camera.resolution),
        coordinates=camera.coordinates,
        snapshot_url=f"/api/cameras/{camera.id}/snapshot.jpg",
        tiles_per_frame=camera.tiles_per_frame,
        inference_ms=_rounded(camera.inference_ms, 1),
        patrol=camera.patrol,  # its last_error is redacted where it is made (gateway.onvif.ptz)
        counts=counts_out(camera.counts) if camera.counts is not None else None,
    )


def counts_out(counts: CameraCounts) -> CountsOut:
    return CountsOut.model_validate({
        "count": counts.count, "source": counts.source, "detected": counts.detected, "estimated": counts.estimated,
        "mode": counts.mode, "at": counts.at.isoformat(timespec="milliseconds"), "stale": counts.stale,
        "zones": {zone.id: {"name": redact(zone.name), "count": zone.count, "source": zone.source}
                  for zone in counts.zones}})


# --------------------------------------------------------------------------- events


class AckOut(BaseModel):
    by: str
    case_id: str
    at: str = Field(description="When the ack was recorded, ISO-8601 with offset.")
    note: str | None = None


class CaseOut(BaseModel):
    """One step of the centre's case for an alert (from `{prefix}/{gateway_id}/cases`)."""

    case_id: str
    status: Literal["dispatched", "accepted", "handled", "verified", "rejected"]
    by: str = Field(description="Who at the centre (may be empty).")
    at: str = Field(description="When, ISO-8601 with offset, as the centre sent it.")
    note: str | None = Field(default=None, description="The centre's remark: plain text, shown as text.")

    @classmethod
    def of(cls, update: Any) -> CaseOut:
        return cls(case_id=update.case_id, status=update.status, by=update.by, at=update.at, note=update.note)


class ClipOut(BaseModel):
    """An event's video clip (`evidence.clip` of the alert payload, as the gateway knows it now)."""

    status: Literal["recording", "ready", "partial", "failed"]
    url: str | None = Field(description="GET /api/events/{id}/clip (video/mp4, HTTP Range); null when failed.")
    from_: str | None = Field(alias="from", description="Wall time of its first frame.")
    to: str | None = Field(description="Wall time of its last frame so far.")
    reason: str | None = Field(default=None, description="Why it is partial or failed.")

    model_config = ConfigDict(populate_by_name=True)


class EventOut(EventSummary):
    """An event as the page lists it: its summary (`gateway.events.record`, the fields the history
    keeps), plus the revision, the links and the ack the API works out (`ApiContext.event_out`)."""

    model_config = ConfigDict(frozen=False)

    rev: int = Field(description="Revision of this event's last change (the stream's `id:`).")
    active: bool
    snapshot_url: str | None = Field(default=None, description="The start picture, if kept.")
    peak_snapshot_url: str | None = Field(default=None,
                                          description="The latest picture taken when the count peaked, if any.")
    snapshot_evicted: bool = Field(description="Pictures were deleted by the size cap or retention.")
    ack: AckOut | None = None
    case: CaseOut | None = Field(default=None, description="The centre's latest case step (工单状态), by its time.")
    clip: ClipOut | None = Field(default=None, description="The event's video clip, if the camera records them.")


class EventDetail(EventOut):
    payload: dict[str, Any] | None = Field(description="The latest gw.alert/1 payload, picture data stripped.")
    cases: list[CaseOut] = Field(default_factory=list, description="Every case step the centre sent, in time order.")


class EventPageOut(BaseModel):
    items: list[EventOut]
    total: int
    limit: int
    offset: int
    rev: int = Field(description="Newest revision when read: open the stream with ?after=rev.")


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str = Field(default="web", min_length=1, max_length=64, pattern=NAME,
                    description="Who acknowledged (the officer's name).")
    case_id: str | None = Field(default=None, max_length=64, pattern=ONE_LINE,
                                description="Case number, if one was opened.")
    note: str | None = Field(default=None, max_length=500, pattern=NOTE)


class AckResult(BaseModel):
    event_id: str
    new: bool = Field(description="False when the same ack was already recorded.")
    ack: AckOut
    event: EventOut | None


def redact_tree(value: Any) -> Any:
    """`value` (JSON-like) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v) for v in value]
    return value
