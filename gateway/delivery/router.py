"""The router: the one path of every alert after it is raised, whoever raised it.

For each batch of alert messages (`route`), in this order:

1. **Every output queues it durably** (`AlertSink.submit`: its own outbox, fsynced) before
   anything else happens. Outputs are independent: one that is down, slow or broken neither
   blocks nor loses another's alerts; each delivers from its own outbox on its own thread.
2. **The case ledger notes the event as sent** (acks and case steps are accepted only for events
   this gateway sent), and **the history records it** for the web page. If the disk is full,
   evidence gives way (`room_makers`: the oldest clips first, then the oldest pictures) to make
   room for alerts, and alerts are recorded without pictures until the disk takes writes again.
3. **Reactions run** (the PTZ linkage of sensors); a failing reaction is logged, never raised.

Nothing here raises into the caller: the analysis thread, the sensor hub and the supervisor all
call `route`, and none of them may die because a disk is full or an output misbehaves.

A full data disk (every output's outbox and the history share it): outboxes hold what they
cannot write in memory (bounded, newest kept; still delivered) and write it when space returns.
The router makes room by shedding pictures first, retries the held alerts every `tick`, reports
`disk_full` in `health()` (so /healthz, the MQTT status and /metrics show it) and raises a
`disk_full` alert that ends when the disk has taken writes again for a while.

Acknowledgements and case progress do not pass through here: they are the case ledger's
(gateway/delivery/ledger.py), which the API and the MQTT output write to directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol

from gateway.delivery.diskwatch import DiskFullWatch
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import CaseLedger
from gateway.delivery.outbox import Outbox
from gateway.delivery.reactions import Reaction
from gateway.delivery.sink import AlertSink
from gateway.delivery.storage import free_bytes, has_room
from gateway.events import AlertMessage
from gateway.workers import Workers, dead

log = logging.getLogger(__name__)

SHED_EVERY_S = 2.0
"""Pictures are shed for room at most this often while the disk stays full."""
SHED_MIN_BYTES = 1024 * 1024
REMIND_S = 300.0


class RoomMaker(Protocol):
    """Evidence that gives way to alerts on a full disk: `shed` deletes at least `min_bytes`
    (oldest first) if it can, and returns the bytes it freed."""

    def shed(self, min_bytes: int) -> int: ...


class _PicturesOf:
    """The history's evidence pictures as a `RoomMaker`."""

    def __init__(self, history: EventHistory) -> None:
        self.history = history

    def shed(self, min_bytes: int) -> int:
        return self.history.shed_pictures(min_bytes)


@dataclass(frozen=True)
class Output:
    """One configured output as the router holds it: the sink and the outbox it queues into."""

    sink: AlertSink
    outbox: Outbox


