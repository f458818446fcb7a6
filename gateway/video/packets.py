"""Encoded video as the camera sent it: the packets the reader demuxes, before any decoding.

Evidence clips (remuxed to MP4) and GB/T 28181 live video (remuxed to MPEG-2 PS over RTP) are
both made of these packets, never of decoded frames: no re-encoding, so they cost almost
nothing and show exactly what the camera sent. The reader hands every packet it demuxes to the
camera's packet sink, whatever its decode mode (keyframe-only decoding still reads every
packet), so this is the one place the encoded stream leaves the ingest.

Plain data: `StreamInfo` describes the stream (codec, size, time base, codec configuration),
shared by all packets of one connection; a new connection (reconnect, new profile) brings a new
`StreamInfo`, and consumers that remux must start a new file or stream at that point.

`PacketRing` is each camera's short memory of these packets (the pre-roll of evidence clips)
and their fan-out to the consumers that follow the live stream (a clip being recorded, a
GB/T 28181 live stream): the reader thread appends, consumers read from their own threads
through bounded `PacketSubscription` queues, so a slow consumer never holds up the camera.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One connection's video stream, as a muxer needs it.

    codec: FFmpeg's codec name ("h264", "hevc", "msmpeg4v3", ...). extradata: the codec
    configuration as the demuxer gave it: Annex B parameter sets from RTSP (SPS/PPS, with VPS
    for H.265), or an avcC/hvcC record from an MP4 file (then packets are length-prefixed, not
    Annex B). time_base: the unit of every packet's pts/dts. fps: the nominal frame rate, if
    the source declares one.
    """

    codec: str
    width: int
    height: int
    time_base: Fraction
    extradata: bytes | None = None
    fps: float | None = None

    @property
    def remuxable(self) -> bool:
        """H.264 and H.265 can be remuxed into MP4 clips that browsers play and into GB/T 28181
        PS streams; other codecs (the old MS-MPEG-4 sample AVI) cannot."""
        return self.codec in ("h264", "hevc")


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One demuxed packet (for video: one access unit).

    pts/dts: in `stream.time_base` units (None when the demuxer gave none). received_at:
    `time.monotonic()` when the reader read it (the clock the rest of the gateway uses for
    frame age and alert timing). keyframe: the packet starts a GOP (an IDR/IRAP picture).
    """

    data: bytes
    pts: int | None
    dts: int | None
    keyframe: bool
    received_at: float
    stream: StreamInfo

    @property
    def t(self) -> float | None:
        """Presentation time in seconds of stream time, if known (dts when pts is missing)."""
        ticks = self.pts if self.pts is not None else self.dts
        return None if ticks is None else float(ticks * self.stream.time_base)


# --------------------------------------------------------------------------- the ring

SubscribeFrom = Literal["next_keyframe", "last_keyframe"] | float
"""Where a subscription starts: the next keyframe the camera sends, the newest keyframe held,
or the last keyframe at or before a ring time (`time.monotonic()`, the packets' `received_at`)."""

DEFAULT_KEEP_S = 5.0
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""5 s of a 4 Mbit/s main stream is 2.5 MB (plus up to one GOP): 16 MB only stops a runaway."""
DEFAULT_QUEUE_PACKETS = 250
"""10 s of a 25 fps stream: a subscriber that falls further behind starts losing packets."""


@dataclass(frozen=True, slots=True)
class StreamGap:
    """What a subscriber gets between two packets when the packets do not follow on.

    reason "lost": the subscriber fell behind, `lost_packets` were dropped for it, and the next
    packet is a keyframe. reason "new_stream": the camera reconnected (a new `StreamInfo`); the
    next packet is the new stream's first keyframe, and a file or stream being remuxed must end
    here (timestamps restart, the codec configuration may differ). `lost_packets` counts what
    was lost before it too.
    """

    reason: Literal["lost", "new_stream"]
    lost_packets: int = 0


@dataclass(frozen=True, slots=True)
class RingStats:
    """One camera's ring, for health and /metrics.

    packets/bytes/seconds: what the ring holds now (seconds from its oldest keyframe to its
    newest packet). dropped_gops/dropped_bytes: whole GOPs dropped early because `max_bytes`
    was reached (not the normal expiry after `keep_s`). lost_packets: packets slow subscribers
    lost. streams: connections seen (each new `StreamInfo`).
    """

    packets: int
    bytes: int
    seconds: float
    keep_s: float
    max_bytes: int
    dropped_gops: int
    dropped_bytes: int
    subscribers: int
    lost_packets: int
    streams: int


class _Gop:
    """A keyframe and the packets that depend on it: the unit the ring keeps and drops."""

    __slots__ = ("packets", "nbytes", "start")

    def __init__(self, keyframe: EncodedPacket):
        self.packets = [keyframe]
        self.nbytes = len(keyframe.data)
        self.start = keyframe.received_at


class PacketSubscription:
    """A bounded queue of one consumer's packets, fed by the ring without ever blocking it.

    `get` returns packets in order, a `StreamGap` where packets do not follow on, or None (on
    timeout, or once the subscription has ended and its queue is drained: see `ended`).
    A consumer that falls `limit` packets behind loses packets until the next keyframe with
    room in the queue; it then gets `StreamGap("lost", n)` before that keyframe, so what it
    receives always starts at a keyframe and stays decodable. The packets are the ring's own
    objects (shared, never copied).
    """

    def __init__(self, ring: PacketRing, prefill: list[EncodedPacket], limit: int,
                 wake: threading.Event | None):
        self._ring = ring
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[EncodedPacket | StreamGap] = deque(prefill)
        self._packets = len(prefill)
        self._limit = limit + len(prefill)
        self._wake = wake
        self._resync = not prefill  # waiting for a keyframe: nothing decodable to hand out yet
        self._pending_lost = 0
        self._source_ended = False
        self._closed = False
        self.lost_packets = 0

    def get(self, timeout: float | None = None) -> EncodedPacket | StreamGap | None:
        """The next item, waiting up to `timeout` seconds (None: forever) for one."""
        with self._cond:
            if not self._queue and not (self._source_ended or self._closed):
                self._cond.wait(timeout)
            return self._pop()

    def get_nowait(self) -> EncodedPacket | StreamGap | None:
        with self._cond:
            return self._pop()

    @property
    def ended(self) -> bool:
        """No item will come any more: closed, or the ring closed and the queue is drained."""
        with self._cond:
            return self._closed or (self._source_ended and not self._queue)

    @property
    def queued(self) -> int:
        """Packets waiting in the queue."""
        return self._packets

    def close(self) -> None:
        """Stop receiving; drops what is queued. Idempotent."""
        self._ring._unsubscribe(self)  # the ring and its subscriptions are one unit
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._packets = 0
            self._cond.notify_all()

    def __enter__(self) -> PacketSubscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- the ring's side

    def _pop(self) -> EncodedPacket | StreamGap | None:
        if not self._queue:
            return None
        item = self._queue.popleft()
        if type(item) is EncodedPacket:
            self._packets -= 1
        return item

    def _offer(self, packet: EncodedPacket) -> None:
        """Called by the ring (reader thread) for every packet: queue it or count it lost."""
        with self._cond:
            if self._closed:
                return
            if self._resync:
                if not packet.keyframe or self._packets >= self._limit:
                    if self._pending_lost:
                        self._pending_lost += 1
                        self.lost_packets += 1
                    return
                if self._pending_lost:
                    self._queue.append(StreamGap("lost", self._pending_lost))
                    self._pending_lost = 0
                self._resync = False
            elif self._packets >= self._limit:
                self._resync = True
                self._pending_lost = 1
                self.lost_packets += 1
                return
            self._queue.append(packet)
            self._packets += 1
            self._cond.notify()
        if self._wake is not None:
            self._wake.set()

    def _new_stream(self) -> None:
        """The camera reconnected: say so now (a clip ends here) and wait for its first keyframe."""
        with self._cond:
            if self._closed:
                return
            self._queue.append(StreamGap("new_stream", self._pending_lost))
            self._pending_lost = 0
            self._resync = True
            self._cond.notify()
        if self._wake is not None:
            self._wake.set()

    def _source_end(self) -> None:
        with self._cond:
            self._source_ended = True
            self._cond.notify_all()
        if self._wake is not None:
            self._wake.set()


class PacketRing:
    """One camera's recent encoded packets, GOP-aligned, and their fan-out to live consumers.

    The reader thread calls `put` for every packet; everything else runs in other threads.
    The ring keeps whole GOPs: the packets from the last keyframe at or before
    `newest - keep_s` on, so a clip's pre-roll can always start on a keyframe; a GOP leaves
    only when the next one's keyframe is old enough. `max_bytes` caps the memory whatever the
    bitrate: the oldest GOPs go first (counted as drops), and if one GOP alone exceeds it the
    ring holds nothing until the next keyframe. Time is the packets' `received_at`
    (`time.monotonic()`), the clock alerts are timed with.

    A new `StreamInfo` object (the reader builds one per connection) is a boundary: the ring
    forgets the old stream's packets, and subscribers get `StreamGap("new_stream")`, so
    neither a snapshot nor a subscription ever mixes two connections. Packets before a
    stream's first keyframe are not held or passed on (nothing can be decoded from them).

    `put` costs a lock, a list append and one queue append per subscriber: it never waits for
    a consumer (see `PacketSubscription`). `name` (the camera id) is for the consumers' logs.
    """

    def __init__(self, name: str = "", keep_s: float = DEFAULT_KEEP_S, max_bytes: int = DEFAULT_MAX_BYTES):
        if keep_s < 0:
            raise ValueError(f"packet ring {name}: keep_s must be >= 0, got {keep_s}")
        if max_bytes <= 0:
            raise ValueError(f"packet ring {name}: max_bytes must be positive, got {max_bytes}")
        self.name = name
        self._keep_s = float(keep_s)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._gops: deque[_Gop] = deque()
        self._bytes = 0
        self._packets = 0
        self._newest: EncodedPacket | None = None
        self._stream: StreamInfo | None = None
        self._streams = 0
        self._skip_to_keyframe = False
        self._subscribers: tuple[PacketSubscription, ...] = ()
        self._dropped_gops = 0
        self._dropped_bytes = 0
        self._lost_by_closed = 0
        self._closed = False

    @property
    def keep_s(self) -> float:
        return self._keep_s

    @keep_s.setter
    def keep_s(self, value: float) -> None:
        """Changeable at run time (a longer pre-roll configured); applies from the next packet."""
        if value < 0:
            raise ValueError(f"packet ring {self.name}: keep_s must be >= 0, got {value}")
        self._keep_s = float(value)

    @property
    def stream(self) -> StreamInfo | None:
        """The current connection's stream (None before the first packet)."""
        return self._stream

    # ----------------------------------------------------------------- the reader's side

    def put(self, packet: EncodedPacket) -> None:
        """Hold `packet` and hand it to every subscriber. Never blocks on a consumer."""
        with self._lock:
            if self._closed:
                return
            if packet.stream is not self._stream:
                self._begin_stream(packet.stream)
            size = len(packet.data)
            if packet.keyframe:
                self._gops.append(_Gop(packet))
                self._skip_to_keyframe = False
            elif self._gops and not self._skip_to_keyframe:
                gop = self._gops[-1]
                gop.packets.append(packet)
                gop.nbytes += size
            else:
                size = -1  # no keyframe to hang it on: not held (subscribers filter it too)
            if size >= 0:
                self._bytes += size
                self._packets += 1
                self._newest = packet
                self._expire(packet.received_at)
            for subscriber in self._subscribers:
                subscriber._offer(packet)

    def close(self) -> None:
        """The camera stopped: subscriptions end once drained, the packets are let go, and
        later packets (a reader still finishing a network call) are ignored."""
        with self._lock:
            self._closed = True
            subscribers, self._subscribers = self._subscribers, ()
            self._clear()
        for subscriber in subscribers:
            subscriber._source_end()

    def _begin_stream(self, stream: StreamInfo) -> None:
        reconnected = self._stream is not None
        self._stream = stream
        self._streams += 1
        self._clear()
        self._skip_to_keyframe = False
        if reconnected:
            for subscriber in self._subscribers:
                subscriber._new_stream()

    def _clear(self) -> None:
        self._gops.clear()
        self._bytes = self._packets = 0
        self._newest = None

    def _expire(self, now: float) -> None:
        gops = self._gops
        cutoff = now - self._keep_s
        while len(gops) > 1 and gops[1].start <= cutoff:
            self._forget_oldest()
        while self._bytes > self.max_bytes and gops:
            if len(gops) == 1:
                self._skip_to_keyframe = True  # one GOP alone is too big: hold nothing until the next
            self._dropped_bytes += gops[0].nbytes
            self._dropped_gops += 1
            self._forget_oldest()
        if not gops:
            self._newest = None

    def _forget_oldest(self) -> None:
        gop = self._gops.popleft()
        self._bytes -= gop.nbytes
        self._packets -= len(gop.packets)

    # ----------------------------------------------------------------- the consumers' side

    def snapshot(self, since: float) -> list[EncodedPacket]:
        """The packets held from the last keyframe at or before ring time `since` (or from the
        oldest keyframe held, if `since` is older), all of one stream; [] before any keyframe."""
        with self._lock:
            return self._packets_since(since)

    def subscribe(self, start: SubscribeFrom = "next_keyframe", *, limit: int = DEFAULT_QUEUE_PACKETS,
                  wake: threading.Event | None = None) -> PacketSubscription:
        """A queue of the packets from `start` on: the held packets it asks for, then every new
        one. `limit`: packets the consumer may fall behind (on top of those held ones) before
        it loses some. `wake`: an event set whenever something is queued (one consumer thread
        can serve many subscriptions). Close it when done."""
        if limit < 1:
            raise ValueError(f"packet ring {self.name}: a subscription needs a limit >= 1, got {limit}")
        with self._lock:
            if start == "next_keyframe":
                prefill: list[EncodedPacket] = []
            elif start == "last_keyframe":
                prefill = list(self._gops[-1].packets) if self._gops else []
            elif isinstance(start, int | float) and not isinstance(start, bool):
                prefill = self._packets_since(float(start))
            else:
                raise ValueError(f"packet ring {self.name}: subscribe from 'next_keyframe', 'last_keyframe'"
                                 f" or a ring time, got {start!r}")
            subscription = PacketSubscription(self, prefill, limit, wake)
            if self._closed:
                subscription._source_end()
            else:
                self._subscribers = (*self._subscribers, subscription)
        return subscription

    def _packets_since(self, since: float) -> list[EncodedPacket]:
        gops = self._gops
        if not gops:
            return []
        first = 0
        for index in range(len(gops) - 1, -1, -1):
            if gops[index].start <= since:
                first = index
                break
        packets: list[EncodedPacket] = []
        for index in range(first, len(gops)):
            packets.extend(gops[index].packets)
        return packets

    def _unsubscribe(self, subscription: PacketSubscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscription)
                self._lost_by_closed += subscription.lost_packets

    def stats(self) -> RingStats:
        with self._lock:
            seconds = self._newest.received_at - self._gops[0].start if self._newest and self._gops else 0.0
            return RingStats(
                packets=self._packets, bytes=self._bytes, seconds=round(seconds, 3), keep_s=self._keep_s,
                max_bytes=self.max_bytes, dropped_gops=self._dropped_gops, dropped_bytes=self._dropped_bytes,
                subscribers=len(self._subscribers),
                lost_packets=self._lost_by_closed + sum(s.lost_packets for s in self._subscribers),
                streams=self._streams,
            )
