"""The case loop in one room: which events the gateway sent, who acknowledged them, how their
cases move at the centre.

A township centre turns an alert into a case (事件工单) and works it through 发现受理 → 分析研判 →
流转处置 → 跟踪督办 → 考核评价. The gateway's side of that loop is small but must be exact:

* **Known events** — every event the router queued for the outputs (`note_events`), kept
  `history_days`: an acknowledgement or a case step for an event this gateway never sent (or
  forgot) is refused as unknown, not stored.
* **Acknowledgements** — the centre's (MQTT `ack`: `record_centre_ack`) and a duty officer's on the
  gateway's page (`acknowledge_on_page`, with an optional case number and note). A page
  acknowledgement is also told to the centre by every output that can (MQTT `acks`: an
  `AckAnnouncer`), queued durably like an alert.
* **Case steps** — the centre's progress for an alert (MQTT `cases`: dispatched → accepted →
  handled → verified, or rejected), every step kept, in the order of their times.

Everything lives in its own SQLite file, `<data_dir>/ledger.sqlite3` (WAL; `synchronous=FULL`: an
acknowledgement the officer saw accepted survives a power cut). The event history the page lists
is told about each change (`HistoryMirror`: the latest acknowledgement on the event's row, so the
list can filter on it, and a new revision so open pages hear about it at once).

Files written before the ledger existed kept acks and known events in the first output's outbox
and case steps in the history; they are copied in once when the ledger file is created.

A ledger that cannot be opened (a full disk at start) is kept in memory for the run and says so
(`problem`); writes that the disk refuses raise `LedgerError` (the page answers 503, the MQTT
output logs the lost message).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from gateway.delivery.storage import Transaction, describe, is_disk_full, open_wal
from gateway.events import AlertMessage

log = logging.getLogger(__name__)

DB_NAME = "ledger.sqlite3"
CASE_STATUSES: tuple[str, ...] = ("dispatched", "accepted", "handled", "verified", "rejected")
"""The page's labels live in gateway/web/i18n.js (`case_<status>`)."""
PRUNE_EVERY_S = 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS known_events (
    event_id  TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL DEFAULT '',
    first_at  REAL NOT NULL,
    last_at   REAL NOT NULL,
    last_seq  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS known_events_last ON known_events (last_at);
CREATE TABLE IF NOT EXISTS acks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    acked_by    TEXT NOT NULL,
    received_at REAL NOT NULL,
    note        TEXT,
    source      TEXT NOT NULL DEFAULT 'centre',
    UNIQUE (event_id, case_id, acked_by)
);
CREATE INDEX IF NOT EXISTS acks_event ON acks (event_id, id);
CREATE TABLE IF NOT EXISTS cases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    acted_by    TEXT NOT NULL DEFAULT '',
    at          TEXT NOT NULL,
    at_ts       REAL NOT NULL,
    note        TEXT,
    received_at REAL NOT NULL,
    UNIQUE (event_id, case_id, status, at)
);
CREATE INDEX IF NOT EXISTS cases_event ON cases (event_id, at_ts, id);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
CASE_COLUMNS = "event_id, case_id, status, acted_by, at, at_ts, note"
ACK_COLUMNS = "event_id, case_id, acked_by, received_at, note"


class LedgerError(RuntimeError):
    """The ledger file cannot take a change (disk full, broken file); the message says which."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class UnknownEventError(KeyError):
    """An ack or case step names an event this gateway never sent (or forgot after `history_days`)."""


@dataclass(frozen=True)
class AckRecord:
    """An acknowledgement of one alert: it became case `case_id` (may be empty), taken by `by`."""

    event_id: str
    case_id: str
    by: str
    received_at: float
    note: str | None = None


@dataclass(frozen=True)
class CaseUpdate:
    """One step of a case, as the centre sent it (`at`: its ISO-8601 time, or when it arrived)."""

    event_id: str
    case_id: str
    status: str
    by: str
    at: str
    at_ts: float
    note: str | None = None


@runtime_checkable
class AckAnnouncer(Protocol):
    """An output that tells the centre about acknowledgements made on the gateway's page (MQTT)."""

    name: str

    def announce_ack(self, ack: AckRecord, note: str | None, at: str) -> None:
        """Queue the acknowledgement (`at`: its ISO-8601 time in the gateway's zone) for the centre."""
        ...


