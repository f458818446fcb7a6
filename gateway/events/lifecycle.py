"""One event's life as messages: start, updates when they say something new, end.

The event id (uuid4) is made once and repeated in every message; seq counts the messages
(1, 2, 3 ...), so the centre can order them and drop duplicates after a reconnect. Updates are
rate-limited by the rule's policy: only when the count moved meaningfully since the last message
(`min_change` people, or `min_change_share` of the count when that is more, lasting `settle_s`:
changes.py), or `every_s` passed (a heartbeat that the event is still going). A snapshot rides on
the start and on updates where the peak rose, and nowhere else, to keep MQTT messages small.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gateway.events.changes import ChangeGate, ChangeRule
from gateway.events.payload import AlertSource, AlertSubject, Reading, Stamp, build_payload
from gateway.events.snapshot import Snapshot

EVENT_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
"""Event ids are lowercase uuid4 strings: the only form any file name or URL takes them in."""


def is_event_id(value: object) -> bool:
    """True for an event id this gateway could have made (checked before one reaches a path)."""
    return isinstance(value, str) and EVENT_ID_RE.match(value) is not None


SnapshotSource = Callable[[], Snapshot | None]
"""Renders the evidence picture on demand: most frames need none, and JPEG encoding is costly."""


@dataclass(frozen=True)
class AlertMessage:
    """One message ready for the outbox. snapshot_jpeg: the same picture as raw bytes."""

    payload: dict[str, Any]
    snapshot_jpeg: bytes | None = None

    @property
    def event_id(self) -> str:
        return self.payload["event_id"]

    @property
    def seq(self) -> int:
        return self.payload["seq"]

    @property
    def state(self) -> str:
        return self.payload["state"]


class AlertPath(Protocol):
    """Where raised alerts go, whoever raised them: the router (gateway.delivery.router) queues
    them for every output first, then records them and runs the reactions. Never raises."""

    def route(self, messages: Sequence[AlertMessage]) -> None: ...


@dataclass(frozen=True)
class UpdatePolicy:
    min_change: int = 2
    every_s: float = 60.0
    min_change_share: float = 0.0
    settle_s: float = 0.0

    @property
    def change(self) -> ChangeRule:
        return ChangeRule(self.min_change, self.min_change_share, self.settle_s)


class OpenEvent:
    """An event between its start and its end; `t` is monotonic seconds, `now` the wall clock."""

    def __init__(
        self, source: AlertSource, subject: AlertSubject, policy: UpdatePolicy, started_at: datetime
    ):
        self.event_id = str(uuid.uuid4())
        self.source = source
        self.subject = subject
        self.policy = policy
        self.started_at = started_at
        self.peak_count = 0
        self._seq = 0
        self._change = ChangeGate(policy.change)
        self._sent_peak = 0
        self._sent_t = 0.0

    def start(self, reading: Reading, t: float, now: datetime, snapshot: SnapshotSource) -> AlertMessage:
        self.peak_count = max(self.peak_count, reading.count or 0)
        return self._message("start", reading, t, now, snapshot())

    def observe(self, count: int, t: float) -> bool:
        """Note this frame's count; True when an update is due (the caller then builds it).

        Split from `update` so that the common case, nothing to send, costs no payload work.
        """
        self.peak_count = max(self.peak_count, count)
        moved = self._change.moved(count, t)
        return moved or t - self._sent_t >= self.policy.every_s

    def update(self, reading: Reading, t: float, now: datetime, snapshot: SnapshotSource) -> AlertMessage:
        """The update message; it carries a picture only if the peak rose since the last one."""
        picture = snapshot() if self.peak_count > self._sent_peak else None
        return self._message("update", reading, t, now, picture)

    def end(self, reading: Reading, t: float, now: datetime, ended_at: datetime) -> AlertMessage:
        return self._message("end", reading, t, now, None, ended_at)

    def _message(self, state, reading, t, now, snapshot, ended_at=None) -> AlertMessage:
        self._seq += 1
        self._change.reset(reading.count or 0)
        self._sent_peak = self.peak_count
        self._sent_t = t
        stamp = Stamp(self.event_id, self._seq, state, self.started_at, now, ended_at, self.peak_count)
        payload = build_payload(self.source, self.subject, stamp, reading, snapshot)
        return AlertMessage(payload, snapshot.jpeg if snapshot else None)
