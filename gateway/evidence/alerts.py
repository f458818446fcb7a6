"""Every alert of a recording camera carries its clip: `evidence.clip` in the payload.

`ClipEvidence` stands in front of the router (it is an `AlertPath` too): whoever raises an alert
(a camera's rules, its own alarms, a sensor with a linked camera) routes it through here, and
each message of a camera that records clips gets the clip's state before it is queued for the
outputs:

* `start` starts the camera's clip of the event (pre-roll from the ring) and says `recording`;
* `update` says how the clip stands now (`recording`, or final when `max_s` capped it);
* `end` tells the recorder the event is over (the clip runs on for `post_s`) and says
  `recording` with the link; once the clip is finished, the end message is sent again with the
  next `seq` and the clip's final state (`ready`, `partial` or `failed`, with `from`/`to`). So the
  centre learns that the clip is ready from the same event, in order, and a centre that ignores
  clips sees a repeated end it can treat as a duplicate (same `ended_at`).

Alerts without video (camera_offline: the camera sends nothing; patrol_fault; disk_full) get no
clip. A camera whose codec cannot be remuxed into a browser-playable MP4 (the old MS-MPEG-4
sample) gets `failed` with the reason, never a broken file. The repeat of an end waits in memory
only while its clip records (at most `post_s` and a moment); a stop finishes every clip as
`partial` and sends the repeats before the outputs stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from typing import Any

from gateway.events.lifecycle import AlertMessage, AlertPath
from gateway.events.record import parse_time
from gateway.events.timestamps import iso
from gateway.evidence.clips import ClipRecorder
from gateway.evidence.store import ClipInfo, ClipStore
from gateway.status import CameraControlError, ClipFile, RecordClip

log = logging.getLogger(__name__)

WITHOUT_VIDEO = frozenset({"camera_offline", "patrol_fault", "disk_full"})
"""Alert types a clip would show nothing useful for."""


class ClipEvidence:
    """The `AlertPath` that annotates alerts with their clips, then routes them on (`path`).

    url_base: how the centre reaches the gateway's API (`api.public_url`), "" for links relative
    to the gateway. timezone: the gateway's, for the clip's `from`/`to`.
    """

    def __init__(self, path: AlertPath, *, url_base: str = "", timezone: tzinfo | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.url_base = url_base.rstrip("/")
        self.timezone = timezone
        self.clock, self.wall_clock = clock, wall_clock
        self._lock = threading.Lock()
        self._recorders: dict[str, ClipRecorder] = {}
        self._ended: dict[str, dict[str, Any]] = {}
        """Events that ended while their clip still records: their end payload, to send again."""

    def add(self, recorder: ClipRecorder) -> None:
        with self._lock:
            self._recorders[recorder.camera_id] = recorder

    def remove(self, camera_id: str) -> None:
        with self._lock:
            self._recorders.pop(camera_id, None)

    def recorder(self, camera_id: str) -> ClipRecorder | None:
        with self._lock:
            return self._recorders.get(camera_id)

    # ----------------------------------------------------------------- the alert path

    def route(self, messages: Sequence[AlertMessage]) -> None:
        """Annotate each message with its clip, then route them on. Never raises."""
        annotated = []
        for message in messages:
            try:
                annotated.append(self._annotate(message))
            except Exception:  # noqa: BLE001 - a clip's trouble must never cost the alert
                log.exception("event %s: could not attach its clip; the alert goes out without it", message.event_id)
                annotated.append(message)
        self.path.route(annotated)

    def clip_finished(self, info: ClipInfo) -> None:
        """The clip writer finished a clip: an ended event's end message goes out again with it."""
        with self._lock:
            ended = self._ended.pop(info.event_id, None)
        if ended is None:
            return  # the event is still open: its next message carries the clip's final state
        now = datetime.fromtimestamp(self.wall_clock(), self.timezone).astimezone(self.timezone)
        repeat = {**ended, "seq": ended["seq"] + 1, "updated_at": iso(now), "snapshot": None,
                  "evidence": {**(ended.get("evidence") or {}), "clip": self.clip_json(info)}}
        self.path.route([AlertMessage(repeat)])

    def _annotate(self, message: AlertMessage) -> AlertMessage:
        payload = message.payload
        recorder = self._recorder_for(payload)
        if recorder is None:
            return message
        event_id, state = message.event_id, message.state
        stream = recorder.ring.stream
        if stream is not None and not stream.remuxable:
            clip = {"status": "failed", "url": None, "from": None, "to": None,
                    "reason": f"the camera sends {stream.codec} video, which cannot be remuxed into an MP4 clip "
                              "(no re-encoding is done): set the camera to H.264 or H.265"}
            return AlertMessage({**payload, "evidence": {"clip": clip}}, message.snapshot_jpeg)
        if state == "start":
            info = recorder.start(event_id, self._monotonic(payload.get("started_at")))
        else:
            if state == "end":
                recorder.end(event_id, self._monotonic(payload.get("ended_at")))
            info = recorder.info(event_id) or recorder.start(event_id, self._monotonic(payload.get("started_at")))
        annotated = {**payload, "evidence": {**(payload.get("evidence") or {}), "clip": self.clip_json(info)}}
        if state == "end" and not info.finished:
            with self._lock:
                self._ended[event_id] = annotated
        return AlertMessage(annotated, message.snapshot_jpeg)

    def _recorder_for(self, payload: dict[str, Any]) -> ClipRecorder | None:
        camera_id = payload.get("camera_id")
        if not camera_id or payload.get("type") in WITHOUT_VIDEO:
            return None
        with self._lock:
            return self._recorders.get(camera_id)

    def _monotonic(self, when: Any) -> float:
        """The monotonic time of an ISO-8601 time of the payload (now when it has none)."""
        epoch = parse_time(when)
        now = self.clock()
        return now if epoch is None else now - (self.wall_clock() - epoch)

    # ----------------------------------------------------------------- the payload's words

    def clip_json(self, info: ClipInfo) -> dict[str, Any]:
        """`evidence.clip` of the payload: status, link, the span it covers, why if not ready."""
        clip: dict[str, Any] = {
            "status": info.status,
            "url": None if info.status == "failed" else f"{self.url_base}/api/events/{info.event_id}/clip",
            "from": self._iso(info.from_ts),
            "to": self._iso(info.to_ts),
        }
        if info.reason:
            clip["reason"] = info.reason
        return clip

    def _iso(self, epoch: float | None) -> str | None:
        if epoch is None:
            return None
        return iso(datetime.fromtimestamp(epoch, self.timezone).astimezone(self.timezone))


