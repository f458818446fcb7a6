"""Where a live stream's packets come from: `PacketSource`, and the two sources of live video.

A `LiveStream` reads one source on its own sender thread, which is the only thread a stream
has: `open()` once the platform is connected, then `get(timeout)` until the stream stops or the
source says it ended (`end_reason`), then `close()`. What a source hands out always decodes:
it starts at a keyframe and, after a loss, goes on from the next one (a `StreamGap` says so).

- `RingSource`: a camera's `PacketRing` (fed by the analysis reader: one RTSP session per
  camera, whatever watches it). It subscribes at the ring's last keyframe when opened, so the
  platform sees a picture at once; it ends when the camera stops (the ring is closed) or sends
  nothing for `no_video_s` (a camera gone for good: the platform is told with BYE instead of
  watching a frozen picture).
- `FrameQueue`: packets handed over with `LiveStream.feed` (a caller that has its own thread).
- `gateway.outputs.gb28181.playback.ClipPlayer`: an evidence clip, paced by its timestamps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from gateway.video.packets import EncodedPacket, PacketRing, PacketSubscription, StreamGap

QUEUE_FRAMES = 150
"""About 6 s at 25 fps: room for a platform's short stall before packets are dropped."""
QUEUE_BYTES = 16 * 1024 * 1024
NO_VIDEO_S = 10.0
"""A camera silent this long ends its live streams (the reader is reconnecting, or gave up)."""


class PacketSource(Protocol):
    """What a `LiveStream` sends (see the module docstring)."""

    @property
    def dropped(self) -> int:
        """Packets lost because the stream fell behind (it resumed at the next keyframe)."""
        ...

    @property
    def skipped(self) -> int:
        """Packets left out before a decodable start (the first keyframe, the requested time)."""
        ...

    def open(self) -> None: ...

    def get(self, timeout: float) -> EncodedPacket | StreamGap | None:
        """The next packet or gap, or None after `timeout` (or once ended)."""
        ...

    @property
    def end_reason(self) -> str | None:
        """Why no packet will come any more (None while the source goes on)."""
        ...

    def close(self) -> None: ...


class RingSource:
    """A camera's packets from its ring, from the last keyframe held (see the module docstring).
    `limit`: packets the stream may fall behind before it loses some (then resumes at a keyframe)."""

    def __init__(self, ring: PacketRing, *, limit: int = QUEUE_FRAMES, no_video_s: float = NO_VIDEO_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ring, self.limit, self.no_video_s, self._clock = ring, limit, no_video_s, clock
        self._subscription: PacketSubscription | None = None
        self._last_packet_at = 0.0
        self._end_reason: str | None = None
        self.skipped = 0

    @property
    def dropped(self) -> int:
        return self._subscription.lost_packets if self._subscription is not None else 0

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    def open(self) -> None:
        self._subscription = self.ring.subscribe("last_keyframe", limit=self.limit)
        self._last_packet_at = self._clock()

    def get(self, timeout: float) -> EncodedPacket | StreamGap | None:
        subscription = self._subscription
        if subscription is None or self._end_reason is not None:
            return None
        item = subscription.get(timeout)
        now = self._clock()
        if item is not None:
            self._last_packet_at = now
        elif subscription.ended:
            self._end_reason = f"camera {self.ring.name} stopped"
        elif now - self._last_packet_at >= self.no_video_s:
            self._end_reason = f"camera {self.ring.name} sent no video for {self.no_video_s:g} s"
        return item

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()


class FrameQueue:
    """The bounded, thread-safe hand-over from the camera's thread to the sender thread.

    `put` never blocks. It refuses non-keyframes until the first keyframe (skipped); when the
    queue is full it drops the packet and everything after it until the next keyframe, which
    then replaces whatever is still queued (the receiver is behind: old frames only add delay).
    """

    def __init__(self, max_frames: int = QUEUE_FRAMES, max_bytes: int = QUEUE_BYTES):
        self.max_frames, self.max_bytes = max_frames, max_bytes
        self._items: deque[EncodedPacket] = deque()
        self._bytes = 0
        self._ready = threading.Condition()
        self._closed = False
        self._resync: Literal["start", "overflow"] | None = "start"
        self.dropped = 0
        self.skipped = 0

    def put(self, packet: EncodedPacket) -> bool:
        """Queue `packet`; False if it was dropped or skipped."""
        with self._ready:
            if self._closed:
                return False
            if self._resync and not packet.keyframe:
                self._count_lost(1)
                return False
            if len(self._items) >= self.max_frames or self._bytes + len(packet.data) > self.max_bytes:
                if not packet.keyframe or self._resync is None:
                    self._resync = "overflow"
                    self.dropped += 1
                    return False
                self.dropped += len(self._items)
                self._items.clear()
                self._bytes = 0
            self._resync = None
            self._items.append(packet)
            self._bytes += len(packet.data)
            self._ready.notify()
            return True

    def get(self, timeout: float) -> EncodedPacket | None:
        """The oldest packet, or None after `timeout` or once closed."""
        with self._ready:
            if not self._items and not self._closed:
                self._ready.wait(timeout)
            if not self._items or self._closed:
                return None
            packet = self._items.popleft()
            self._bytes -= len(packet.data)
            return packet

    end_reason: str | None = None
    """A queue fed by its caller never ends by itself: the stream stops when told."""

    def open(self) -> None:
        """The platform is connected: start at the latest keyframe queued (`trim_to_latest_keyframe`)."""
        self.trim_to_latest_keyframe()

    def trim_to_latest_keyframe(self) -> None:
        """Drop what precedes the newest queued keyframe (counted as skipped): a stream that
        waited for its peer starts at the latest keyframe, not seconds behind live."""
        with self._ready:
            last_key = max((index for index, item in enumerate(self._items) if item.keyframe), default=0)
            for _ in range(last_key):
                self._bytes -= len(self._items.popleft().data)
                self.skipped += 1

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _count_lost(self, count: int) -> None:
        if self._resync == "start":
            self.skipped += count
        else:
            self.dropped += count
