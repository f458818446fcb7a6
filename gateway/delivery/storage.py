"""The delivery package's SQLite files (outboxes, history): one way to open them, one way to tell
a full disk from a broken file.

Both kinds of file run in WAL mode; they differ in how hard a commit is pushed to the disk:
an outbox commits with `synchronous=FULL` (an alert it accepted survives a power cut), the
history with `NORMAL` (it only feeds the web page; a power cut may lose its last changes).

A full disk shows up in more than one way: SQLite says `SQLITE_FULL` when a write does not fit,
but opening a WAL database on a full disk fails earlier, with a generic I/O error, because the
`-shm`/`-wal` files cannot be created. `is_disk_full` therefore also asks the file system how
much room is left, so the gateway reports "disk full" (and holds alerts in memory) instead of
telling the operator to move a "damaged" file aside.

The gateway must not fill its disk by itself (a 2 MB disk was once filled by an outbox's WAL
alone): each WAL is checkpointed and truncated at a size that fits the disk (`wal_limit`: a
quarter of the floor, 64 kB to 4 MB, so SQLite's usual 4 MB on any real disk), and every
write that makes a file grow first checks `ensure_room`: it refuses (as a full disk, so alerts
are held in memory and `disk_full` is raised) when the free space would fall under the floor
kept for the system (`space_floor`: 2 % of the file system, at least 256 kB, at most 64 MB).
Deleting never checks: it is what makes room.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Any, Literal

SQLITE_FULL = 13
LOW_SPACE_BYTES = 256 * 1024
"""Below this much free space an I/O error on the data disk is taken to be the full disk; also the
smallest floor of free space the gateway keeps."""
FLOOR_SHARE = 0.02
FLOOR_MAX_BYTES = 64 * 1024 * 1024
WAL_LIMIT_MIN_BYTES = 64 * 1024
WAL_LIMIT_MAX_BYTES = 4 * 1024 * 1024
"""SQLite's own default (1000 pages): on a disk of 800 MB and more, checkpoints come as usual."""


class BelowFloorError(OSError):
    """A write would take the data disk under the floor of free space the gateway keeps (ENOSPC:
    the callers treat it as the full disk it is about to be)."""


def open_wal(
    path: Path,
    schema: str,
    *,
    synchronous: Literal["FULL", "NORMAL"],
    user_version: int = 1,
) -> sqlite3.Connection:
    """Open (or create) `path` in WAL mode with `schema` applied; shared between threads.

    Raises sqlite3.Error or OSError; the caller wraps them in its own error with advice.
    Writes nothing when the file is already set up, so an existing file opens on a nearly full disk.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"the file system does not support SQLite WAL mode (journal mode {mode})")
        db.execute(f"PRAGMA synchronous={synchronous}")
        limit = wal_limit(total_bytes(path))
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute(f"PRAGMA wal_autocheckpoint={max(16, limit // page_size)}")
        db.execute(f"PRAGMA journal_size_limit={limit}")
        db.executescript(schema)  # IF NOT EXISTS throughout: no write when everything exists
        if db.execute("PRAGMA user_version").fetchone()[0] != user_version:
            db.execute(f"PRAGMA user_version={int(user_version)}")
    except BaseException:
        db.close()
        raise
    return db


def _file_system(path: Path) -> os.statvfs_result | None:
    """statvfs of the file system holding `path` (or its nearest existing parent); None if it cannot be asked."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return os.statvfs(probe)
    except OSError:
        return None


def free_bytes(path: Path) -> int | None:
    """Bytes free for an unprivileged writer on the file system holding `path`; None when unknown."""
    stats = _file_system(path)
    return None if stats is None else stats.f_bavail * stats.f_frsize


def total_bytes(path: Path) -> int | None:
    """The size of the file system holding `path`; None when unknown."""
    stats = _file_system(path)
    return None if stats is None else stats.f_blocks * stats.f_frsize


def space_floor(total: int) -> int:
    """The free space the gateway leaves on a file system of `total` bytes."""
    return int(min(FLOOR_MAX_BYTES, max(LOW_SPACE_BYTES, total * FLOOR_SHARE)))


def wal_limit(total: int | None) -> int:
    """How large a WAL may grow between checkpoints on a file system of `total` bytes: a quarter
    of the floor, so the WALs of the gateway's files never eat into it."""
    if total is None:
        return WAL_LIMIT_MAX_BYTES
    return min(WAL_LIMIT_MAX_BYTES, max(WAL_LIMIT_MIN_BYTES, space_floor(total) // 4))


def ensure_room(path: Path, needed: int = 0) -> None:
    """Raise BelowFloorError when writing `needed` more bytes at `path` would leave less free
    space than the floor (see the module docstring). Unknown space (no statvfs) passes."""
    free, total = free_bytes(path), total_bytes(path)
    if free is None or total is None:
        return
    floor = space_floor(total)
    if free - needed < floor:
        raise BelowFloorError(errno.ENOSPC, f"the disk is full ({free // 1024} kB free on the file system of "
                                            f"{Path(path).parent}; the gateway leaves {floor // 1024} kB free for "
                                            "the system)")


def has_room(path: Path, needed: int = 0) -> bool:
    """`ensure_room` as a question."""
    try:
        ensure_room(path, needed)
    except BelowFloorError:
        return False
    return True


def truncate_wal(db: sqlite3.Connection) -> None:
    """Give the WAL's space back to the disk now (after a queue emptied or on a nearly full
    disk). Harmless if it cannot (a reader still needs the WAL): the next checkpoint does it."""
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass


def is_disk_full(exc: BaseException, path: Path) -> bool:
    """True when `exc` (from writing or opening something at `path`) means the disk is full."""
    if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == SQLITE_FULL:
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, (sqlite3.Error, OSError)):
        free = free_bytes(path)
        return free is not None and free < LOW_SPACE_BYTES
    return False


def describe(exc: BaseException, path: Path) -> str:
    """The storage problem in words for the operator's log: a full disk says how full."""
    if isinstance(exc, BelowFloorError):
        return exc.strerror or str(exc)
    if is_disk_full(exc, path):
        free = free_bytes(path)
        room = f"{free // 1024} kB free" if free is not None else "no room"
        return f"the disk is full ({room} on the file system of {path.parent})"
    return str(exc) or type(exc).__name__


class Transaction:
    """BEGIN IMMEDIATE … COMMIT on a connection `open_wal` made (isolation_level None), fsynced
    (FULL) unless `durable` is False (then NORMAL for this transaction only: for changes whose
    loss in a power cut costs nothing but a repeat, such as deleting delivered rows).

    room: the database's path, to keep the disk's floor (see the module docstring): a durable
    transaction (it adds) first checks `ensure_room`, so it fails as on a full disk
    (BelowFloorError) before the floor is crossed; after one that is not (it deletes), the WAL's
    space goes back to a nearly full disk at once."""

    def __init__(self, db: sqlite3.Connection, durable: bool, room: Path | None = None) -> None:
        self._db = db
        self._durable = durable
        self._room = room

    def __enter__(self) -> sqlite3.Connection:
        if self._room is not None and self._durable:
            ensure_room(self._room)
        if not self._durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            if not self._durable:
                self._db.execute("PRAGMA synchronous=FULL")
        if exc_type is None and not self._durable and self._room is not None and not has_room(self._room):
            truncate_wal(self._db)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
