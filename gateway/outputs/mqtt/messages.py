"""Inbound MQTT messages (acks, remote-look requests) and the replies: parsing, validation, limits.

Pure functions and small classes, no sockets: the publisher calls them and logs the reasons.

Ack (`{prefix}/{gw}/ack`): `{"event_id": str, "case_id": str, "by": str}`. Extra keys are
allowed and ignored, so a case platform that adds fields (a note, its own timestamp) keeps
working; missing or non-string required fields are an error with the reason.

Case progress (`{prefix}/{gw}/cases`): `{"event_id", "case_id", "status", "by", "at", "note"}`;
`status` one of dispatched|accepted|handled|verified|rejected; `by`, `at` (ISO-8601 with offset;
default: when it arrived; at most 5 minutes ahead of this gateway's clock) and `note` (≤ 1000
characters, shown as text) are optional. Extra keys are ignored. Text fields are plain text
(gateway.untrusted: no control characters, line separators or bidirectional overrides).

Page acknowledgement (published on `{prefix}/{gw}/acks`): `page_ack_notice`.

Remote look (`{prefix}/{gw}/cmd/snapshot`): `{"camera_id": str, "reply_to": topic}` plus an
optional `request_id` (≤ 64 chars) that is echoed in the reply so the centre can match them.
`reply_to` must pass `topics.reply_topic_problem` (under `{prefix}/{gw}/replies/`).
Replies: `{"camera_id", "taken_at", "snapshot": {"mime", "encoding": "base64", "data", "width",
"height", "taken_at", "bytes"}}` (the alert's snapshot object plus its size)
or `{"camera_id", "error": {"code", "message"}, "retry_after_s"?}`.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.delivery.ledger import CASE_STATUSES, CaseUpdate
from gateway.outputs.mqtt.topics import LEVEL
from gateway.untrusted import PayloadError, json_object, unsafe_character

MAX_ACK_BYTES = 16 * 1024
MAX_REQUEST_BYTES = 4 * 1024
MAX_FIELD_CHARS = 128
MAX_NOTE_CHARS = 1000
MAX_FUTURE_S = 300.0
"""A case step may be this far ahead of the gateway's clock (clock skew); later ones are refused:
the page shows the latest step, and one dated next year would hide every real one until then."""
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class InvalidMessage(ValueError):
    """A message that cannot be used; the text is the reason, written for the operator's log."""


class InvalidRequestWithReply(InvalidMessage):
    """A bad request whose reply_to is valid, so the requester can be told what was wrong."""

    def __init__(self, reply_to: str, request_id: str | None, reason: str) -> None:
        super().__init__(reason)
        self.reply_to = reply_to
        self.request_id = request_id


@dataclass(frozen=True)
class Ack:
    event_id: str
    case_id: str
    by: str


@dataclass(frozen=True)
class SnapshotRequest:
    camera_id: str
    reply_to: str
    request_id: str | None = None


def _json_object(payload: bytes, limit: int) -> dict[str, Any]:
    try:
        return json_object(payload, limit)
    except PayloadError as exc:
        raise InvalidMessage(str(exc)) from None


def _text_field(message: dict[str, Any], name: str) -> str:
    value = message.get(name)
    if value is None:
        raise InvalidMessage(f"missing '{name}'")
    if not isinstance(value, str) or not value.strip():
        raise InvalidMessage(f"'{name}' must be a non-empty string, got {value!r:.80}")
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidMessage(f"'{name}' is longer than {MAX_FIELD_CHARS} characters")
    character = unsafe_character(value)
    if character is not None:
        raise InvalidMessage(f"'{name}' holds {character}: one line of plain text only (no control characters, "
                             "line separators or bidirectional overrides)")
    return value


def parse_ack(payload: bytes) -> Ack:
    """An ack from the centre, or InvalidMessage saying what is wrong with it."""
    message = _json_object(payload, MAX_ACK_BYTES)
    return Ack(_text_field(message, "event_id"), _text_field(message, "case_id"), _text_field(message, "by"))


def parse_case(payload: bytes, received_at: float) -> CaseUpdate:
    """One step of the centre's case, or InvalidMessage saying what is wrong with it."""
    message = _json_object(payload, MAX_ACK_BYTES)
    event_id, case_id = _text_field(message, "event_id"), _text_field(message, "case_id")
    status = message.get("status")
    if status not in CASE_STATUSES:
        raise InvalidMessage(f"'status' must be one of {', '.join(CASE_STATUSES)}, got {status!r:.80}")
    by = _text_field(message, "by") if message.get("by") is not None else ""
    at, at_ts = _case_time(message.get("at"), received_at)
    note = message.get("note")
    if note is not None:
        if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
            raise InvalidMessage(f"'note' must be text of at most {MAX_NOTE_CHARS} characters")
        character = unsafe_character(note, lines=True)
        if character is not None:
            raise InvalidMessage(f"'note' holds {character}: plain text only (line feeds and tabs are fine)")
        note = note.strip() or None
    return CaseUpdate(event_id, case_id, status, by, at, at_ts, note)


