"""The gateway's own record of alerts, for the web API and the duty-officer page.

One file because the SQLite rows and the picture files are one store: every change updates both
under one lock and one revision number, and the picture bounds act row by row.

The outbox forgets a message once the broker has it; the duty officer still needs to see the
alert, its picture and who acknowledged it. `EventHistory` keeps one row per event in its own
SQLite file (`<data_dir>/history.sqlite3`), updated by every message of the event (its
`gateway.events.record.EventSummary`: state, count, peak, updated/ended, ...), and the evidence
pictures as files under `<data_dir>/snapshots/` (pictures.py: the start picture and the latest
peak picture of each event).

Every change bumps a global revision number (`rev`): the API streams changes after a given
revision (server-sent events resume with `Last-Event-ID`), and listeners registered with
`subscribe` hear about each change as it happens.

Bounds (DESIGN §4: evidence goes first, alert metadata stays):
* `snapshot_max_mb`: when the picture files exceed it, the pictures of the events seen least
  recently are deleted (peak picture and start picture) until they fit; the row stays, with
  `snapshot_evicted` set.
* `snapshot_retention_days`: pictures of events not updated for that long are deleted, rows stay.
* `max_events`: beyond this many rows the oldest rows go too (with any pictures left).

Picture file names are built only from validated uuids (`is_event_id`), never from raw input.
Acknowledgements and case steps live in the case ledger (gateway/delivery/ledger.py); it mirrors
the latest ack here (`note_ack`) so the list can filter on it, and a case step bumps the event's
revision (`touch`), so an open page hears about both at once.

When the disk is full the history gives way to the alerts (the router records without pictures,
and asks `shed_pictures` for room before an alert would have to wait in memory). A history that
cannot be opened at all (`from_config`) is kept in memory instead, so the gateway still starts
and the page shows the alerts of this run; `problem` says so.
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from gateway.delivery.pictures import PictureFiles, PictureKind, SnapshotKind
from gateway.delivery.storage import BelowFloorError, describe, ensure_room, is_disk_full, open_wal
from gateway.events.lifecycle import is_event_id
from gateway.events.payload import inline_picture, without_picture_data
from gateway.events.record import EventPage, EventRecord, EventSummary, HistoryAck

log = logging.getLogger(__name__)

DB_NAME = "history.sqlite3"
SNAPSHOT_DIR = "snapshots"
MiB = 1024 * 1024
STATE_FILTERS = ("start", "update", "end", "active")
"""`active` = not ended (start or update)."""
CLEANUP_EVERY_S = 600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id         TEXT PRIMARY KEY,
    rev              INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    state            TEXT NOT NULL,
    type             TEXT NOT NULL,
    severity         INTEGER NOT NULL DEFAULT 2,
    title_zh         TEXT NOT NULL DEFAULT '',
    camera_id        TEXT NOT NULL DEFAULT '',
    camera_name      TEXT NOT NULL DEFAULT '',
    grid_id          TEXT NOT NULL DEFAULT '',
    address          TEXT NOT NULL DEFAULT '',
    lat              REAL,
    lon              REAL,
    zone_id          TEXT,
    zone_name        TEXT,
    rule_id          TEXT,
    count            INTEGER,
    peak_count       INTEGER,
    density_per_m2   REAL,
    started_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    ended_at         TEXT,
    started_ts       REAL NOT NULL,
    updated_ts       REAL NOT NULL,
    first_seen       REAL NOT NULL,
    last_seen        REAL NOT NULL,
    payload          TEXT NOT NULL,
    snap_bytes       INTEGER NOT NULL DEFAULT 0,
    peak_bytes       INTEGER NOT NULL DEFAULT 0,
    snapshot_evicted INTEGER NOT NULL DEFAULT 0,
    ack_by           TEXT,
    ack_case_id      TEXT,
    ack_at           REAL,
    ack_note         TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS events_rev ON events (rev);
CREATE INDEX IF NOT EXISTS events_started ON events (started_ts DESC, event_id);
CREATE INDEX IF NOT EXISTS events_camera ON events (camera_id, started_ts DESC);
CREATE INDEX IF NOT EXISTS events_last_seen ON events (last_seen);
"""

SUMMARY = tuple(EventSummary.model_fields)
"""The event's own facts: one column each, named as the summary's fields."""
BOOKKEEPING = ("rev", "started_ts", "updated_ts", "first_seen", "last_seen", "snap_bytes", "peak_bytes",
               "snapshot_evicted", "ack_by", "ack_case_id", "ack_at", "ack_note")