class AlertRouter:
    def __init__(
        self,
        outputs: Sequence[Output],
        history: EventHistory,
        *,
        gateway_id: str,
        ledger: CaseLedger | None = None,
        reactions: Sequence[Reaction] = (),
        disk_watch: DiskFullWatch | None = None,
        timezone: tzinfo | None = None,
        data_dir: Path | None = None,
    ) -> None:
        if not outputs:
            raise ValueError("the router needs at least one output")
        self.outputs = list(outputs)
        self.history = history
        self.gateway_id = gateway_id
        self.ledger = ledger
        self.reactions = list(reactions)
        self.disk_watch = disk_watch
        self.timezone = timezone
        self.data_dir = data_dir or history.data_dir
        self.room_makers: list[RoomMaker] = [_PicturesOf(history)]
        """What gives way on a full disk, in order (evidence clips are put first, then pictures)."""
        self._lock = threading.RLock()
        self._next_shed = 0.0
        self._logged: dict[str, float] = {}
        self._history_failures = 0

    @property
    def sinks(self) -> list[AlertSink]:
        return [out.sink for out in self.outputs]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start every output's delivery (each returns at once; a far end that is down never blocks)."""
        for out in self.outputs:
            out.sink.start()

    def stop(self) -> None:
        """End an open disk_full alert, stop every output (each flushes briefly), close the files."""
        if self.disk_watch is not None:
            self.route(self.disk_watch.close(time.monotonic(), self._now()))
        for out in self.outputs:
            try:
                out.sink.stop()
            except Exception:  # noqa: BLE001 - one output must not keep the others from stopping
                log.exception("output %s did not stop cleanly", out.sink.name)
        for out in self.outputs:
            out.outbox.close()
        self.history.close()
        if self.ledger is not None:
            self.ledger.close()

    # ------------------------------------------------------------------ alerts

    def route(self, messages: Sequence[AlertMessage]) -> None:
        """Queue alerts for every output, record them, run reactions. Never raises."""
        if not messages:
            return
        payloads = [message.payload for message in messages]
        with self._lock:
            for out in self.outputs:
                try:
                    out.sink.submit(payloads)
                except Exception as exc:  # noqa: BLE001 - one output's bug must not cost the others
                    self._log_once(f"submit:{out.sink.name}", logging.ERROR,
                                   "output %s could not queue %d alerts (%s: %s); other outputs are not "
                                   "affected", out.sink.name, len(payloads), type(exc).__name__, exc)
            if any(out.outbox.held() for out in self.outputs):
                self._make_room()
            if self.ledger is not None:
                self.ledger.note_events(messages)
            self._record(messages)
        for message in messages:
            self._react(message)
            payload = message.payload
            log.info("%s: %s [%s seq %d, event %s]", _subject(payload), payload.get("title_zh"),
                     message.state, message.seq, message.event_id)

    def _record(self, messages: Sequence[AlertMessage]) -> None:
        pictures = not self.disk_full
        for message in messages:
            try:
                self.history.record(message, pictures=pictures)
            except Exception as exc:  # noqa: BLE001 - the page's copy must never cost the alert itself
                self._history_failures += 1
                self._log_once("history", logging.ERROR, "event %s: not recorded in the web page's history (%s); "
                               "the alert itself is queued for every output (%d not recorded so far)",
                               message.event_id, exc, self._history_failures)

    def _react(self, message: AlertMessage) -> None:
        for reaction in self.reactions:
            try:
                reaction(message)
            except Exception:  # noqa: BLE001
                log.exception("event %s: reaction %s failed", message.event_id, type(reaction).__name__)

    def _make_room(self) -> None:
        """The disk did not take an alert: delete old evidence pictures, then write the held alerts."""
        now = time.monotonic()
        if now < self._next_shed:
            return
        self._next_shed = now + SHED_EVERY_S
        wanted = max(SHED_MIN_BYTES, 2 * sum(out.outbox.stats().held_bytes for out in self.outputs))
        freed = 0
        for room_maker in self.room_makers:
            if freed >= wanted:
                break
            try:
                freed += room_maker.shed(wanted - freed)
            except Exception:  # noqa: BLE001 - one store's trouble must not keep the next from making room
                log.exception("could not delete evidence to make room for alerts on the full disk")
        if freed:
            for out in self.outputs:
                out.outbox.write_held()

    # ------------------------------------------------------------------ supervision

    @property
    def disk_full(self) -> bool:
        """Some output holds alerts in memory, or the history cannot write, because the disk is full."""
        return any(out.outbox.disk_full for out in self.outputs) or self.history.disk_full

    def tick(self) -> None:
        """Once a second (the supervisor): write held alerts, raise or end the disk_full alert."""
        with self._lock:
            for out in self.outputs:
                if out.outbox.held() or out.outbox.problem is not None:
                    out.outbox.write_held()
            if any(out.outbox.held() for out in self.outputs):
                self._make_room()
            if self.history.disk_full and has_room(self.data_dir):
                self.history.disk_full = False  # it will say so again on its next write if still full
        if self.disk_watch is not None:
            self.route(self.disk_watch.observe(self.disk_full, time.monotonic(), self._now()))

    def workers(self) -> Workers:
        """Each output's delivery thread, for supervision."""
        return {f"output {sink.name}: delivery thread": sink for sink in self.sinks}

    def failures(self) -> list[str]:
        """Outputs whose delivery stopped (what the systemd watchdog and /healthz guard)."""
        return dead(self.workers())

    def health(self) -> dict[str, Any]:
        """Every output's state, the disk, the history: for the heartbeat, /healthz and /metrics."""
        outputs = {}
        for sink in self.sinks:
            try:
                state = sink.health()
            except Exception as exc:  # noqa: BLE001 - health must answer even for a broken output
                state = {"health_error": str(exc)}
            outputs[sink.name] = {"alive": sink.alive, **state}
        free = free_bytes(self.data_dir)
        return {
            "outputs": outputs,
            "disk_full": self.disk_full,
            "data_dir_free_mb": None if free is None else round(free / (1024 * 1024), 1),
            "history": self.history.stats().problem or "ok",
        }

    def queued(self) -> int:
        """Alerts not yet delivered, summed over the outputs."""
        return sum(out.outbox.depth() for out in self.outputs)

    # ------------------------------------------------------------------ helpers

    def _now(self) -> datetime:
        return datetime.now(self.timezone).astimezone(self.timezone)

    def _log_once(self, key: str, level: int, message: str, *args: Any) -> None:
        """Log a recurring failure once, then at most every REMIND_S (DEBUG in between)."""
        now = time.monotonic()
        if now - self._logged.get(key, -REMIND_S) >= REMIND_S:
            self._logged[key] = now
            log.log(level, message, *args)
        else:
            log.debug(message, *args)


def _subject(payload: dict[str, Any]) -> str:
    if payload.get("camera_id"):
        return f"camera {payload['camera_id']}"
    sensor_id = (payload.get("details") or {}).get("sensor_id")
    return f"sensor {sensor_id}" if sensor_id else "gateway"