def _case_time(value: Any, received_at: float) -> tuple[str, float]:
    if value is None:
        return iso_now(received_at), received_at
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidMessage(f"'at' must be an ISO-8601 time with offset, got {value!r:.80}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidMessage(f"'at' is not an ISO-8601 time: {value!r:.80}") from None
    if moment.tzinfo is None:
        raise InvalidMessage(f"'at' needs a UTC offset (e.g. 2024-05-01T09:30:00+08:00), got {value!r:.80}")
    ahead = moment.timestamp() - received_at
    if ahead > MAX_FUTURE_S:
        raise InvalidMessage(f"'at' {value!r:.80} is {ahead / 60:.0f} minutes in the future of this gateway's "
                             f"clock (at most {MAX_FUTURE_S / 60:.0f} allowed): check the sender's clock and offset")
    return value, moment.timestamp()


def page_ack_notice(gateway_id: str, event_id: str, case_id: str, by: str, at: str,
                    note: str | None) -> dict[str, Any]:
    """What `{prefix}/{gw}/acks` carries when a duty officer acknowledges on the gateway's page."""
    return {"gateway_id": gateway_id, "event_id": event_id, "case_id": case_id or None, "by": by, "at": at,
            "note": note, "source": "page"}


def parse_snapshot_request(payload: bytes, reply_problem: Callable[[object], str | None]) -> SnapshotRequest:
    """A remote-look request. Checks reply_to first: without a usable one we cannot even answer."""
    message = _json_object(payload, MAX_REQUEST_BYTES)
    problem = reply_problem(message.get("reply_to"))
    if problem:
        raise InvalidMessage(problem)
    request_id = message.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or not REQUEST_ID.match(request_id)):
        raise InvalidRequestWithReply(message["reply_to"], None, "'request_id' must be 1-64 of A-Z a-z 0-9 _ . : -")
    camera_id = message.get("camera_id")
    if not isinstance(camera_id, str) or not LEVEL.match(camera_id):
        raise InvalidRequestWithReply(
            message["reply_to"], request_id, f"'camera_id' must be a camera id string, got {camera_id!r:.80}"
        )
    return SnapshotRequest(camera_id, message["reply_to"], request_id)


# --------------------------------------------------------------------------- rate limiting


@dataclass
class SnapshotLimits:
    """Remote look is expensive (JPEG encode, a large MQTT message): at most one request per camera
    every `per_camera_s`, and `burst` requests at once across all cameras, refilled at `per_s`."""

    per_camera_s: float = 2.0
    burst: int = 5
    per_s: float = 0.5


@dataclass
class RateLimiter:
    limits: SnapshotLimits = field(default_factory=SnapshotLimits)
    _last_by_key: dict[str, float] = field(default_factory=dict)
    _tokens: float = -1.0
    _refilled_at: float = 0.0

    def check(self, key: str, now: float) -> float:
        """0 when allowed (and the request is counted), else seconds until it would be allowed."""
        self._refill(now)
        last = self._last_by_key.get(key)
        if last is not None and now - last < self.limits.per_camera_s:
            return self.limits.per_camera_s - (now - last)
        if self._tokens < 1.0:
            return (1.0 - self._tokens) / self.limits.per_s if self.limits.per_s > 0 else math.inf
        self._tokens -= 1.0
        self._last_by_key[key] = now
        if len(self._last_by_key) > 1024:  # ids come from the network: keep the map bounded
            self._last_by_key = {k: t for k, t in self._last_by_key.items() if now - t < self.limits.per_camera_s}
        return 0.0

    def _refill(self, now: float) -> None:
        if self._tokens < 0:
            self._tokens, self._refilled_at = float(self.limits.burst), now
            return
        self._tokens = min(float(self.limits.burst), self._tokens + (now - self._refilled_at) * self.limits.per_s)
        self._refilled_at = now


# --------------------------------------------------------------------------- replies


def iso_now(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).astimezone().isoformat(timespec="milliseconds")


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the JPEG's SOF marker, or None if it cannot be found."""
    pos = 2
    while pos + 9 < len(data) and data[:2] == b"\xff\xd8":
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            return width, height
        pos += 2 + length
    return None


def snapshot_reply(request: SnapshotRequest, jpeg: bytes, taken_at: float) -> dict[str, Any]:
    """Same snapshot object as in an alert (mime, encoding, data, width, height, taken_at) + bytes."""
    stamp = iso_now(taken_at)
    snapshot: dict[str, Any] = {"mime": "image/jpeg", "encoding": "base64",
                                "data": base64.b64encode(jpeg).decode("ascii"), "bytes": len(jpeg)}
    size = jpeg_size(jpeg)
    if size:
        snapshot["width"], snapshot["height"] = size
    snapshot["taken_at"] = stamp
    reply: dict[str, Any] = {"camera_id": request.camera_id, "taken_at": stamp, "snapshot": snapshot}
    if request.request_id:
        reply["request_id"] = request.request_id
    return reply


def error_reply(
    camera_id: object, request_id: str | None, code: str, message: str, retry_after_s: float | None = None
) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "camera_id": camera_id if isinstance(camera_id, str) else None,
        "error": {"code": code, "message": message},
    }
    if request_id:
        reply["request_id"] = request_id
    if retry_after_s is not None:
        reply["retry_after_s"] = round(retry_after_s, 1)
    return reply
