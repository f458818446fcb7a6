"""Durable alert outbox: every alert is on disk before it is published, and leaves only on PUBACK.

One file because the file's rows and the messages held in memory are one queue: they share row
ids, the eviction policy and one lock.

One SQLite database per output in the data directory (`outbox.sqlite3` for MQTT) holds the
alert messages not yet acknowledged by the far end, in the order they were put (rowid order =
per-event `seq` order, because an event's messages are put in `seq` order). The output reads them
from here, sends them, and deletes a row when the far end took it (MQTT: its PUBACK). After a
restart or a reconnect everything still here is sent again; duplicates carry the same
`event_id`/`seq`, so the centre can drop them. (Which events were sent, and their
acknowledgements, are the case ledger's: gateway/delivery/ledger.py.)

Durability (why `synchronous=FULL` in WAL mode): DESIGN §4 promises that power loss loses no
    alert. With WAL + `NORMAL` a commit survives `kill -9` but a power cut can drop the last
    transactions, i.e. the alerts just put; with `FULL` each commit fsyncs the WAL before `put()`
    returns (≈0.3 ms on an SSD, a few ms on an SD card: nothing at alert rates, and off the frame
    path). Deleting delivered rows runs with `NORMAL`: a lost delete only means one more QoS 1
    duplicate (same event_id/seq, which the contract allows), and the next fsynced `put()` makes
    every earlier delete durable too. This halves the fsyncs without weakening the promise.

Size cap (`max_bytes`, from `storage.outbox_max_mb`):
    The cap counts the stored message bytes (payload + topic + a fixed per-row overhead); the file
    itself is somewhat larger (indexes, free pages, the WAL, bounded by `storage.wal_limit`).
    When a new alert would exceed it, room is made by the eviction policy of eviction.py (pictures,
    then superseded updates, then the oldest message: evidence first, alert metadata last). The
    alert being put is never refused: if it still does not fit, its own picture is shed, and if
    its metadata alone exceeds the cap it is stored anyway (the cap bounds evidence, not the newest
    alert). Every eviction is logged and counted in the `counters` table, which survives restarts.

When the disk cannot take an alert (full, or failing): `put()` never refuses an alert and never
    raises for a storage problem. Messages the file cannot take are held in memory (eviction.py),
    in order, with row ids that continue the file's, and handed to the sender by `pending()` like
    any row: the centre still gets them. They are written to the file, with the same ids, as soon
    as it takes writes again (`write_held()`, also tried before every put; new messages queue
    behind them so the order stays). A file that cannot be opened at start (a restart on a full
    disk) is opened later; `generation` then increases so a sender walking rows by id starts
    again from the oldest. `problem` and `disk_full` say what is wrong, for health and the alert.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.delivery.eviction import (
    EVICTION_KINDS,
    Eviction,
    EvictionCounts,
    HeldMessage,
    HeldMessages,
    describe_eviction,
    evict_from_file,
    human_size,
    row_size,
)
from gateway.delivery.storage import BelowFloorError, Transaction, describe, has_room, is_disk_full, open_wal
from gateway.events.payload import encode_payload, has_inline_picture, shed_picture

log = logging.getLogger(__name__)

DB_NAME = "outbox.sqlite3"
MiB = 1024 * 1024
HOLD_MAX_BYTES = 16 * MiB
"""Default memory bound for messages held while the disk cannot take them (`storage.hold_max_mb`)."""
WRITE_CHUNK = 64
"""Held messages written per transaction once the disk takes writes again (progress on a tight disk)."""
REMIND_S = 300.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    state        TEXT    NOT NULL DEFAULT '',
    camera_id    TEXT    NOT NULL DEFAULT '',
    payload      BLOB    NOT NULL,
    size         INTEGER NOT NULL,
    has_snapshot INTEGER NOT NULL DEFAULT 0,
    created_at   REAL    NOT NULL,
    UNIQUE (event_id, seq)
);
CREATE INDEX IF NOT EXISTS outbox_snapshots ON outbox (id) WHERE has_snapshot = 1;
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class OutboxError(RuntimeError):
    """The outbox database cannot be opened or written (disk full, corrupt file, permissions)."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


@dataclass(frozen=True)
class NewMessage:
    """An alert message to queue: its topic, the JSON payload, and the ids the centre dedups on."""

    topic: str
    payload: dict[str, Any]
    event_id: str
    seq: int
    state: str = ""
    replace: bool = False
    """A notice that supersedes its own still-queued predecessor with the same (event_id, seq)
    (the page's acknowledgement of an event) instead of being ignored as a duplicate."""


