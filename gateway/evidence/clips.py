"""One camera's evidence clips: which packets go into which event's clip, and when a clip is done.

Pure logic over the camera's `PacketRing`, the `ClipStore` and `Mp4ClipWriter`, with the
clocks passed in (`clock`: monotonic, the alerts' and packets' time; `wall_clock`: epoch
seconds, for the `from`/`to` the payload shows), so every rule below is tested without threads.

The rules (per event, `ClipPolicy`):
* start (event id, monotonic start time t): the clip begins at the last keyframe at or before
  t - pre_s that the ring still holds (the ring keeps pre_s + start_delay_s, so an alert that
  reaches the recorder a little late still gets its whole pre-roll), and then takes the live
  packets. It ends after the first packet later than t + max_s, unless the event ends first:
* end (event id, monotonic end time): the clip goes on until end + post_s (still capped).
* `ready`: it reached its planned end. `partial`: cut short: the camera reconnected (a clip
  cannot span two connections), the camera stopped (the ring closed), nothing arrived for
  `stall_s` after the planned end, packets were lost (the writer fell behind), or the disk
  failed or came near its floor of free space (`gateway.delivery.storage`: alerts come
  first). `failed`: no playable file (a codec MP4 cannot carry, no video at all).
* Overlapping events each get their own clip, each through its own ring subscription: the
  packets are the ring's objects, shared, never copied per clip.
* A start for an event that already has a clip is ignored (a resent message), as is an end
  for an unknown one. A corrupt packet is skipped by the writer; the clip goes on.

Who calls what (so the camera's reader thread never writes a file): `start` and `end` come
from whoever sees the event's messages (the camera's analysis, on the scheduler thread): they
only subscribe to the ring and note times, no I/O. `pump` does all the writing and runs on the
gateway's one clip writer thread (`gateway.evidence.worker.ClipWorker`), woken by the
subscriptions when packets arrive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import av

from gateway.delivery.storage import has_room
from gateway.evidence.mp4 import ClipFormatError, Mp4ClipWriter
from gateway.evidence.store import ClipInfo, ClipStatus, ClipStore, is_event_id
from gateway.video.packets import EncodedPacket, PacketRing, PacketSubscription, StreamGap

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClipPolicy:
    """How long clips are. pre_s/post_s: before the start, after the end; max_s: after the start
    at most. stall_s: how long past its planned end a clip waits for a packet before it is cut
    (a stalled camera). start_delay_s: how late an alert start may reach the recorder after
    its time t (analysis latency); the ring keeps pre_s + this. max_open: clips one camera
    records at once (more overlapping events get a `failed` clip)."""

    pre_s: float = 5.0
    post_s: float = 5.0
    max_s: float = 120.0
    stall_s: float = 10.0
    start_delay_s: float = 3.0
    max_open: int = 8

    def __post_init__(self) -> None:
        for name in ("pre_s", "post_s", "start_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"clip {name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_s", "stall_s", "max_open"):
            if getattr(self, name) <= 0:
                raise ValueError(f"clip {name} must be positive, got {getattr(self, name)}")

    @property
    def ring_keep_s(self) -> float:
        return self.pre_s + self.start_delay_s


class _Clip:
    """One event's clip while it is recorded (owned by the recorder; times are monotonic)."""

    def __init__(self, info: ClipInfo, start_t: float, stop_at: float,
                 subscription: PacketSubscription | None, failure: str | None = None):
        self.info = info
        self.start_t = start_t
        self.stop_at = stop_at
        self.event_ended = False
        self.subscription = subscription
        self.failure = failure
        self.writer: Mp4ClipWriter | None = None
        self.in_store = False
        self.lost_packets = 0


