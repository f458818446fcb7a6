"""The outbox's eviction policy, for its file and for what it keeps in memory while the disk
cannot take alerts.

When the data disk is full (or failing) an outbox never refuses an alert: the message is held here,
in id order, still delivered from memory, and written to the file when the disk takes writes
again (outbox.py).

The eviction policy, the same for the outbox file (over `storage.outbox_max_mb`) and for the
messages held here (over `storage.hold_max_mb`) — evidence first, alert metadata last:

1. `snapshot`: shed the inline picture of a queued message, `update`/`end` messages before
   `start` messages, oldest first. The rest of the payload is kept; `snapshot` becomes null and
   `details.snapshot_evicted: true` is set so the centre knows why the picture is missing.
2. `superseded_update`: drop whole `update` messages for which a later message of the same event
   is still queued (the later one carries the newer count), oldest first.
3. `message`: drop the oldest queued message (never the one just added). Only reached when
   alert metadata alone fills the bound.

Every eviction, in memory or in the file, is an `Eviction` record, told to the operator by
`describe_eviction` once its transaction is done.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.events.payload import encode_payload, shed_picture

EVICTION_KINDS = ("snapshot", "superseded_update", "message")
ROW_OVERHEAD = 128
"""Bytes counted per message on top of payload and topic (ids, timestamps, index entries)."""
MiB = 1024 * 1024


def row_size(topic: str, body: bytes) -> int:
    """What one queued message counts against its outbox's cap."""
    return len(body) + len(topic) + ROW_OVERHEAD


def human_size(size: int) -> str:
    return f"{size / MiB:.1f} MB" if size >= MiB else f"{size / 1024:.0f} kB"


@dataclass(frozen=True)
class Eviction:
    """What one eviction removed; logged after the transaction commits."""

    kind: str
    event_id: str
    seq: int
    state: str
    camera_id: str
    freed: int
    created_at: float
    in_memory: bool = False
    """Evicted from the messages held in memory (the disk was full), not from the file."""


def describe_eviction(eviction: Eviction, total: int, where: str, age_s: float) -> tuple[bool, str]:
    """(is it an alert lost rather than a picture or a superseded update?, the log line)."""
    what = (f"event {eviction.event_id} seq {eviction.seq} ({eviction.state or 'message'}, camera "
            f"{eviction.camera_id or '?'}, queued {age_s:.0f} s)")
    if eviction.kind == "snapshot":
        return False, (f"{where}: dropped the snapshot of {what}, freed {eviction.freed // 1024} kB; the alert "
                       f"itself is kept ({total} snapshots shed so far)")
    if eviction.kind == "superseded_update":
        return False, (f"{where}: dropped {what}; a later message of the same event is still queued ({total} "
                       "superseded updates dropped so far)")
    if eviction.in_memory:
        return True, (f"{where}: DROPPED {what} ({total} alert messages dropped so far); free space on the data "
                      "disk, or raise storage.hold_max_mb")
    return True, (f"{where} with alert metadata only: DROPPED {what} ({total} alert messages dropped so far); the "
                  "far end has been unreachable too long or the cap is too small (storage.outbox_max_mb)")


class EvictionCounts:
    """How many evictions of each kind an outbox made, kept across restarts in its file's
    `counters` table; those made while the file could not be written are saved once it can."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(EVICTION_KINDS, 0)
        self._unsaved = dict.fromkeys(EVICTION_KINDS, 0)

    def load(self, db: sqlite3.Connection) -> None:
        """The file is open: its stored totals, plus what was counted before it could be read."""
        stored = dict.fromkeys(EVICTION_KINDS, 0)
        for name, value in db.execute("SELECT name, value FROM counters"):
            if name.startswith("evicted_") and name[8:] in stored:
                stored[name[8:]] = value
        self.totals = {kind: stored[kind] + self._unsaved[kind] for kind in EVICTION_KINDS}

    def add(self, evictions: list[Eviction], *, saved: bool = True) -> None:
        """Evictions that happened (after their transaction committed, or in memory: not saved)."""
        for eviction in evictions:
            self.totals[eviction.kind] += 1
            if not saved:
                self._unsaved[eviction.kind] += 1

    def save(self, db: sqlite3.Connection, evictions: list[Eviction], *, with_unsaved: bool = False) -> None:
        """Add `evictions` (and the unsaved ones) to the `counters` table, in the caller's transaction."""
        counts = dict(self._unsaved) if with_unsaved else dict.fromkeys(EVICTION_KINDS, 0)
        for eviction in evictions:
            counts[eviction.kind] += 1
        for kind, count in counts.items():
            if count:
                db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name)"
                           " DO UPDATE SET value = value + excluded.value", (f"evicted_{kind}", count))

    def unsaved_written(self) -> None:
        self._unsaved = dict.fromkeys(EVICTION_KINDS, 0)