class ClipRecords:
    """The evidence clips as a platform's recordings (`gateway.status.RecordSource`): what a
    GB/T 28181 RecordInfo query lists for a channel and period, and whether a camera records."""

    def __init__(self, store: ClipStore, evidence: ClipEvidence, timezone: tzinfo) -> None:
        self.store, self.evidence, self.timezone = store, evidence, timezone

    def clips(self, camera_id: str, start: str, end: str, timeout_s: float = 5.0) -> list[RecordClip]:
        since, until = self._epoch(start), self._epoch(end)
        records = []
        for info in self.store.list(camera_id, since, until):
            if info.status == "failed":
                continue
            begin = info.from_ts if info.from_ts is not None else info.event_ts
            records.append(RecordClip(start=self._local(begin), end=self._local(info.to_ts or begin),
                                      name=f"{camera_id} alarm {info.event_id[:8]}", path=info.event_id,
                                      size_bytes=info.size or None, kind="alarm"))
        return records

    def recording(self, camera_id: str) -> bool:
        recorder = self.evidence.recorder(camera_id)
        return recorder is not None and recorder.recording > 0

    def clip_file(self, camera_id: str, start: float, stop: float) -> ClipFile | None:
        """The finished clip (ready or partial) covering `start`, else the first one in start..stop."""
        first: ClipFile | None = None
        for info in self.store.list(camera_id, start, stop):  # oldest first, each overlapping the period
            if info.status not in ("ready", "partial") or info.from_ts is None or info.to_ts is None:
                continue
            clip = ClipFile(str(self.store.path(info.event_id)), info.from_ts, info.to_ts, info.codec)
            if clip.start <= start:
                return clip
            first = first or clip
        return first

    def _epoch(self, local: str) -> float:
        try:
            moment = datetime.fromisoformat(local)
        except ValueError:
            raise CameraControlError(f"not a time: {local!r} (expected YYYY-MM-DDTHH:MM:SS)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.timezone)
        return moment.timestamp()

    def _local(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self.timezone).strftime("%Y-%m-%dT%H:%M:%S")


class LateRecords:
    """A `RecordSource` handed to the outputs before the clips exist (they are built after the
    router the outputs belong to): empty until `attach`."""

    def __init__(self) -> None:
        self._records: ClipRecords | None = None

    def attach(self, records: ClipRecords) -> None:
        self._records = records

    def clips(self, camera_id: str, start: str, end: str, timeout_s: float = 5.0) -> list[RecordClip]:
        return self._records.clips(camera_id, start, end, timeout_s) if self._records is not None else []

    def recording(self, camera_id: str) -> bool:
        return self._records is not None and self._records.recording(camera_id)

    def clip_file(self, camera_id: str, start: float, stop: float) -> ClipFile | None:
        return self._records.clip_file(camera_id, start, stop) if self._records is not None else None