COLUMNS = (*SUMMARY, *BOOKKEEPING)
SELECT = "SELECT " + ", ".join(COLUMNS)
WRITTEN = (*SUMMARY, "rev", "started_ts", "updated_ts", "payload", "last_seen", "snap_bytes", "peak_bytes")
"""What every message writes (a new row also sets first_seen)."""


class HistoryError(RuntimeError):
    """The history database cannot be opened or written."""


@dataclass(frozen=True)
class HistoryStats:
    events: int
    snapshot_files: int
    snapshot_bytes: int
    max_bytes: int
    snapshots_evicted: int
    rev: int
    problem: str | None = None
    """Why the history is not (fully) on disk right now (kept in memory, disk full); None when fine."""


ChangeKind = Literal["new", "update", "ack", "case"]
"""What changed: a new event, a message of it, its acknowledgement, its case at the centre."""
Listener = Callable[[EventRecord, str], None]


class EventHistory:
    """SQLite-backed event list plus picture files; safe to share between threads."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        snapshot_max_mb: float = 500.0,
        snapshot_retention_days: float = 30.0,
        max_events: int = 100_000,
        clock: Callable[[], float] = time.time,
        in_memory: bool = False,
        problem: str | None = None,
    ) -> None:
        """in_memory: keep events in memory only, without pictures (the data disk cannot be used);
        `problem` then says why, for health."""
        self.data_dir = Path(data_dir)
        self.snapshot_dir = self.data_dir / SNAPSHOT_DIR
        self.pictures: PictureFiles | None = None
        """The evidence picture files (None when the history is kept in memory, without pictures)."""
        self.path = self.data_dir / DB_NAME
        self.max_bytes = int(snapshot_max_mb * MiB)
        self.retention_s = snapshot_retention_days * 86400.0
        self.max_events = int(max_events)
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._evicted = 0
        self.in_memory = in_memory
        self.problem = problem
        """Why the history is not (fully) on disk right now; None when it is."""
        self.disk_full = False
        """The last write failed because the data disk is full."""
        if in_memory:
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self._db.executescript(SCHEMA)
        else:
            try:
                self.pictures = PictureFiles(self.snapshot_dir)
            except OSError as exc:
                raise HistoryError(f"cannot create the snapshot folder {self.snapshot_dir}: "
                                   f"{describe(exc, self.snapshot_dir)}") from exc
            self._db = self._open(self.path)
        self._rev, self._bytes, self._events = self._db.execute(
            "SELECT COALESCE(MAX(rev), 0), COALESCE(SUM(snap_bytes + peak_bytes), 0), COUNT(*) FROM events"
        ).fetchone()
        self._remove_orphans()
        self._next_cleanup = 0.0
        self.cleanup()

    @classmethod
    def from_config(cls, data_dir: str | Path, storage: Any | None = None, **kwargs: Any) -> EventHistory:
        """The gateway's history in `data_dir`, bounded by a `StorageSection` (or the defaults).

        A history that cannot be opened must not stop the gateway (it only feeds the page): it is
        then kept in memory for this run, with an ERROR saying why.
        """
        if storage is not None:
            kwargs.setdefault("snapshot_max_mb", storage.snapshot_max_mb)
            kwargs.setdefault("snapshot_retention_days", storage.snapshot_retention_days)
        try:
            return cls(data_dir, **kwargs)
        except HistoryError as exc:
            log.error("%s; the web page shows this run's alerts only (kept in memory, without pictures) "
                      "until the gateway restarts with the history readable", exc)
            return cls(data_dir, **kwargs, in_memory=True, problem=f"kept in memory: {exc}")

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            return open_wal(path, SCHEMA, synchronous="NORMAL")
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc, path):
                raise HistoryError(f"cannot open the alert history {path}: {describe(exc, path)}") from exc
            raise HistoryError(
                f"cannot open the alert history {path}: {exc}. It only feeds the web page (queued alerts "
                "are in the outbox): move the file aside and restart to begin a new history."
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ listeners

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(record, kind)` after every change (kind: new|update|ack); returns unsubscribe.

        Listeners run on the recording thread: they must be quick and must not block.
        """
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, record: EventRecord, kind: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(record, kind)
            except Exception:
                log.exception("history listener failed for event %s", record.event_id)

    # ------------------------------------------------------------------ recording

    def record(self, message: Any, *, pictures: bool = True) -> EventRecord | None:
        """Fold one `AlertMessage` into its event's row; returns the updated record.

        Duplicates and out-of-order messages (seq not above the stored one) change nothing and
        return None. A picture (the message's `snapshot_jpeg`, or the payload's inline base64)
        becomes the start picture if the event has none yet, else the latest peak picture;
        `pictures=False` (the disk is full) keeps the row without storing the picture.
        """
        payload = message.payload
        event_id = payload.get("event_id")
        if not is_event_id(event_id):
            raise ValueError(f"alert has no valid event_id: {event_id!r}")
        seq = payload.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"alert {event_id} has no valid seq: {seq!r}")
        jpeg = (getattr(message, "snapshot_jpeg", None) or inline_picture(payload)) \
            if pictures and self.pictures is not None else None
        summary = EventSummary.from_payload(payload)
        now = self._clock()
        with self._lock:
            row = self._db.execute("SELECT seq, snap_bytes, peak_bytes FROM events WHERE event_id=?",
                                   (event_id,)).fetchone()
            if row is not None and seq <= row[0]:
                return None
            snap_bytes, peak_bytes = (row[1], row[2]) if row else (0, 0)
            if jpeg:
                kind: PictureKind = "start" if not snap_bytes else "peak"
                written = self._write_picture(event_id, kind, jpeg)
                if written:
                    if kind == "start":
                        self._bytes += written - snap_bytes
                        snap_bytes = written
                    else:
                        self._bytes += written - peak_bytes
                        peak_bytes = written
            self._rev += 1
            updated_ts = summary.updated_epoch(default=now)
            stored = json.dumps(without_picture_data(payload), ensure_ascii=False, separators=(",", ":"), default=str)
            values = (*summary.model_dump().values(), self._rev, summary.started_epoch(default=updated_ts), updated_ts,
                      stored, now, snap_bytes, peak_bytes)
            try:
                if not self.in_memory:
                    ensure_room(self.path, len(stored))
                if row is None:
                    self._db.execute(f"INSERT INTO events ({', '.join(WRITTEN)}, first_seen)"
                                     f" VALUES ({', '.join('?' * (len(WRITTEN) + 1))})", (*values, now))
                    self._events += 1
                else:
                    assignments = ", ".join(f"{column}=?" for column in WRITTEN)
                    self._db.execute(f"UPDATE events SET {assignments} WHERE event_id=?", (*values, event_id))
            except (sqlite3.Error, BelowFloorError) as exc:
                self._resync()
                self.disk_full = is_disk_full(exc, self.path)
                raise HistoryError(f"cannot record alert {event_id} in {self.path}: "
                                   f"{describe(exc, self.path)}") from exc
            self.disk_full = False
            if self._bytes > self.max_bytes:
                self._make_room(keep=event_id)
            if row is None and self._events > self.max_events:
                self._drop_oldest_rows(self._events - self.max_events)
            if now >= self._next_cleanup:
                self.cleanup()
            record = self._get_locked(event_id)
        if record is not None:
            self._notify(record, "new" if row is None else "update")
        return record

    def note_ack(self, ack: Any, note: str | None = None) -> EventRecord | None:
        """Mirror the ledger's latest `AckRecord` (event_id, case_id, by, received_at) onto the
        event's row; returns the updated record, or None if the history has no such event."""
        if not is_event_id(ack.event_id):
            return None
        with self._lock:
            self._rev += 1
            cursor = self._db.execute(
                "UPDATE events SET rev=?, ack_by=?, ack_case_id=?, ack_at=?, ack_note=? WHERE event_id=?",
                (self._rev, ack.by, ack.case_id, ack.received_at, note, ack.event_id),
            )
            if cursor.rowcount != 1:
                self._rev -= 1
                return None
            record = self._get_locked(ack.event_id)
        if record is not None:
            self._notify(record, "ack")
        return record

    def touch(self, event_id: str, kind: str) -> EventRecord | None:
        """The event changed in the ledger (a case step): a new revision, and listeners hear of it.
        None if the history has no such event."""
        if not is_event_id(event_id):
            return None
        with self._lock:
            self._rev += 1
            cursor = self._db.execute("UPDATE events SET rev=? WHERE event_id=?", (self._rev, event_id))
            if cursor.rowcount != 1:
                self._rev -= 1
                return None
            record = self._get_locked(event_id)
        if record is not None:
            self._notify(record, kind)
        return record

    def shed_pictures(self, min_bytes: int) -> int:
        """Delete the evidence pictures of the events seen least recently until at least `min_bytes`
        are free again (or none are left): the disk is full and alerts come first. Returns bytes freed."""
        freed = 0
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, snap_bytes, peak_bytes FROM events WHERE snap_bytes > 0 OR peak_bytes > 0"
                " ORDER BY last_seen, rev"
            ).fetchall()
            for event_id, snap_bytes, peak_bytes in rows:
                if freed >= min_bytes:
                    break
                before = self._bytes
                try:
                    self._evict_pictures(event_id, snap_bytes, peak_bytes)
                except sqlite3.Error:  # the files are gone; the row catches up at the next cleanup
                    pass
                freed += max(0, before - self._bytes)
        if freed:
            log.warning("data disk full: deleted the evidence pictures of the oldest events (%d kB) to make room "
                        "for alerts (the alerts themselves are kept)", freed // 1024)
        return freed

    def _write_picture(self, event_id: str, kind: PictureKind, jpeg: bytes) -> int:
        """Store a picture; 0 when the disk refused it (the alert itself is kept)."""
        assert self.pictures is not None
        try:
            return self.pictures.write(event_id, kind, jpeg)
        except OSError as exc:
            self.disk_full = is_disk_full(exc, self.snapshot_dir)
            log.error("cannot store the %s picture of event %s in %s: %s (the alert itself is kept)",
                      kind, event_id, self.snapshot_dir, describe(exc, self.snapshot_dir))
            return 0

    # ------------------------------------------------------------------ reading

    def get(self, event_id: str) -> EventRecord | None:
        """One event with its latest payload (picture data stripped), or None."""
        if not is_event_id(event_id):
            return None
        with self._lock:
            return self._get_locked(event_id, with_payload=True)

    def _get_locked(self, event_id: str, with_payload: bool = False) -> EventRecord | None:
        columns = SELECT + (", payload" if with_payload else "")
        row = self._db.execute(f"{columns} FROM events WHERE event_id=?", (event_id,)).fetchone()
        return _record(row, with_payload) if row else None

    def list(
        self,
        *,
        camera: str | None = None,
        type: str | None = None,
        state: str | None = None,
        since: datetime | float | None = None,
        acked: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> EventPage:
        """Events newest first (by start time). `since`: only events updated at or after it.

        state: start|update|end, or `active` for events not yet ended.
        """
        where: list[str] = []
        args: list[str | float] = []
        if camera is not None:
            where.append("camera_id = ?")
            args.append(camera)
        if type is not None:
            where.append("type = ?")
            args.append(type)
        if state is not None:
            if state not in STATE_FILTERS:
                raise ValueError(f"state must be one of {', '.join(STATE_FILTERS)}")
            if state == "active":
                where.append("state != 'end'")
            else:
                where.append("state = ?")
                args.append(state)
        if since is not None:
            where.append("updated_ts >= ?")
            args.append(_epoch(since))
        if acked is not None:
            where.append("ack_at IS NOT NULL" if acked else "ack_at IS NULL")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        limit = max(1, min(int(limit), 1000))
        offset = max(0, int(offset))
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM events{clause}", args).fetchone()[0]
            rows = self._db.execute(
                f"{SELECT} FROM events{clause} ORDER BY started_ts DESC, event_id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            rev = self._rev
            items = [_record(row) for row in rows]
        return EventPage(items, total, limit, offset, rev)

    # `builtins.list`: inside this class `list` names the method above.
    def changes_since(self, rev: int, limit: int = 200) -> builtins.list[EventRecord]:
        """Events changed after revision `rev`, oldest change first (each event once, at its latest)."""
        with self._lock:
            rows = self._db.execute(
                f"{SELECT} FROM events WHERE rev > ? ORDER BY rev LIMIT ?", (int(rev), int(limit))
            ).fetchall()
            return [_record(row) for row in rows]

    @property
    def rev(self) -> int:
        return self._rev

    def snapshot(self, event_id: str, which: SnapshotKind = "start") -> bytes | None:
        """The evidence JPEG of an event: its start picture, its latest peak picture, or the
        latest of the two; None when there is none (never had one, or evicted)."""
        return self.pictures.read(event_id, which) if self.pictures is not None else None

    def stats(self) -> HistoryStats:
        with self._lock:
            files = self._db.execute(
                "SELECT COALESCE(SUM((snap_bytes > 0) + (peak_bytes > 0)), 0) FROM events"
            ).fetchone()[0]
            problem = self.problem or ("the data disk is full: alerts are recorded without pictures"
                                       if self.disk_full else None)
            return HistoryStats(self._events, files, self._bytes, self.max_bytes, self._evicted, self._rev, problem)

    # ------------------------------------------------------------------ bounds

    def cleanup(self) -> int:
        """Apply the retention: delete pictures of events not seen for `snapshot_retention_days`.

        Runs by itself every few minutes while alerts are recorded; returns pictures deleted.
        """
        cutoff = self._clock() - self.retention_s
        with self._lock:
            self._next_cleanup = self._clock() + CLEANUP_EVERY_S
            rows = self._db.execute(
                "SELECT event_id, snap_bytes, peak_bytes FROM events"
                " WHERE last_seen < ? AND (snap_bytes > 0 OR peak_bytes > 0) ORDER BY last_seen",
                (cutoff,),
            ).fetchall()
            deleted = sum(self._evict_pictures(*row) for row in rows)
        if deleted:
            log.info("history: deleted %d evidence pictures older than %.0f days (alerts kept)",
                     deleted, self.retention_s / 86400)
        return deleted

    def _make_room(self, keep: str) -> None:
        """Delete the pictures of the least recently seen events until the files fit the cap."""
        deleted = 0
        while self._bytes > self.max_bytes:
            rows = self._db.execute(
                "SELECT event_id, snap_bytes, peak_bytes FROM events"
                " WHERE (snap_bytes > 0 OR peak_bytes > 0) AND event_id != ? ORDER BY last_seen, rev LIMIT 50",
                (keep,),
            ).fetchall()
            if not rows:
                break
            for row in rows:
                deleted += self._evict_pictures(*row)
                if self._bytes <= self.max_bytes:
                    break
        if deleted:
            log.warning("history: snapshot store over %.0f MB; deleted %d oldest evidence pictures "
                        "(alerts kept)", self.max_bytes / MiB, deleted)

    def _evict_pictures(self, event_id: str, snap_bytes: int, peak_bytes: int) -> int:
        removed = 0
        kinds: tuple[tuple[PictureKind, int], ...] = (("peak", peak_bytes), ("start", snap_bytes))
        for kind, size in kinds:
            if size and self.pictures is not None and self.pictures.delete(event_id, kind):
                self._bytes -= size
                removed += 1
        self._db.execute(
            "UPDATE events SET snap_bytes=0, peak_bytes=0, snapshot_evicted=1 WHERE event_id=?", (event_id,)
        )
        self._evicted += removed
        return removed

    def _drop_oldest_rows(self, count: int) -> None:
        rows = self._db.execute(
            "SELECT event_id, snap_bytes, peak_bytes FROM events ORDER BY started_ts, rev LIMIT ?", (count,)
        ).fetchall()
        for event_id, snap_bytes, peak_bytes in rows:
            self._evict_pictures(event_id, snap_bytes, peak_bytes)
            self._db.execute("DELETE FROM events WHERE event_id=?", (event_id,))
            self._events -= 1
        log.info("history: kept the newest %d events, forgot %d older ones", self.max_events, len(rows))

    def _remove_orphans(self) -> None:
        """Delete picture files no row refers to (a crash between writing a file and its row)."""
        with self._lock:
            known = {row[0]: (row[1], row[2]) for row in
                     self._db.execute("SELECT event_id, snap_bytes, peak_bytes FROM events")}
        if self.pictures is not None:
            self.pictures.remove_orphans(
                lambda event_id, kind: known.get(event_id, (0, 0))[0 if kind == "start" else 1] > 0)

    def _resync(self) -> None:
        try:
            self._rev, self._bytes, self._events = self._db.execute(
                "SELECT COALESCE(MAX(rev), 0), COALESCE(SUM(snap_bytes + peak_bytes), 0), COUNT(*) FROM events"
            ).fetchone()
        except sqlite3.Error:
            pass


# --------------------------------------------------------------------------- helpers


def _epoch(since: datetime | float) -> float:
    if isinstance(since, datetime):
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return since.timestamp()
    return float(since)


def _record(row: tuple, with_payload: bool = False) -> EventRecord:
    values = dict(zip(COLUMNS, row, strict=False))  # the payload may follow the columns
    ack = None
    if values["ack_at"] is not None:
        ack = HistoryAck(values["ack_by"] or "", values["ack_case_id"] or "", values["ack_at"], values["ack_note"])
    payload = None
    if with_payload:
        try:
            payload = json.loads(row[len(COLUMNS)])
        except (ValueError, TypeError):
            payload = None
    return EventRecord(
        **{name: values[name] for name in SUMMARY},
        rev=values["rev"], started_ts=values["started_ts"], updated_ts=values["updated_ts"],
        first_seen=values["first_seen"], last_seen=values["last_seen"], has_snapshot=values["snap_bytes"] > 0,
        has_peak_snapshot=values["peak_bytes"] > 0, snapshot_evicted=bool(values["snapshot_evicted"]),
        ack=ack, payload=payload,
    )
