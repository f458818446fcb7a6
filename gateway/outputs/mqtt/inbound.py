"""What the centre sends the gateway over MQTT, handled apart from the connection that carries it.

Three topics come in (see topics.py): the centre's acknowledgements (`ack`), its case progress
(`cases`) and remote-look requests (`cmd/snapshot`). `CentreInbound.handle` takes one message
(topic, bytes, retain flag) and returns what the connection must do about it: publish a reply,
or take a snapshot off the connection's thread (JPEG encoding must not stall delivery). Parsing
and checks are messages.py; acks and case steps go to the case ledger (gateway.delivery.ledger);
whether a camera exists is asked of the live view. Nothing here touches paho or sockets, so every
rule is tested without a broker.

Malformed messages, and messages about events this gateway never sent, are logged in one line
each (rate-limited by kind, so a flood of garbage cannot flood the journal), counted, and
ignored; a requester with a usable reply topic is told what was wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.delivery.ledger import CaseUpdate, LedgerError, UnknownEventError
from gateway.logs import LogLimiter
from gateway.outputs.mqtt.messages import (
    InvalidMessage,
    InvalidRequestWithReply,
    RateLimiter,
    SnapshotLimits,
    SnapshotRequest,
    error_reply,
    parse_ack,
    parse_case,
    parse_snapshot_request,
    snapshot_reply,
)
from gateway.outputs.mqtt.topics import Topics, reply_topic_problem

log = logging.getLogger("gateway.outputs.mqtt")

MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024
COUNTERS = ("acks_recorded", "acks_ignored", "cases_recorded", "cases_ignored", "snapshot_requests",
            "snapshot_replies", "snapshot_refused")


class CaseLoop(Protocol):
    """The part of the case ledger the centre writes to (gateway.delivery.ledger.CaseLedger)."""

    def record_centre_ack(self, event_id: str, case_id: str, by: str) -> Any: ...

    def record_case(self, update: CaseUpdate) -> bool: ...


@dataclass(frozen=True)
class Reply:
    """Publish `payload` (JSON) on `topic`, QoS 1, not retained."""

    topic: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class TakeSnapshot:
    """Encode a fresh picture of `request.camera_id` off the connection's thread, then answer
    with `CentreInbound.snapshot_answer`."""

    request: SnapshotRequest


Action = Reply | TakeSnapshot


class CentreInbound:
    """The centre's acks, case progress and remote-look requests (see the module docstring).

    ledger: where acks and case steps are recorded (None: the gateway keeps no case loop and
    ignores them). has_camera: whether a camera id exists (remote look refuses made-up ids before
    they spend a real camera's rate budget).
    """

    def __init__(self, topics: Topics, ledger: CaseLoop | None, has_camera: Callable[[str], bool], *,
                 snapshot_limits: SnapshotLimits | None = None, extra_reply_prefixes: Sequence[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        for prefix in extra_reply_prefixes:
            if not prefix.endswith("/") or any(ch in prefix for ch in "#+") or prefix.startswith("$"):
                raise ValueError(f"reply prefix {prefix!r} must end with '/' and contain no wildcards")
        self.topics = topics
        self.ledger = ledger
        self.has_camera = has_camera
        self.counts = dict.fromkeys(COUNTERS, 0)
        self._reply_prefixes = (topics.replies, *extra_reply_prefixes)
        self._limiter = RateLimiter(snapshot_limits or SnapshotLimits())
        self._log = LogLimiter()
        self._clock = clock

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The topics to subscribe to, in the order the broker's SUBACK answers them."""
        return (self.topics.ack, self.topics.cmd_snapshot, self.topics.cases)

    def handle(self, topic: str, payload: bytes, retain: bool = False) -> list[Action]:
        """One message from the broker; never raises (a bug is logged, the message ignored)."""
        try:
            if topic == self.topics.ack:
                self._ack(payload)
            elif topic == self.topics.cases:
                self._case(payload)
            elif topic == self.topics.cmd_snapshot:
                return self._snapshot_request(payload, retain)
            else:
                log.debug("ignoring a message on %s (not subscribed by this gateway)", topic)
        except Exception:  # noqa: BLE001 - one bad message must never stop the connection
            log.exception("error while handling a message on %s; ignored", topic)
        return []

    def snapshot_answer(self, request: SnapshotRequest, jpeg: bytes | None, taken_at: float) -> Reply:
        """The reply to a remote look once its picture is taken (None: the camera has no frame)."""
        if not jpeg:
            return self._error(request, "no_snapshot",
                               f"no recent frame for camera {request.camera_id} (unknown or offline camera)")
        if len(jpeg) > MAX_SNAPSHOT_BYTES:
            return self._error(request, "too_large", f"snapshot of {len(jpeg)} bytes exceeds {MAX_SNAPSHOT_BYTES}")
        self.counts["snapshot_replies"] += 1
        log.info("remote look: sent a snapshot of camera %s (%d kB) to %s",
                 request.camera_id, len(jpeg) // 1024, request.reply_to)
        return Reply(request.reply_to, snapshot_reply(request, jpeg, taken_at))

    def snapshot_failed(self, request: SnapshotRequest, error: BaseException) -> Reply:
        log.error("snapshot of camera %s for a remote look failed: %s", request.camera_id, error)
        return self._error(request, "internal", f"snapshot failed: {error}")

    # ------------------------------------------------------------------ the case loop

    def _ack(self, payload: bytes) -> None:
        try:
            ack = parse_ack(payload)
        except InvalidMessage as exc:
            self._ignored("acks_ignored", "ack:malformed", "ignored a malformed ack on %s: %s", self.topics.ack, exc)
            return
        if self.ledger is None:
            self.counts["acks_ignored"] += 1
            return
        try:
            _record, new = self.ledger.record_centre_ack(ack.event_id, ack.case_id, ack.by)
        except UnknownEventError:
            self._ignored("acks_ignored", "ack:unknown", "ignored an ack for unknown event %s (case %s by %s): this "
                          "gateway never sent it or forgot it", ack.event_id, ack.case_id, ack.by)
            return
        except LedgerError as exc:
            self._ignored("acks_ignored", "ack:storage", "could not record the ack of event %s (case %s by %s): %s",
                          ack.event_id, ack.case_id, ack.by, exc, level=logging.ERROR)
            return
        if new:
            self.counts["acks_recorded"] += 1
        else:
            log.debug("repeated ack of event %s (case %s by %s)", ack.event_id, ack.case_id, ack.by)

    def _case(self, payload: bytes) -> None:
        try:
            update = parse_case(payload, time.time())
        except InvalidMessage as exc:
            self._ignored("cases_ignored", "case:malformed", "ignored a malformed case update on %s: %s",
                          self.topics.cases, exc)
            return
        if self.ledger is None:
            self.counts["cases_ignored"] += 1
            return
        try:
            self.ledger.record_case(update)
        except UnknownEventError:
            self._ignored("cases_ignored", "case:unknown", "ignored a case update for unknown event %s (case %s, "
                          "%s): this gateway never sent it or forgot it", update.event_id, update.case_id,
                          update.status)
            return
        except LedgerError as exc:
            self._ignored("cases_ignored", "case:storage", "could not store the case update of event %s (case %s, "
                          "%s): %s", update.event_id, update.case_id, update.status, exc, level=logging.ERROR)
            return
        self.counts["cases_recorded"] += 1

    # ------------------------------------------------------------------ remote look

    def _snapshot_request(self, payload: bytes, retain: bool) -> list[Action]:
        self.counts["snapshot_requests"] += 1
        if retain:
            return self._refuse(None, "retained snapshot request ignored: it would replay on every reconnect")
        try:
            request = parse_snapshot_request(payload, self._reply_problem)
        except InvalidRequestWithReply as exc:
            return self._refuse(exc.reply_to, str(exc), code="invalid_request", request_id=exc.request_id)
        except InvalidMessage as exc:
            return self._refuse(None, f"invalid snapshot request: {exc}")
        camera = request.camera_id
        if not self.has_camera(camera):
            # refused before the rate limiter: made-up ids must not spend real cameras' budget
            return self._refuse(request.reply_to, f"no camera {camera!r} on this gateway", code="no_camera",
                                request_id=request.request_id, camera_id=camera)
        retry_after = self._limiter.check(camera, self._clock())
        if retry_after > 0:
            return self._refuse(request.reply_to, f"rate limited for camera {camera}", code="rate_limited",
                                request_id=request.request_id, camera_id=camera, retry_after=retry_after)
        return [TakeSnapshot(request)]

    def refuse_busy(self, request: SnapshotRequest) -> list[Action]:
        """The connection's snapshot worker is busy with earlier requests."""
        return self._refuse(request.reply_to, "busy with other snapshot requests", code="busy",
                            request_id=request.request_id, camera_id=request.camera_id, retry_after=2.0)

    def _reply_problem(self, topic: object) -> str | None:
        return reply_topic_problem(topic, self._reply_prefixes)

    def _refuse(self, reply_to: str | None, reason: str, *, code: str = "invalid_request",
                request_id: str | None = None, camera_id: object = None,
                retry_after: float | None = None) -> list[Action]:
        self.counts["snapshot_refused"] += 1
        self._log.log(log, logging.WARNING, f"snapshot:{code}", "snapshot request refused: %s%s", reason,
                      "" if reply_to else " (no usable reply_to; no reply)")
        if not reply_to:
            return []
        return [Reply(reply_to, error_reply(camera_id, request_id, code, reason, retry_after))]

    def _error(self, request: SnapshotRequest, code: str, reason: str) -> Reply:
        return Reply(request.reply_to, error_reply(request.camera_id, request.request_id, code, reason))

    def _ignored(self, counter: str, key: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
        self.counts[counter] += 1
        self._log.log(log, level, key, message, *args)
