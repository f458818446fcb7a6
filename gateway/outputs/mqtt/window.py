"""The MQTT output's QoS 1 window: which alerts are in flight, which the broker refused, and where
the walk through the outbox stands. Pure bookkeeping, owned by the connection's thread.

At most `window` alerts are unacknowledged at once (and never more than the broker's MQTT 5
Receive Maximum allows, minus a few slots kept for presence, camera state and replies, which
must not wait behind a backlog of alerts). The outbox is walked by row id (`cursor`); a PUBACK
with a success reason code delivers its row, one with a failure code (not authorised, quota)
keeps the row and retries it after `retry_s`. A lost connection forgets everything in flight:
the outbox, not paho's memory, is what is sent again after a reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.delivery.outbox import OutboxMessage

STATUS_RESERVE = 2
"""In-flight slots kept free of alerts so status, camera state and replies never wait behind them."""
REJECTED_RETRY_S = 60.0


@dataclass(frozen=True)
class Inflight:
    """One alert published and not yet acknowledged (by paho's message id)."""

    row_id: int
    event_id: str
    seq: int
    created_at: float


class PendingRows(Protocol):
    """What the window reads of the outbox."""

    generation: int

    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxMessage]: ...

    def get(self, row_id: int) -> OutboxMessage | None: ...


class InflightWindow:
    def __init__(self, window: int, generation: int = 0, retry_s: float = REJECTED_RETRY_S) -> None:
        self.window = max(1, window)
        self.retry_s = retry_s
        self._alerts: dict[int, Inflight] = {}
        self._others: set[int] = set()
        self._rejected: dict[int, float] = {}
        self._cursor = 0
        self._generation = generation
        self._alert_room = self.window
        self._budget = self.window + STATUS_RESERVE

    @property
    def paho_limit(self) -> int:
        """What to tell paho as its own in-flight cap (alerts plus the reserved slots)."""
        return self.window + STATUS_RESERVE

    def __len__(self) -> int:
        """Alerts in flight."""
        return len(self._alerts)

    def connected(self, receive_maximum: int | None) -> None:
        """A new connection: size the window by the broker's Receive Maximum (MQTT 5)."""
        self._budget = max(STATUS_RESERVE + 1, min(self.window + STATUS_RESERVE, receive_maximum or 65535))
        self._alert_room = self._budget - STATUS_RESERVE
        self._others.clear()

    def lost(self) -> int:
        """The connection is gone: forget what was in flight (it is sent again from the outbox).
        Returns how many alerts were in flight."""
        count = len(self._alerts)
        self._alerts.clear()
        self._others.clear()
        self._cursor = 0
        return count

    def due(self, outbox: PendingRows, now: float) -> list[OutboxMessage]:
        """The alerts to publish now, oldest first: refused ones whose retry is due, then new rows."""
        room = self._alert_room - len(self._alerts)
        if room <= 0:
            return []
        messages: list[OutboxMessage] = []
        for row_id in [row for row, at in self._rejected.items() if at <= now][:room]:
            del self._rejected[row_id]
            message = outbox.get(row_id)
            if message is not None:
                messages.append(message)
        room -= len(messages)
        if room <= 0:
            return messages
        if outbox.generation != self._generation:  # the file opened late: older rows appeared
            self._generation, self._cursor = outbox.generation, 0
        in_flight = {entry.row_id for entry in self._alerts.values()}
        for message in outbox.pending(after_id=self._cursor, limit=room):
            self._cursor = max(self._cursor, message.id)
            if message.id not in self._rejected and message.id not in in_flight:
                messages.append(message)
        return messages

    def sent(self, mid: int, message: OutboxMessage) -> None:
        self._alerts[mid] = Inflight(message.id, message.event_id, message.seq, message.created_at)

    def not_sent(self, message: OutboxMessage, now: float) -> None:
        """paho would not take it (its queue is full, the socket closed): walk back to it."""
        self._cursor = min(self._cursor, message.id - 1)

    def sent_other(self, mid: int) -> None:
        self._others.add(mid)

    def slot_free(self) -> bool:
        """Room for one more QoS 1 message (any kind) within the broker's Receive Maximum."""
        return len(self._alerts) + len(self._others) < self._budget

    def acknowledged(self, mid: int, ok: bool, now: float) -> Inflight | None:
        """A PUBACK: the alert it acknowledges (None for presence, camera state or a reply). A
        failure reason code schedules the alert's retry instead of delivering it."""
        entry = self._alerts.pop(mid, None)
        if entry is None:
            self._others.discard(mid)
            return None
        if not ok:
            self._rejected[entry.row_id] = now + self.retry_s
        return entry

    def retry_times(self) -> list[float]:
        return list(self._rejected.values())