def evict_from_file(db: sqlite3.Connection, kind: str) -> Eviction | None:
    """One eviction of `kind` in an outbox file, inside the caller's transaction (None: nothing of
    that kind is left). `freed` is what the cap gains; only `snapshot` keeps the message."""
    if kind == "snapshot":
        row = db.execute("SELECT id, topic, event_id, seq, state, camera_id, payload, size, created_at FROM outbox"
                         " WHERE has_snapshot = 1 ORDER BY state = 'start', id LIMIT 1").fetchone()
        if row is None:
            return None
        row_id, topic, event_id, seq, state, camera_id, body, size, created_at = row
        slim = encode_payload(shed_picture(json.loads(body)))
        db.execute("UPDATE outbox SET payload=?, size=?, has_snapshot=0 WHERE id=?",
                   (slim, row_size(topic, slim), row_id))
        return Eviction("snapshot", event_id, seq, state, camera_id, size - row_size(topic, slim), created_at)
    where = ("WHERE state = 'update' AND EXISTS (SELECT 1 FROM outbox AS n WHERE n.event_id = o.event_id"
             " AND n.seq > o.seq)") if kind == "superseded_update" else ""
    row = db.execute(f"SELECT id, event_id, seq, state, camera_id, size, created_at FROM outbox AS o {where}"
                     " ORDER BY id LIMIT 1").fetchone()
    if row is None:
        return None
    row_id, event_id, seq, state, camera_id, size, created_at = row
    db.execute("DELETE FROM outbox WHERE id=?", (row_id,))
    return Eviction(kind, event_id, seq, state, camera_id, size, created_at)


@dataclass
class HeldMessage:
    """A message the disk could not take, kept in memory until it can."""

    id: int
    topic: str
    event_id: str
    seq: int
    state: str
    camera_id: str
    body: bytes
    size: int
    has_snapshot: bool
    created_at: float

    def eviction(self, kind: str, freed: int) -> Eviction:
        return Eviction(kind, self.event_id, self.seq, self.state, self.camera_id, freed, self.created_at, True)


class HeldMessages:
    """Held messages in id order, bounded by `max_bytes` (the caller holds the outbox's lock)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._by_id: dict[int, HeldMessage] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, row_id: int) -> bool:
        return row_id in self._by_id

    def __iter__(self) -> Iterator[HeldMessage]:
        return iter(list(self._by_id.values()))

    def get(self, row_id: int) -> HeldMessage | None:
        return self._by_id.get(row_id)

    def find(self, event_id: str, seq: int) -> HeldMessage | None:
        return next((held for held in self._by_id.values() if held.event_id == event_id and held.seq == seq), None)

    def add(self, held: HeldMessage) -> list[Eviction]:
        """Hold one more message; returns what had to go to stay within `max_bytes`."""
        self._by_id[held.id] = held
        self.bytes += held.size
        return self._trim(keep=held.id)

    def remove(self, row_id: int) -> HeldMessage | None:
        held = self._by_id.pop(row_id, None)
        if held is not None:
            self.bytes -= held.size
        return held

    def oldest_created_at(self) -> float | None:
        first = next(iter(self._by_id.values()), None)
        return first.created_at if first is not None else None

    def _trim(self, keep: int) -> list[Eviction]:
        made: list[Eviction] = []
        while self.bytes > self.max_bytes:
            with_picture = sorted((h for h in self._by_id.values() if h.has_snapshot),
                                  key=lambda h: (h.state == "start", h.id))
            if with_picture:
                made.append(self._shed_picture(with_picture[0]))
                continue
            later = {h.event_id: h.seq for h in self._by_id.values()}
            superseded = next((h for h in self._by_id.values() if h.state == "update" and later[h.event_id] > h.seq),
                              None)
            oldest = next((h for h in self._by_id.values() if h.id != keep), None)
            victim = superseded or oldest
            if victim is None:
                break
            self.remove(victim.id)
            made.append(victim.eviction("superseded_update" if victim is superseded else "message", victim.size))
        return made

    def _shed_picture(self, held: HeldMessage) -> Eviction:
        slim = encode_payload(shed_picture(json.loads(held.body)))
        new_size = row_size(held.topic, slim)
        freed = held.size - new_size
        held.body, held.size, held.has_snapshot = slim, new_size, False
        self.bytes -= freed
        return held.eviction("snapshot", freed)