class HistoryMirror(Protocol):
    """What the ledger tells the event history (gateway.delivery.history.EventHistory)."""

    def note_ack(self, ack: Any, note: str | None = None) -> Any:
        """Show the latest acknowledgement on the event's row (and notify the page)."""
        ...

    def touch(self, event_id: str, kind: str) -> Any:
        """The event changed elsewhere (a case step): a new revision, and notify the page."""
        ...


class CaseLedger:
    """Known events, acknowledgements and case steps (see the module docstring). Thread-safe."""

    def __init__(self, data_dir: str | Path, *, history: HistoryMirror | None = None,
                 timezone: tzinfo | None = None, history_days: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.history = history
        self.timezone = timezone
        self.history_s = history_days * 86400.0
        self._clock = clock
        self._lock = threading.RLock()
        self._announcers: list[AckAnnouncer] = []
        self._next_prune = 0.0
        self.problem: str | None = None
        """Why the ledger is kept in memory for this run (None when it is on disk)."""
        existed = self.path.exists()
        try:
            self._db = open_wal(self.path, SCHEMA, synchronous="FULL")
        except (sqlite3.Error, OSError) as exc:
            self.problem = f"kept in memory: cannot open {self.path}: {describe(exc, self.path)}"
            log.error("acknowledgements and case steps: %s; acks made during this run are lost with it",
                      self.problem)
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self._db.executescript(SCHEMA)
            existed = True  # nothing to migrate into a memory database
        if not existed:
            self._migrate()
        self._prune()

    def add_announcer(self, output: AckAnnouncer) -> None:
        """An output that tells the centre about page acknowledgements (the registry adds them)."""
        self._announcers.append(output)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ known events

    def note_events(self, messages: Sequence[AlertMessage]) -> None:
        """The router queued these messages: their events are known from now on. Never raises:
        a ledger the disk refuses costs later acks of these events, not the alerts."""
        now = self._clock()
        rows = [(m.event_id, str(m.payload.get("camera_id") or ""), now, now, m.seq) for m in messages]
        if not rows:
            return
        try:
            with self._lock, self._transaction(durable=False):
                self._db.executemany(
                    "INSERT INTO known_events (event_id, camera_id, first_at, last_at, last_seq) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT(event_id) DO UPDATE SET last_at=excluded.last_at,"
                    " last_seq=MAX(last_seq, excluded.last_seq)", rows)
        except sqlite3.Error as exc:
            log.error("ledger %s: cannot note %d sent events (%s); acknowledgements of them will be refused as "
                      "unknown", self.path, len(rows), describe(exc, self.path))
        if now >= self._next_prune:
            self._prune()

    def is_known(self, event_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM known_events WHERE event_id=?", (event_id,)).fetchone() is not None

    # ------------------------------------------------------------------ acknowledgements

    def record_centre_ack(self, event_id: str, case_id: str, by: str) -> tuple[AckRecord, bool]:
        """The centre acknowledged an alert (MQTT `ack`); returns (record, is_new). Raises
        UnknownEventError or LedgerError."""
        record, new = self._record_ack(event_id, case_id, by, None, "centre")
        if new:
            log.info("event %s acknowledged by %s as case %s", event_id, by, case_id)
            self._mirror_ack(record)
        return record, new

    def acknowledge_on_page(self, event_id: str, by: str, case_id: str | None = None,
                            note: str | None = None) -> tuple[AckRecord, bool]:
        """A duty officer acknowledged on the page: recorded, shown, and told to the centre by
        every output that can. A repeat of the same ack only updates its note. Raises
        UnknownEventError or LedgerError."""
        record, new = self._record_ack(event_id, case_id or "", by, note, "page")
        if new or note:
            self._mirror_ack(record)
        if new:
            log.info("event %s acknowledged on the web page by %s%s", event_id, by,
                     f" as case {case_id}" if case_id else "")
            self._announce(record)
        return record, new

    def ack_for(self, event_id: str) -> AckRecord | None:
        """The latest acknowledgement of one event (centre's or page's), with its note."""
        with self._lock:
            row = self._db.execute(f"SELECT {ACK_COLUMNS} FROM acks WHERE event_id=? ORDER BY id DESC LIMIT 1",
                                   (event_id,)).fetchone()
        return AckRecord(*row) if row else None

    def acks(self, limit: int = 100, since: float | None = None) -> list[AckRecord]:
        """Recent acknowledgements, newest first; `since` (epoch seconds) keeps only later ones."""
        where, args = ("WHERE received_at >= ?", (since,)) if since is not None else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT {ACK_COLUMNS} FROM acks {where} ORDER BY id DESC LIMIT ?",
                                    (*args, limit)).fetchall()
        return [AckRecord(*row) for row in rows]

    def _record_ack(self, event_id: str, case_id: str, by: str, note: str | None,
                    source: str) -> tuple[AckRecord, bool]:
        at = self._clock()
        with self._lock:
            if not self.is_known(event_id):
                raise UnknownEventError(event_id)
            try:
                with self._transaction():
                    cursor = self._db.execute(
                        "INSERT INTO acks (event_id, case_id, acked_by, received_at, note, source)"
                        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (event_id, case_id, by, at, note, source))
                    new = cursor.rowcount == 1
                    if not new and note:
                        self._db.execute("UPDATE acks SET note=? WHERE event_id=? AND case_id=? AND acked_by=?",
                                         (note, event_id, case_id, by))
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot record the acknowledgement of event {event_id} in {self.path}: "
                                  f"{describe(exc, self.path)}", disk_full=is_disk_full(exc, self.path)) from exc
            row = self._db.execute(f"SELECT {ACK_COLUMNS} FROM acks WHERE event_id=? AND case_id=? AND acked_by=?",
                                   (event_id, case_id, by)).fetchone()
        return AckRecord(*row), new

    def _mirror_ack(self, record: AckRecord) -> None:
        if self.history is None:
            return
        try:
            self.history.note_ack(record, record.note)
        except Exception as exc:  # noqa: BLE001 - the ack is recorded; the page's copy is best effort
            log.error("event %s: acknowledgement recorded but not shown in the page's history: %s",
                      record.event_id, exc)

    def _announce(self, record: AckRecord) -> None:
        at = datetime.fromtimestamp(record.received_at, self.timezone).astimezone(self.timezone)
        for output in self._announcers:
            try:
                output.announce_ack(record, record.note, at.isoformat(timespec="seconds"))
            except Exception as exc:  # noqa: BLE001 - the ack is recorded; telling is best effort
                log.error("output %s could not queue the page acknowledgement of event %s: %s",
                          output.name, record.event_id, exc)

    # ------------------------------------------------------------------ case steps

    def record_case(self, update: CaseUpdate) -> bool:
        """Store one step of the centre's case for an event; True when it is new (a repeated step
        changes nothing). Raises UnknownEventError or LedgerError."""
        with self._lock:
            if not self.is_known(update.event_id):
                raise UnknownEventError(update.event_id)
            try:
                with self._transaction():
                    cursor = self._db.execute(
                        f"INSERT INTO cases ({CASE_COLUMNS}, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT DO NOTHING",
                        (update.event_id, update.case_id, update.status, update.by, update.at, update.at_ts,
                         update.note, self._clock()))
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot record the case of event {update.event_id} in {self.path}: "
                                  f"{describe(exc, self.path)}", disk_full=is_disk_full(exc, self.path)) from exc
        if cursor.rowcount != 1:
            return False
        log.info("event %s: case %s %s%s", update.event_id, update.case_id, update.status,
                 f" by {update.by}" if update.by else "")
        if self.history is not None:
            try:
                self.history.touch(update.event_id, "case")
            except Exception as exc:  # noqa: BLE001 - the step is recorded; the page's refresh is best effort
                log.error("event %s: case step recorded but the page was not told: %s", update.event_id, exc)
        return True

    def cases(self, event_id: str) -> list[CaseUpdate]:
        """Every case step the centre sent for one event, in the order of their times."""
        with self._lock:
            rows = self._db.execute(f"SELECT {CASE_COLUMNS} FROM cases WHERE event_id=? ORDER BY at_ts, id",
                                    (event_id,)).fetchall()
        return [CaseUpdate(*row) for row in rows]

    def latest_cases(self, event_ids: Iterable[str]) -> dict[str, CaseUpdate]:
        """The latest case step (by its time) of each event that has one (one query per 500 ids)."""
        wanted = list(event_ids)
        latest: dict[str, CaseUpdate] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(f"SELECT {CASE_COLUMNS} FROM cases WHERE event_id IN ({marks})"
                                            " ORDER BY at_ts, id", chunk):
                    latest[row[0]] = CaseUpdate(*row)
        return latest

    # ------------------------------------------------------------------ housekeeping

    def stats(self) -> dict[str, Any]:
        with self._lock:
            known, acks, cases = (self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                                  for table in ("known_events", "acks", "cases"))
        return {"known_events": known, "acks": acks, "case_steps": cases, "problem": self.problem}

    def _transaction(self, durable: bool = True) -> Transaction:
        return Transaction(self._db, durable)

    def _prune(self) -> None:
        """Forget events, acks and case steps older than `history_days`."""
        cutoff = self._clock() - self.history_s
        try:
            with self._lock, self._transaction(durable=False) as db:
                db.execute("DELETE FROM known_events WHERE last_at < ?", (cutoff,))
                db.execute("DELETE FROM acks WHERE received_at < ?", (cutoff,))
                db.execute("DELETE FROM cases WHERE received_at < ?", (cutoff,))
        except sqlite3.Error as exc:
            log.warning("ledger %s: could not prune old entries: %s", self.path, exc)
        self._next_prune = self._clock() + PRUNE_EVERY_S

    def _migrate(self) -> None:
        """Copy what earlier versions kept elsewhere: acks and known events from the outboxes,
        case steps from the history (their old tables stay where they are, unused)."""
        outboxes = sorted(self.data_dir.glob("outbox*.sqlite3"))
        sources: list[tuple[Path, tuple[str, ...]]] = [(path, ("known_events", "acks")) for path in outboxes]
        sources.append((self.data_dir / "history.sqlite3", ("cases",)))
        copied = 0
        for path, tables in sources:
            if path.exists():
                copied += self._copy_tables(path, tables)
        if copied:
            log.info("ledger %s: took over %d acknowledgements, known events and case steps kept by an earlier "
                     "version", self.path, copied)

    def _copy_tables(self, path: Path, tables: tuple[str, ...]) -> int:
        copied = 0
        try:
            self._db.execute("ATTACH DATABASE ? AS old", (str(path),))
        except sqlite3.Error as exc:
            log.warning("ledger: cannot read %s to take over its acknowledgements: %s", path, exc)
            return 0
        try:
            present = {row[0] for row in self._db.execute("SELECT name FROM old.sqlite_master WHERE type='table'")}
            for table in (name for name in tables if name in present):
                columns = {"known_events": "event_id, camera_id, first_at, last_at, last_seq",
                           "acks": "event_id, case_id, acked_by, received_at",
                           "cases": f"{CASE_COLUMNS}, received_at"}[table]
                cursor = self._db.execute(
                    f"INSERT OR IGNORE INTO {table} ({columns}) SELECT {columns} FROM old.{table}")
                copied += max(0, cursor.rowcount)
        except sqlite3.Error as exc:
            log.warning("ledger: cannot take over the acknowledgements kept in %s: %s", path, exc)
        finally:
            self._db.execute("DETACH DATABASE old")
        return copied