class ClipRecorder:
    """One camera's clips: `start`/`end` from the event side, `pump` from the writer thread.

    ring: the camera's packet ring (its keep_s is raised to the policy's pre-roll needs).
    store: where the files go. wake: an event the ring subscriptions set when packets arrive
    (the writer thread's, so it sleeps while there is nothing to write).
    """

    def __init__(self, camera_id: str, ring: PacketRing, store: ClipStore, policy: ClipPolicy | None = None,
                 *, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 wake: threading.Event | None = None):
        self.camera_id = camera_id
        self.ring = ring
        self.store = store
        self.policy = policy or ClipPolicy()
        self.clock, self.wall_clock, self.wake = clock, wall_clock, wake
        ring.keep_s = max(ring.keep_s, self.policy.ring_keep_s)
        self._lock = threading.Lock()
        self._clips: dict[str, _Clip] = {}

    # ----------------------------------------------------------------- the event side (no I/O)

    def start(self, event_id: str, t: float) -> ClipInfo:
        """The event started at monotonic time `t`: its clip starts recording (its status)."""
        if not is_event_id(event_id):
            raise ValueError(f"camera {self.camera_id}: not an event id: {event_id!r}")
        with self._lock:
            clip = self._clips.get(event_id)
            if clip is not None:
                return clip.info
            stored = self.store.get(event_id)
            if stored is not None:
                return stored
            info = ClipInfo(event_id, self.camera_id, "recording", event_ts=self._epoch(t))
            if len(self._clips) >= self.policy.max_open:
                clip = _Clip(info, t, t, None, f"this camera already records {self.policy.max_open} clips at once")
            else:
                subscription = self.ring.subscribe(t - self.policy.pre_s, wake=self.wake)
                clip = _Clip(info, t, t + self.policy.max_s, subscription)
            self._clips[event_id] = clip
        if self.wake is not None:
            self.wake.set()
        return info

    def end(self, event_id: str, t: float) -> None:
        """The event ended at monotonic time `t`: its clip runs on until t + post_s (capped)."""
        with self._lock:
            clip = self._clips.get(event_id)
            if clip is None or clip.event_ended:
                return
            clip.event_ended = True
            clip.stop_at = min(t + self.policy.post_s, clip.start_t + self.policy.max_s)

    def info(self, event_id: str) -> ClipInfo | None:
        """The clip's status now: while recording from here, afterwards from the store."""
        with self._lock:
            clip = self._clips.get(event_id)
        return clip.info if clip is not None else self.store.get(event_id)

    @property
    def recording(self) -> int:
        """Clips being recorded now."""
        with self._lock:
            return len(self._clips)

    # ----------------------------------------------------------------- the writer side

    def pump(self, now: float | None = None) -> list[ClipInfo]:
        """Write what has arrived to each clip and finish the clips that are done. Returns the
        clips finished by this call. Never raises for one clip's trouble (it fails that clip)."""
        now = self.clock() if now is None else now
        with self._lock:
            clips = list(self._clips.values())
        return [info for clip in clips if (info := self._advance_guarded(clip, now)) is not None]

    def close(self, reason: str = "the camera stopped") -> list[ClipInfo]:
        """End every clip now (what arrived is kept) as partial: the camera or the gateway stops."""
        with self._lock:
            clips = list(self._clips.values())
        finished = []
        for clip in clips:
            if not clip.in_store:
                self.store.begin(clip.info)
                clip.in_store = True
            outcome = self._drain(clip) if clip.failure is None else ("failed", clip.failure)
            finished.append(self._finish(clip, *(outcome or ("partial", reason))))
        return finished

    def _advance_guarded(self, clip: _Clip, now: float) -> ClipInfo | None:
        """`_advance`, but an unexpected error fails that clip instead of every later pump."""
        try:
            return self._advance(clip, now)
        except Exception as error:  # noqa: BLE001 - one clip's bug must not stop the camera's other clips
            log.exception("camera %s: clip of event %s failed unexpectedly", self.camera_id, clip.info.event_id)
            with self._lock:
                self._clips.pop(clip.info.event_id, None)
            if clip.subscription is not None:
                clip.subscription.close()
            try:
                return self._finish(clip, "failed", f"internal error: {type(error).__name__}: {error}")
            except Exception:  # noqa: BLE001 - already logged above; the clip is dropped
                return None

    def _advance(self, clip: _Clip, now: float) -> ClipInfo | None:
        if not clip.in_store:
            self.store.begin(clip.info)
            clip.in_store = True
        if clip.failure is not None:
            return self._finish(clip, "failed", clip.failure)
        outcome = self._drain(clip)
        if outcome is not None:
            return self._finish(clip, *outcome)
        if clip.writer is not None and not has_room(self.store.folder):
            return self._finish(clip, "partial", "the data disk is nearly full: the clip stops here so that "
                                                 "alerts can still be written")
        subscription = clip.subscription
        assert subscription is not None
        if subscription.ended:
            return self._finish(clip, "partial", "the camera stopped")
        with self._lock:
            stop_at = clip.stop_at
        if now > stop_at + self.policy.stall_s:
            return self._finish(clip, "partial", f"the camera sent nothing for {self.policy.stall_s:g} s "
                                                 "after the clip's planned end")
        writer = clip.writer
        if writer is not None and writer.packets:
            self.store.progress(clip.info.event_id, _file_size(writer), self._wall(writer.last_received_at),
                                writer.packets)
        return None

    def _drain(self, clip: _Clip) -> tuple[ClipStatus, str | None] | None:
        """Write the queued packets; (status, reason) once the clip is done, else None."""
        subscription = clip.subscription
        if subscription is None:
            return None
        while (item := subscription.get_nowait()) is not None:
            if isinstance(item, StreamGap):
                if item.reason == "new_stream" and clip.writer is not None and clip.writer.packets:
                    return "partial", "the camera reconnected (a clip cannot span two connections)"
                clip.lost_packets += item.lost_packets
                continue
            with self._lock:
                stop_at, capped = clip.stop_at, not clip.event_ended
            if item.received_at > stop_at:
                return self._planned_end(clip, capped)
            failure = self._write(clip, item)
            if failure is not None:
                return failure
        return None

    def _planned_end(self, clip: _Clip, capped: bool) -> tuple[ClipStatus, str | None]:
        if clip.lost_packets:
            return "partial", (f"{clip.lost_packets} packets were lost (the clip writer fell behind)")
        return "ready", (f"capped at {self.policy.max_s:g} s after the event's start" if capped else None)

    def _write(self, clip: _Clip, packet: EncodedPacket) -> tuple[ClipStatus, str] | None:
        try:
            if clip.writer is None:
                clip.writer = Mp4ClipWriter(self.store.path(clip.info.event_id), packet.stream)
                clip.info = replace(clip.info, codec=packet.stream.codec)
                self.store.save(clip.info)
            clip.writer.write(packet)
        except ClipFormatError as error:
            return "failed", str(error)
        except (OSError, av.FFmpegError) as error:
            return "partial", f"cannot write the clip file: {error}"
        return None

    def _finish(self, clip: _Clip, status: ClipStatus, reason: str | None) -> ClipInfo:
        writer = clip.writer
        if writer is not None:
            try:
                writer.close()
            except (OSError, av.FFmpegError) as error:
                status, reason = "partial", f"cannot finish the clip file: {error}"
        written = writer.packets if writer is not None else 0
        if status != "failed" and not written:
            status, reason = "failed", f"no video arrived ({reason or 'the clip ended'})"
        info = replace(
            clip.info, status=status, reason=reason, packets=written,
            from_ts=self._wall(writer.first_received_at) if writer else None,
            to_ts=self._wall(writer.last_received_at) if writer else None,
            size=_file_size(writer) if writer and written else 0,
        )
        clip.info = info
        if clip.subscription is not None:
            clip.subscription.close()
        with self._lock:
            self._clips.pop(info.event_id, None)
        self.store.save(info)
        self._log(info, writer)
        return info

    def _log(self, info: ClipInfo, writer: Mp4ClipWriter | None) -> None:
        length = f"{writer.duration_s:.1f} s, {info.size / 1e6:.1f} MB" if writer and writer.packets else "empty"
        if info.status == "ready":
            log.info("camera %s: clip of event %s ready (%s)%s", self.camera_id, info.event_id, length,
                     f"; {info.reason}" if info.reason else "")
        else:
            log.warning("camera %s: clip of event %s is %s (%s): %s", self.camera_id, info.event_id,
                        info.status, length, info.reason)

    def _epoch(self, t: float) -> float:
        """Epoch seconds of monotonic time `t`."""
        return self.wall_clock() - (self.clock() - t)

    def _wall(self, t: float | None) -> float | None:
        return None if t is None else self._epoch(t)


def _file_size(writer: Mp4ClipWriter) -> int:
    try:
        return writer.path.stat().st_size
    except OSError:
        return 0
