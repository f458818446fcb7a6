"""A durable output that sends one alert at a time: its own outbox, its own thread, its own backoff.

Outputs such as a webhook or a GB/T 28181 platform differ only in how one alert reaches the far
end (their `Transport`). Everything else is the same and lives here once:

* `submit` writes the alerts to this output's outbox (fsynced) and returns: the router never
  waits for the far end, and an outage of this output never touches another output's queue.
* One delivery thread sends the queued alerts oldest first, strictly in order (an event's
  `seq` order is the outbox's row order), each until the transport says the far end took it;
  only then is the row deleted. A refusal or a timeout (`DeliveryFailed`) waits a capped,
  jittered exponential backoff and tries the same alert again; nothing is skipped or dropped
  (the outbox's size cap is the only bound, with its eviction policy).
* A restart resends whatever is still queued; a duplicate carries the same event_id/seq.
* Every change between "delivering" and "failing" is logged once, saying what happens next;
  a failure that lasts is repeated every `REMIND_S`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from gateway.backoff import Backoff
from gateway.delivery.latency import LatencyWindow
from gateway.delivery.outbox import NewMessage, Outbox, OutboxMessage
from gateway.delivery.sink import DeliveryFailed, Transport

log = logging.getLogger(__name__)

IDLE_S = 1.0
"""Longest sleep with nothing queued (a submit wakes the thread at once)."""
REMIND_S = 300.0
STOP_GRACE_S = 3.0

Prepare = Callable[[dict[str, Any]], dict[str, Any]]


class DurableSink:
    """An `AlertSink` around a `Transport`: outbox, delivery thread, retry with backoff."""

    def __init__(
        self,
        name: str,
        outbox: Outbox,
        transport: Transport,
        *,
        backoff: Backoff | None = None,
        timeout_s: float = 10.0,
        prepare: Prepare | None = None,
    ) -> None:
        """prepare: shapes a payload before it is queued (e.g. drops the snapshot an output
        does not want), so the outbox holds exactly what will be sent."""
        self.name = name
        self.outbox = outbox
        self.transport = transport
        self.timeout_s = timeout_s
        self._backoff = backoff or Backoff()
        self._prepare = prepare
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._lock = threading.Lock()
        self._cursor = 0
        self._generation = outbox.generation
        self._latency = LatencyWindow()
        self._stats = {"delivered": 0, "failures": 0}
        self._state = "idle"
        self._last_error: str | None = None
        self._failing_since: float | None = None
        self._failure_logged: tuple[str, float] | None = None
        self._last_delivered_at: float | None = None

    # ------------------------------------------------------------------ AlertSink

    def start(self) -> None:
        if self._thread is not None:
            return
        self.transport.open()
        self._thread = threading.Thread(target=self._run, name=f"deliver-{self.name}", daemon=True)
        self._thread.start()
        if self.outbox.depth():
            log.info("output %s: %d alerts queued from before; delivering them first", self.name,
                     self.outbox.depth())

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Deliver what the far end takes within `grace_s`, then stop; the rest stays queued."""
        self._stop_deadline = time.monotonic() + grace_s
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(grace_s + 0.5)
        self.transport.close()  # ends a delivery still waiting for its far end
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1.0)
        left = self.outbox.depth()
        if left:
            log.info("output %s stopped; %d alerts stay queued for the next start", self.name, left)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.transport.alive

    def submit(self, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """Queue alert payloads in this output's outbox (one fsync for the lot), wake the sender."""
        messages = [self._new_message(self._prepare(p) if self._prepare else p) for p in payloads]
        row_ids = self.outbox.put_many(messages)
        self._wake.set()
        return row_ids

    def health(self) -> dict[str, Any]:
        stats = self.outbox.stats()
        with self._lock:
            counts = dict(self._stats)
            latency = self._latency.summary()
        return {
            "connected": self._state != "failing",
            "state": self._state,
            "queued": stats.depth,
            "queued_bytes": stats.bytes,
            "held_in_memory": stats.held,
            "oldest_undelivered_age_s": None if stats.oldest_age_s is None else round(stats.oldest_age_s, 1),
            "evictions": stats.evictions,
            "storage_problem": stats.problem,
            "disk_full": stats.disk_full,
            "last_error": self._last_error,
            "last_delivered_at": datetime.fromtimestamp(self._last_delivered_at).astimezone().isoformat(
                timespec="seconds") if self._last_delivered_at else None,
            "delivery_latency": latency,
            **counts,
            **self.transport.health(),
        }

    @staticmethod
    def _new_message(payload: dict[str, Any]) -> NewMessage:
        try:
            event_id, seq = payload["event_id"], payload["seq"]
        except KeyError as exc:
            raise ValueError(f"alert payload lacks {exc.args[0]!r}; need event_id and seq") from None
        return NewMessage("", payload, event_id, seq, str(payload.get("state", "")))

    # ------------------------------------------------------------------ the delivery thread

    def _run(self) -> None:
        while True:
            if self._stopping.is_set() and time.monotonic() >= self._stop_deadline:
                return
            message = self._next()
            if message is None:
                if self._stopping.is_set():
                    return
                self._state = "idle" if self._state != "failing" else self._state
                self._wake.wait(IDLE_S)
                self._wake.clear()
                continue
            if not self._deliver(message):
                delay = self._backoff.next_delay()
                self._log_failure(delay)
                if self._stopping.wait(delay):  # a stop ends the wait; new alerts do not
                    return

    def _next(self) -> OutboxMessage | None:
        if self.outbox.generation != self._generation:  # the file opened late: older rows appeared
            self._generation, self._cursor = self.outbox.generation, 0
        pending = self.outbox.pending(after_id=self._cursor, limit=1)
        return pending[0] if pending else None

    def _deliver(self, message: OutboxMessage) -> bool:
        try:
            payload = json.loads(message.payload)
            self.transport.deliver(payload, self.timeout_s)
        except DeliveryFailed as exc:
            self._failed(str(exc) or type(exc).__name__)
            return False
        except Exception as exc:  # the thread must outlive a bug in one transport call
            log.exception("output %s: unexpected error delivering alert %s seq %d", self.name,
                          message.event_id, message.seq)
            self._failed(f"internal error: {exc}")
            return False
        self._cursor = message.id  # a delete that fails (full disk) must not resend in a loop
        self.outbox.delete([message.id])
        now = time.time()
        with self._lock:
            self._stats["delivered"] += 1
            self._latency.add(max(0.0, now - message.created_at))
        self._last_delivered_at = now
        if self._failing_since is not None:
            log.info("output %s: delivering again after %.0f s of failures; %d alerts queued", self.name,
                     time.monotonic() - self._failing_since, self.outbox.depth())
        self._failing_since, self._failure_logged, self._last_error = None, None, None
        self._backoff.reset()
        self._state = "delivering"
        return True

    def _failed(self, reason: str) -> None:
        with self._lock:
            self._stats["failures"] += 1
        self._last_error = reason
        self._state = "failing"
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def _log_failure(self, delay: float) -> None:
        """Once per distinct reason, reminded every REMIND_S; the rest at DEBUG."""
        reason, now = self._last_error or "?", time.monotonic()
        if self._failure_logged is None or self._failure_logged[0] != reason or now - self._failure_logged[1] >= REMIND_S:
            down = now - (self._failing_since or now)
            since = f" (failing for {down:.0f} s)" if down >= 1 else ""
            log.warning("output %s: delivery failed: %s%s; retrying the same alert in %.1f s; %d alerts queued",
                        self.name, reason, since, delay, self.outbox.depth())
            self._failure_logged = (reason, now)
        else:
            log.debug("output %s: delivery failed: %s; retrying in %.1f s", self.name, reason, delay)