@dataclass(frozen=True)
class OutboxMessage:
    """One queued alert message, exactly as it will be published."""

    id: int
    topic: str
    event_id: str
    seq: int
    state: str
    payload: bytes
    created_at: float


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    bytes: int
    max_bytes: int
    oldest_age_s: float | None
    evictions: dict[str, int]
    held: int = 0
    """Of `depth`, messages held in memory because the disk could not take them."""
    held_bytes: int = 0
    problem: str | None = None
    disk_full: bool = False


class Outbox:
    """SQLite-backed queue of alert messages plus the ack records; safe to share between threads."""

    def __init__(
        self,
        path: str | Path,
        max_bytes: int = 200 * MiB,
        *,
        hold_max_bytes: int = HOLD_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.hold_max_bytes = int(hold_max_bytes)
        self._clock = clock
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._depth = self._bytes = 0
        self._counts = EvictionCounts()
        self._held = HeldMessages(self.hold_max_bytes)
        self._last_id = 0
        self.problem: str | None = None
        """Why the file cannot take writes right now (None when it can)."""
        self.disk_full = False
        self.generation = 0
        """Increases when the file is opened late: rows older than the held ones may appear."""
        self._problem_logged_at = 0.0
        try:
            self._attach(self._open(self.path))
        except OutboxError as exc:
            if not exc.disk_full:
                raise
            # Held ids must stay above every id in the file we cannot read yet: a millisecond
            # clock is far above any row count the file can have reached.
            self._last_id = int(self._clock() * 1000)
            self._set_problem(exc.__cause__ or exc)
        if self._depth:
            log.info("outbox %s holds %d undelivered alert messages (%s); they will be sent first",
                     self.path, self._depth, human_size(self._bytes))

    @classmethod
    def in_dir(cls, data_dir: str | Path, max_mb: float = 200.0, **kwargs: Any) -> Outbox:
        """The gateway's outbox: `<data_dir>/outbox.sqlite3`, capped at `storage.outbox_max_mb`."""
        return cls(Path(data_dir) / DB_NAME, int(max_mb * MiB), **kwargs)

    # ------------------------------------------------------------------ opening

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            return open_wal(path, SCHEMA, synchronous="FULL")
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc, path):
                raise OutboxError(f"cannot open the alert outbox {path}: {describe(exc, path)}",
                                  disk_full=True) from exc
            if isinstance(exc, OSError):
                raise OutboxError(f"cannot create the alert outbox {path}: {exc}") from exc
            raise OutboxError(
                f"cannot open the alert outbox {path}: {exc}. Queued alerts are in this file; "
                "move it aside (do not delete it) if it is damaged, and restart."
            ) from exc

    def _attach(self, db: sqlite3.Connection) -> None:
        """Start using an opened file: its counts, its counters, ids above its own."""
        self._db = db
        self._depth, self._bytes = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._counts.load(db)
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        self._last_id = max(self._last_id, row[0] if row else 0)

    def close(self) -> None:
        with self._lock:
            if self._held:
                self._write_held_locked(self._clock(), [])
            if self._held:
                log.error("outbox %s: %d alert messages held in memory could not be written (%s) and are "
                          "lost with this stop", self.path, len(self._held), self.problem)
            if self._db is not None:
                self._db.close()

    # ------------------------------------------------------------------ transactions

    def _transaction(self, durable: bool = True) -> Transaction:
        """Durable transactions add alerts, the others delete: both keep the disk's floor."""
        assert self._db is not None
        return Transaction(self._db, durable, room=self.path)

    # ------------------------------------------------------------------ put

    def put(self, topic: str, payload: dict[str, Any], event_id: str, seq: int, state: str = "") -> int:
        """Store one alert message durably (fsynced) and return its row id.

        Putting the same (event_id, seq) again while it is still queued is a no-op that returns
        the existing row: a producer that retries after a crash cannot create two messages.
        A message the disk cannot take is held in memory (see the module docstring).
        """
        return self.put_many([NewMessage(topic, payload, event_id, seq, state)])[0]

    def put_many(self, messages: Sequence[NewMessage]) -> list[int]:
        """Store several alert messages in one transaction (one fsync); row ids in the same order.

        For producers that emit a burst at once (several events ending in one tick): the cost of a
        put is dominated by the fsync, so a batch of n costs about as much as one message.
        Raises ValueError for a message without valid ids or with a payload that is not JSON.
        """
        for message in messages:
            _check_ids(message.event_id, message.seq)
        encoded = [(m, encode_payload(m.payload)) for m in messages]  # bad JSON fails before anything
        now = self._clock()
        evictions: list[Eviction] = []
        with self._lock:
            if self._held or self._db is None:
                self._write_held_locked(now, evictions)
            row_ids = None
            if not self._held and self._db is not None:
                try:
                    row_ids = self._put_locked(encoded, now, evictions)
                    self._clear_problem()
                except (sqlite3.Error, BelowFloorError) as exc:
                    self._resync()
                    self._set_problem(exc)
            if row_ids is None:
                row_ids = [self._hold(message, body, now, evictions) for message, body in encoded]
        for eviction in evictions:
            self._log_eviction(eviction)
        return row_ids

    def _put_locked(self, encoded: list[tuple[NewMessage, bytes]], now: float,
                    evictions: list[Eviction]) -> list[int]:
        row_ids: list[int] = []
        made: list[Eviction] = []
        with self._transaction() as db:
            for message, body in encoded:
                row_ids.append(self._insert(message, body, now, made))
            self._counts.save(db, made)
        self._counts.add(made)
        evictions.extend(made)
        return row_ids

    def _insert(self, m: NewMessage, body: bytes, now: float, evictions: list[Eviction]) -> int:
        assert self._db is not None
        existing = self._db.execute("SELECT id, size FROM outbox WHERE event_id=? AND seq=?",
                                    (m.event_id, m.seq)).fetchone()
        if existing and not m.replace:
            log.debug("alert %s/%d is already queued (row %d); not stored twice", m.event_id, m.seq, existing[0])
            return int(existing[0])
        if existing:
            self._db.execute("DELETE FROM outbox WHERE id=?", (existing[0],))
            self._depth -= 1
            self._bytes -= existing[1]
        camera_id = str(m.payload.get("camera_id") or "")
        has_snapshot = has_inline_picture(m.payload)
        size = row_size(m.topic, body)
        evictions.extend(self._make_room(size))
        if self._bytes + size > self.max_bytes and has_snapshot:
            slim = encode_payload(shed_picture(m.payload))
            evictions.append(Eviction("snapshot", m.event_id, m.seq, m.state, camera_id, len(body) - len(slim), now))
            body, size, has_snapshot = slim, row_size(m.topic, slim), False
        return self._insert_row(None, m.topic, m.event_id, m.seq, m.state, camera_id, body, size, has_snapshot, now)

    def _insert_row(self, row_id: int | None, topic: str, event_id: str, seq: int, state: str, camera_id: str,
                    body: bytes, size: int, has_snapshot: bool, created_at: float) -> int:
        """One row (with the id it was held under, if any).

        Ids are handed out here, not by AUTOINCREMENT: a held message that was delivered from memory
        never reaches the table, and its id must still never be given to a later row (a sender
        that walks rows by id is already past it).
        """
        assert self._db is not None
        if row_id is None:
            row_id = self._last_id + 1
        cursor = self._db.execute(
            "INSERT INTO outbox (id, topic, event_id, seq, state, camera_id, payload, size, has_snapshot, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row_id, topic, event_id, seq, state, camera_id, body, size, int(has_snapshot), created_at),
        )
        self._depth += 1
        self._bytes += size
        assert cursor.lastrowid is not None, "an INSERT sets lastrowid"
        new_id = cursor.lastrowid
        self._last_id = max(self._last_id, new_id)
        return new_id

    # ------------------------------------------------------------------ held in memory

    def _hold(self, m: NewMessage, body: bytes, now: float, evictions: list[Eviction]) -> int:
        """Keep one message in memory (the file cannot take it); returns its row id."""
        existing = self._queued_id(m.event_id, m.seq)
        if existing is not None:
            if not m.replace:
                return existing
            self._forget(existing)
        self._last_id += 1
        held = HeldMessage(self._last_id, m.topic, m.event_id, m.seq, m.state, str(m.payload.get("camera_id") or ""),
                           body, row_size(m.topic, body), has_inline_picture(m.payload), now)
        made = self._held.add(held)
        self._counts.add(made, saved=False)
        evictions.extend(made)
        return held.id

    def _queued_id(self, event_id: str, seq: int) -> int | None:
        held = self._held.find(event_id, seq)
        if held is not None:
            return held.id
        if self._db is not None:
            try:
                row = self._db.execute("SELECT id FROM outbox WHERE event_id=? AND seq=?", (event_id, seq)).fetchone()
            except sqlite3.Error:
                return None
            return int(row[0]) if row else None
        return None

    def _forget(self, row_id: int) -> None:
        if self._held.remove(row_id) is None:
            self._delete_rows([row_id])

    def write_held(self) -> bool:
        """Write the messages held in memory to the file if it takes them now (opening it first
        if it could not be opened); True when nothing is held any more."""
        evictions: list[Eviction] = []
        with self._lock:
            done = self._write_held_locked(self._clock(), evictions)
        for eviction in evictions:
            self._log_eviction(eviction)
        return done

    def _write_held_locked(self, now: float, evictions: list[Eviction]) -> bool:
        if self._db is None:
            try:
                db = self._open(self.path)
            except OutboxError as exc:
                self._set_problem(exc.__cause__ or exc)
                return False
            self._attach(db)
            self.generation += 1
            log.warning("outbox %s: opened at last (%d undelivered messages in the file, %d held in memory)",
                        self.path, self._depth, len(self._held))
        written = 0
        while self._held:
            chunk = list(self._held)[:WRITE_CHUNK]
            made: list[Eviction] = []
            try:
                with self._transaction() as db:
                    for held in chunk:
                        self._write_one(held, made)
                    self._counts.save(db, made, with_unsaved=True)
            except (sqlite3.Error, BelowFloorError) as exc:
                self._resync()
                self._set_problem(exc)
                return False
            for held in chunk:
                self._held.remove(held.id)
            self._counts.add(made)
            self._counts.unsaved_written()
            evictions.extend(made)
            written += len(chunk)
        if written:
            log.warning("outbox %s: the disk takes writes again; wrote the %d alert messages held in memory",
                        self.path, written)
        elif self.disk_full and not has_room(self.path):
            return True  # nothing to write, but no sign yet that the disk has room again
        self._clear_problem()
        return True

    def _write_one(self, held: HeldMessage, evictions: list[Eviction]) -> None:
        assert self._db is not None
        existing = self._db.execute("SELECT id FROM outbox WHERE event_id=? AND seq=?",
                                    (held.event_id, held.seq)).fetchone()
        if existing:  # queued in the file before it could be opened: the file's row is the one
            return
        evictions.extend(self._make_room(held.size))
        body, size, has_snapshot = held.body, held.size, held.has_snapshot
        if self._bytes + size > self.max_bytes and has_snapshot:
            body = encode_payload(shed_picture(json.loads(body)))
            size, has_snapshot = row_size(held.topic, body), False
            evictions.append(replace(held.eviction("snapshot", held.size - size), in_memory=False))
        self._insert_row(held.id, held.topic, held.event_id, held.seq, held.state, held.camera_id, body, size,
                         has_snapshot, held.created_at)

    def _set_problem(self, exc: BaseException) -> None:
        """The file cannot take writes: say so once (and every REMIND_S while it lasts)."""
        problem = describe(exc, self.path)
        self.disk_full = is_disk_full(exc, self.path)
        now = time.monotonic()
        if problem != self.problem or now - self._problem_logged_at >= REMIND_S:
            log.error("outbox %s cannot take alerts: %s; keeping them in memory (up to %s; %d held) and "
                      "writing them as soon as it can; they are still delivered meanwhile",
                      self.path, problem, human_size(self.hold_max_bytes), len(self._held))
            self._problem_logged_at = now
        self.problem = problem

    def _clear_problem(self) -> None:
        if self.problem is not None:
            log.warning("outbox %s takes writes again (was: %s)", self.path, self.problem)
        self.problem, self.disk_full = None, False

    # ------------------------------------------------------------------ eviction

    def _make_room(self, needed: int) -> list[Eviction]:
        """Evict (inside the caller's transaction) until `needed` more bytes fit, or nothing is left."""
        assert self._db is not None
        evictions: list[Eviction] = []
        for kind in EVICTION_KINDS:
            while self._bytes + needed > self.max_bytes:
                eviction = evict_from_file(self._db, kind)
                if eviction is None:
                    break
                self._bytes -= eviction.freed
                self._depth -= kind != "snapshot"  # a shed picture leaves its message queued
                evictions.append(eviction)
        return evictions

    def _log_eviction(self, eviction: Eviction) -> None:
        where = (f"alerts held in memory over their {human_size(self.hold_max_bytes)} bound ({self.problem})"
                 if eviction.in_memory else f"outbox over its {human_size(self.max_bytes)} cap")
        lost, line = describe_eviction(eviction, self._counts.totals[eviction.kind], where,
                                       max(0.0, self._clock() - eviction.created_at))
        log.log(logging.ERROR if lost else logging.WARNING, "%s", line)

    # ------------------------------------------------------------------ delivery side

    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Queued messages with row id > after_id, oldest first (held ones included)."""
        with self._lock:
            rows = []
            if self._db is not None:
                rows = [OutboxMessage(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in self._db.execute(
                    "SELECT id, topic, event_id, seq, state, payload, created_at FROM outbox"
                    " WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit),
                )]
            held = [_message(h) for h in self._held if h.id > after_id][:limit]
        if not held:
            return rows
        return sorted(rows + held, key=lambda message: message.id)[:limit]

    def get(self, row_id: int) -> OutboxMessage | None:
        with self._lock:
            held = self._held.get(row_id)
            if held is not None:
                return _message(held)
            if self._db is None:
                return None
            r = self._db.execute(
                "SELECT id, topic, event_id, seq, state, payload, created_at FROM outbox WHERE id=?", (row_id,)
            ).fetchone()
        return OutboxMessage(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) if r else None

    def delete(self, row_ids: Iterable[int]) -> int:
        """Remove delivered messages (PUBACK received). Not fsynced: see the module docstring."""
        ids = list(row_ids)
        if not ids:
            return 0
        with self._lock:
            in_file = [row_id for row_id in ids if row_id not in self._held]
            for row_id in (row_id for row_id in ids if row_id in self._held):
                self._held.remove(row_id)
            return len(ids) - len(in_file) + self._delete_rows(in_file)

    def _delete_rows(self, ids: list[int]) -> int:
        if not ids or self._db is None:
            return 0
        try:
            removed, freed = 0, 0
            with self._transaction(durable=False):
                for chunk in _chunks(ids, 500):
                    marks = ",".join("?" * len(chunk))
                    removed_now, freed_now = self._db.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE id IN ({marks})", chunk
                    ).fetchone()
                    self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                    removed, freed = removed + removed_now, freed + freed_now
            self._depth -= removed
            self._bytes -= freed
            return removed
        except sqlite3.Error as exc:
            self._resync()
            if is_disk_full(exc, self.path):  # said once (see _set_problem), not once per delivery
                self._set_problem(exc)
                log.debug("cannot remove %d delivered alerts from the outbox %s (disk full); they will be sent "
                          "again after a restart", len(ids), self.path)
            else:
                log.error("cannot remove %d delivered alerts from the outbox %s: %s; they will be sent again",
                          len(ids), self.path, describe(exc, self.path))
            return 0

    # ------------------------------------------------------------------ state

    def depth(self) -> int:
        """Undelivered messages: in the file plus held in memory."""
        return self._depth + len(self._held)

    def size_bytes(self) -> int:
        return self._bytes + self._held.bytes

    def oldest_age_s(self, now: float | None = None) -> float | None:
        """Age of the oldest undelivered message, or None when the outbox is empty."""
        with self._lock:
            first = self._held.oldest_created_at()
            oldest = [first] if first is not None else []
            if self._db is not None:
                row = self._db.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
                oldest += [row[0]] if row else []
        if not oldest:
            return None
        return max(0.0, (self._clock() if now is None else now) - min(oldest))

    def evictions(self) -> dict[str, int]:
        return dict(self._counts.totals)

    def held(self) -> int:
        """Messages held in memory because the file cannot take them."""
        return len(self._held)

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(self.depth(), self.size_bytes(), self.max_bytes, self.oldest_age_s(),
                               self.evictions(), len(self._held), self._held.bytes, self.problem, self.disk_full)

    # ------------------------------------------------------------------ housekeeping

    def _resync(self) -> None:
        """Re-read depth and size after a failed transaction so the in-memory counters stay true."""
        if self._db is None:
            return
        try:
            self._depth, self._bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
            ).fetchone()
        except sqlite3.Error:
            pass


def _check_ids(event_id: object, seq: object) -> None:
    if not isinstance(event_id, str) or not event_id:
        raise ValueError(f"event_id must be a non-empty string, got {event_id!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"seq must be a non-negative integer, got {seq!r}")


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _message(held: HeldMessage) -> OutboxMessage:
    return OutboxMessage(held.id, held.topic, held.event_id, held.seq, held.state, held.body, held.created_at)
