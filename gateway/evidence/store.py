"""The clip files on disk: where they live, what is known about each, and how much room they take.

Layout, under `<data_dir>/clips/`:
* `<event_id>.mp4` — the clip (a fragmented MP4: playable while it is being written);
* `<event_id>.json` — what the gateway knows about it (`ClipInfo`), replaced atomically
  through `<event_id>.json.tmp`, so a crash never leaves a half-written record.

Event ids are lowercase uuids (`is_event_id`); a file name is only ever built from a validated
one (`path`), so nothing a client sends can name a file outside the folder.

Bounds (evidence goes first, alerts and their history stay, as DESIGN §4 asks):
* `max_bytes` (`clips_max_mb`): past it the oldest finished clips are deleted (file and
  record) until the rest fit; a clip still recording is never deleted.
* `shed(min_bytes)`: the data disk is full; oldest finished clips go until that much is
  freed. Whoever handles the full disk calls this before touching alerts or their history.
* `max_clips` records at most (a failed clip has a record but no file).

At start-up the folder is put in order: leftover `.tmp` records are removed, clips that were
recording when the gateway stopped become `partial` (their fragments play) or `failed` (not
one whole GOP was written, the file is removed), and files without a record are deleted.

Records are kept in memory (read once at start-up); the record file is written when a clip's
file is created and when it is finished, not on every packet. Thread-safe: the clip writer
thread records, the API thread lists and serves.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from gateway.events.lifecycle import is_event_id

log = logging.getLogger(__name__)

CLIPS_DIR = "clips"
MiB = 1024 * 1024
DEFAULT_MAX_CLIPS = 5000
ClipStatus = Literal["recording", "ready", "partial", "failed"]
STATUSES = ("recording", "ready", "partial", "failed")


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """One event's clip, as the alert payload, the history and the API describe it.

    status: recording -> ready (it ran to its planned end) | partial (cut short: reconnect,
    camera stopped, stalled, packets lost, or the gateway stopped) | failed (no playable file;
    `reason` says why). from_ts/to_ts: wall time (epoch seconds) of the first and last packet
    written (None before the first). event_ts: wall time of the event's start. size: bytes on
    disk. reason: why it is partial or failed, or a note (capped at max_s); operator-readable.
    """

    event_id: str
    camera_id: str
    status: ClipStatus
    event_ts: float
    from_ts: float | None = None
    to_ts: float | None = None
    size: int = 0
    packets: int = 0
    codec: str | None = None
    reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != "recording"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClipInfo:
        info = cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})
        if not is_event_id(info.event_id) or info.status not in STATUSES:
            raise ValueError(f"not a clip record: event {info.event_id!r}, status {info.status!r}")
        return info


@dataclass(frozen=True, slots=True)
class ClipStoreStats:
    """For /healthz and /metrics."""

    clips: int
    recording: int
    bytes: int
    max_bytes: int
    evicted: int
    """Clips deleted to keep within max_bytes or max_clips."""
    shed_bytes: int
    """Bytes of clips deleted because the data disk was full."""
    problem: str | None = None


class ClipStore:
    """The clip folder and its records; safe to share between threads."""

    def __init__(self, data_dir: str | Path, *, max_bytes: int = 2048 * MiB, max_clips: int = DEFAULT_MAX_CLIPS):
        if max_bytes <= 0 or max_clips <= 0:
            raise ValueError(f"clip store: max_bytes and max_clips must be positive, got {max_bytes}, {max_clips}")
        self.folder = Path(data_dir) / CLIPS_DIR
        self.max_bytes = int(max_bytes)
        self.max_clips = int(max_clips)
        self._lock = threading.Lock()
        self._clips: dict[str, ClipInfo] = {}
        self._evicted = 0
        self._shed_bytes = 0
        self.problem: str | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        self._load()

    @classmethod
    def from_config(cls, data_dir: str | Path, clips_max_mb: float) -> ClipStore:
        return cls(data_dir, max_bytes=int(clips_max_mb * MiB))

    # ----------------------------------------------------------------- names

    def path(self, event_id: str) -> Path:
        """The clip file of `event_id` (whether or not it exists); ValueError for anything but an
        event id, so no input can reach another path."""
        if not is_event_id(event_id):
            raise ValueError(f"not an event id: {event_id!r}")
        return self.folder / f"{event_id}.mp4"

    def _record_path(self, event_id: str) -> Path:
        return self.path(event_id).with_suffix(".json")

    # ----------------------------------------------------------------- the recorder's side

    def begin(self, info: ClipInfo) -> Path:
        """A clip starts recording (kept in memory only: nothing on disk yet). Returns its path.
        An event that already has a clip keeps it: ValueError."""
        path = self.path(info.event_id)
        with self._lock:
            if info.event_id in self._clips:
                raise ValueError(f"event {info.event_id} already has a clip")
            self._clips[info.event_id] = info
            self._bound_count()
        return path

    def save(self, info: ClipInfo) -> None:
        """Record `info` on disk (its file was created, or it finished) and apply the quota."""
        with self._lock:
            if info.event_id not in self._clips:
                return  # evicted or shed meanwhile: nothing to record
            self._clips[info.event_id] = info
            self._write_record(info)
            self._bound_bytes()

    def progress(self, event_id: str, size: int, to_ts: float | None, packets: int) -> None:
        """A recording clip grew (memory only); older clips make room if the quota is passed."""
        with self._lock:
            info = self._clips.get(event_id)
            if info is None or info.finished:
                return
            self._clips[event_id] = replace(info, size=size, to_ts=to_ts, packets=packets)
            self._bound_bytes()

    # ----------------------------------------------------------------- reading

    def get(self, event_id: str) -> ClipInfo | None:
        if not is_event_id(event_id):
            return None
        with self._lock:
            return self._clips.get(event_id)

    def list(self, camera_id: str | None = None, since: float | None = None, until: float | None = None,
             limit: int | None = None) -> list[ClipInfo]:
        """Clips (oldest first) of one camera or all, overlapping [since, until] in wall time
        (epoch seconds): what a GB/T 28181 RecordInfo query for a channel and period wants.
        A clip spans from_ts..to_ts (its event's start while it has no packet yet)."""
        with self._lock:
            clips = list(self._clips.values())
        chosen = [clip for clip in clips
                  if (camera_id is None or clip.camera_id == camera_id)
                  and (until is None or _clip_start(clip) <= until)
                  and (since is None or _clip_end(clip) >= since)]
        chosen.sort(key=lambda clip: (_clip_start(clip), clip.event_id))
        return chosen if limit is None else chosen[:limit]

    def stats(self) -> ClipStoreStats:
        with self._lock:
            clips = self._clips.values()
            return ClipStoreStats(
                clips=len(self._clips), recording=sum(1 for clip in clips if not clip.finished),
                bytes=sum(clip.size for clip in clips), max_bytes=self.max_bytes, evicted=self._evicted,
                shed_bytes=self._shed_bytes, problem=self.problem,
            )

    # ----------------------------------------------------------------- bounds

    def shed(self, min_bytes: int) -> int:
        """The data disk is full: delete the oldest finished clips until `min_bytes` are freed
        (or none is left). Returns the bytes freed."""
        freed = 0
        with self._lock:
            for clip in self._oldest_finished():
                if freed >= min_bytes:
                    break
                freed += self._delete(clip)
            self._shed_bytes += freed
        if freed:
            log.warning("data disk full: deleted the oldest evidence clips (%d kB) to make room for alerts "
                        "(the alerts themselves are kept)", freed // 1024)
        return freed

    def _bound_bytes(self) -> None:
        total = sum(clip.size for clip in self._clips.values())
        if total <= self.max_bytes:
            return
        deleted = 0
        for clip in self._oldest_finished():
            if total <= self.max_bytes:
                break
            total -= self._delete(clip)
            deleted += 1
        self._evicted += deleted
        if deleted:
            log.warning("clip store over %.0f MB: deleted the %d oldest clips (their alerts are kept)",
                        self.max_bytes / MiB, deleted)

    def _bound_count(self) -> None:
        extra = len(self._clips) - self.max_clips
        for clip in self._oldest_finished():
            if extra <= 0:
                break
            self._delete(clip)
            self._evicted += 1
            extra -= 1

    def _oldest_finished(self) -> builtins.list[ClipInfo]:
        return sorted((clip for clip in self._clips.values() if clip.finished),
                      key=lambda clip: (_clip_start(clip), clip.event_id))

    def _delete(self, clip: ClipInfo) -> int:
        """Forget a clip: its file and record. Returns the bytes its file took."""
        for path in (self.path(clip.event_id), self._record_path(clip.event_id)):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete %s: %s", path, exc)
        del self._clips[clip.event_id]
        return clip.size

    # ----------------------------------------------------------------- files

    def _write_record(self, info: ClipInfo) -> None:
        target = self._record_path(info.event_id)
        temporary = target.with_name(target.name + ".tmp")
        try:
            temporary.write_text(json.dumps(info.to_json()), encoding="utf-8")
            os.replace(temporary, target)
            self.problem = None
        except OSError as exc:
            self.problem = f"cannot write clip records in {self.folder}: {exc}"
            log.error("clip of event %s: cannot write its record %s: %s (kept in memory; "
                      "it is lost if the gateway restarts)", info.event_id, target, exc)
            try:
                temporary.unlink(missing_ok=True)
            except OSError:
                pass

    def _load(self) -> None:
        """Read the records and put the folder in order (see the module docstring)."""
        for path in _files(self.folder):
            if path.name.endswith(".tmp"):
                _remove(path)
            elif path.suffix == ".json":
                self._load_record(path)
        for path in _files(self.folder):
            if path.suffix == ".mp4" and path.stem not in self._clips:
                log.info("clip store: deleting %s (no record of it)", path.name)
                _remove(path)
        self._bound_count()
        self._bound_bytes()

    def _load_record(self, path: Path) -> None:
        try:
            info = ClipInfo.from_json(json.loads(path.read_text(encoding="utf-8")))
            if path.stem != info.event_id:
                raise ValueError(f"it describes event {info.event_id}")
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("clip store: ignoring unreadable record %s (%s); deleting it", path.name, exc)
            _remove(path)
            return
        clip = self.path(info.event_id)
        size = clip.stat().st_size if clip.exists() else 0
        if info.status == "recording":
            info = self._interrupted(info, clip, size)
            self._write_record(info)
        elif info.status != "failed" and not size:
            info = replace(info, status="failed", size=0, reason="the clip file is missing")
            self._write_record(info)
        else:
            info = replace(info, size=size)
        self._clips[info.event_id] = info

    @staticmethod
    def _interrupted(info: ClipInfo, clip: Path, size: int) -> ClipInfo:
        if size and has_fragment(clip):
            log.info("clip store: the clip of event %s was recording when the gateway stopped; "
                     "kept as partial (%d kB)", info.event_id, size // 1024)
            return replace(info, status="partial", size=size, reason="the gateway stopped while recording")
        _remove(clip)
        return replace(info, status="failed", size=0,
                       reason="the gateway stopped before the clip held one whole GOP")


def has_fragment(path: Path) -> bool:
    """True when a fragmented MP4 holds at least one whole fragment (a `moof` box and its
    `mdat`, both complete): it plays, even if a crash cut the file short after it."""
    try:
        with open(path, "rb") as handle:
            after_moof = False
            for box in _top_level_boxes(handle, os.fstat(handle.fileno()).st_size):
                if box == b"mdat" and after_moof:
                    return True
                after_moof = box == b"moof"
    except OSError:
        return False
    return False


def _top_level_boxes(handle: Any, file_size: int) -> Iterator[bytes]:
    """The types of an MP4 file's complete top-level boxes, reading only their headers."""
    offset = 0
    while offset + 8 <= file_size:
        handle.seek(offset)
        header = handle.read(8)
        size = int.from_bytes(header[:4], "big")
        if size == 1:
            size = int.from_bytes(handle.read(8), "big")
        if size < 8 or offset + size > file_size:
            return  # to the end of the file (size 0), garbage, or cut short by a crash
        yield header[4:8]
        offset += size


def _clip_start(clip: ClipInfo) -> float:
    return clip.from_ts if clip.from_ts is not None else clip.event_ts


def _clip_end(clip: ClipInfo) -> float:
    return clip.to_ts if clip.to_ts is not None else _clip_start(clip)


def _files(folder: Path) -> list[Path]:
    try:
        return [path for path in folder.iterdir() if path.is_file()]
    except OSError:
        return []


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("clip store: cannot delete %s: %s", path, exc)
