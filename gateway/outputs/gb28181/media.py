"""`LiveStream`: one camera's video to one GB/T 28181 destination, over UDP or TCP. The I/O.

The SIP side answers an INVITE with `sdp.build_answer`, using the port this stream bound at
construction (`local_port`), starts the stream on ACK, stops it on BYE, and learns from
`on_end` when the stream ended by itself (the peer went away, never connected, or the camera
switched to a codec that cannot be remuxed) so that it can send BYE. Nothing about SIP here.

Transports, named from the gateway's side as in the SDP answer's `a=setup`:
- "udp": datagrams to the platform's address and port, from the bound local port (connected,
  so that the kernel reports ICMP port unreachable): a media server that refuses the stream
  for `send_timeout_s` ends it; one that silently drops it is ended by the platform's BYE.
- "tcp-active": the gateway connects from the bound local port to the platform's address and
  port, then sends RFC 4571-framed RTP.
- "tcp-passive": the gateway listens on the bound port and streams to the first connection;
  if none arrives within `accept_timeout_s`, the stream ends.

The packets come from a `sources.PacketSource` read by the stream's one sender thread: a
camera's packet ring (`RingSource`: the ring hands each subscriber its own bounded queue and
never waits for it), an evidence clip (`playback.ClipPlayer`, paced by its timestamps), or,
without a source, `feed(packet)` from a caller's thread (a bounded `FrameQueue`). When the
sender falls behind (a slow TCP peer), packets are dropped until the next keyframe, so what the
platform gets always decodes. One sender thread per stream: a TCP send to a slow platform
blocks, and must block only that stream; a platform watches a few channels at a time, so the
threads are few (a shared selector thread would need non-blocking partial writes for every TCP
peer, for no saving that matters). Conversion (h26x -> PS -> RTP, see `remux`) runs on the
sender thread, not on the camera's. The source ending (the camera stopped, the clip is over)
ends the stream with its reason, through `on_end`.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.outputs.gb28181.remux import PacketRemuxer, UnsupportedStream
from gateway.outputs.gb28181.rtp import DEFAULT_PAYLOAD_TYPE, rfc4571_frame, ssrc_to_y
from gateway.outputs.gb28181.sdp import InviteOffer, Transport
from gateway.outputs.gb28181.sources import QUEUE_BYTES, QUEUE_FRAMES, FrameQueue, PacketSource
from gateway.video.packets import EncodedPacket, StreamGap, StreamInfo

__all__ = ["QUEUE_BYTES", "QUEUE_FRAMES", "TRANSPORTS", "FrameQueue", "LiveStream", "LiveStreamHealth"]

log = logging.getLogger(__name__)

TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp-active", "tcp-passive")
POLL_S = 0.2
REFUSED_GAP_S = 3.0
"""ICMP refusals this far apart are separate episodes (the kernel rate-limits them per host)."""
"""How often a thread waiting for a connection looks at `stop()`."""

State = Literal["connecting", "streaming", "ended"]


@dataclass(frozen=True, slots=True)
class LiveStreamHealth:
    """One live stream, for operators: counters since `start()`.

    frames_dropped: lost to overload (the queue was full) or to a packet that could not be
    converted; the stream then resumed at the next keyframe. frames_skipped: not sendable yet
    (before the first keyframe, after a reconnect of the camera, or older than the keyframe
    the stream started at once the platform connected).
    """

    camera_id: str
    destination: str
    state: State
    started_at: float | None
    """Unix time of `start()`."""
    bytes_sent: int
    rtp_packets: int
    frames_sent: int
    frames_dropped: int
    frames_skipped: int
    end_reason: str | None


class _Ended(Exception):
    """The stream cannot go on; the message is the reason given to `on_end`."""


class LiveStream:
    """Sends one camera's video to one destination (see the module docstring).

    stream: the camera's current `StreamInfo`; a codec that cannot be remuxed is refused here
    (ValueError); None when not known yet (a clip's, read when it is opened: a codec that
    cannot be remuxed then ends the stream). remote: the platform's (address, port) from the
    offer; not used for "tcp-passive". ssrc: from the offer's y= line (`rtp.ssrc_from_y`).
    bind_host/local_port: where the local socket is bound now (port 0: any free port; read
    `local_port` for the SDP answer). source: where the packets come from (opened on the
    sender thread once the platform is connected); None: `feed`. on_end(reason): called once,
    from the sender thread, when the stream ends by itself; not called after `stop()`.
    """

    def __init__(self, camera_id: str, stream: StreamInfo | None, transport: Transport, *, ssrc: int,
                 remote: tuple[str, int] | None = None, bind_host: str = "0.0.0.0", local_port: int = 0,
                 payload_type: int = DEFAULT_PAYLOAD_TYPE, on_end: Callable[[str], None] | None = None,
                 accept_timeout_s: float = 10.0, connect_timeout_s: float = 5.0, send_timeout_s: float = 10.0,
                 queue_frames: int = QUEUE_FRAMES, queue_bytes: int = QUEUE_BYTES,
                 first_sequence: int | None = None, source: PacketSource | None = None):
        if stream is not None and not stream.remuxable:
            raise ValueError(f"camera {camera_id}: {stream.codec} video cannot be sent as GB/T 28181 "
                             "PS without re-encoding (only H.264 and H.265)")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        if transport != "tcp-passive" and remote is None:
            raise ValueError(f"transport {transport} needs the platform's (address, port)")
        self.camera_id, self.transport, self.remote = camera_id, transport, remote
        self.on_end = on_end
        self.accept_timeout_s, self.connect_timeout_s = accept_timeout_s, connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self._remuxer = PacketRemuxer(ssrc, payload_type=payload_type, first_sequence=first_sequence)
        self._queue = FrameQueue(queue_frames, queue_bytes)
        self._source: PacketSource = source or self._queue
        self._socket = self._bind(bind_host, local_port)
        self.local_port: int = self._socket.getsockname()[1]
        self.destination = (f"{transport} listening on port {self.local_port}" if remote is None
                            else f"{transport} {remote[0]}:{remote[1]}")
        self._label = f"camera {camera_id}: live video ({self.destination}, SSRC {ssrc_to_y(ssrc)})"
        self._connection: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._state: State = "connecting"
        self._started_at: float | None = None
        self._end_reason: str | None = None
        self.bytes_sent = self.rtp_packets = self.frames_sent = 0
        self._refused_since: float | None = None
        self._refused_last = 0.0
        self._bad_frames = self._skipped_frames = 0

    @classmethod
    def for_offer(cls, camera_id: str, stream: StreamInfo | None, offer: InviteOffer, **options: Any) -> LiveStream:
        """The stream an SDP offer asks for: the gateway's side of its transport, the platform's
        address and port, its SSRC and PS payload type. `options` as for the constructor
        (bind_host, on_end, ...; `ssrc` only when the offer has no y= line)."""
        ssrc = offer.ssrc_value if offer.ssrc_value is not None else options.pop("ssrc", None)
        if ssrc is None:
            raise ValueError("the offer has no y= line: pass ssrc=")
        options.pop("ssrc", None)
        remote = None if offer.transport == "tcp-passive" else (offer.address, offer.port)
        return cls(camera_id, stream, offer.transport, ssrc=ssrc, remote=remote,
                   payload_type=offer.payload_type, **options)

    # ------------------------------------------------------------------ the caller's side

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self._label}: already started")
        self._started_at = time.time()
        self._thread = threading.Thread(target=self._run, name=f"gb28181-live-{self.camera_id}", daemon=True)
        self._thread.start()

    def feed(self, packet: EncodedPacket) -> bool:
        """Hand over one packet (a stream without a source); never blocks. False if it was
        dropped or skipped."""
        if self._source is not self._queue:
            raise RuntimeError(f"{self._label}: the stream reads its own source; feed() is not for it")
        return self._queue.put(packet)

    def stop(self, timeout: float = 5.0) -> None:
        """End the stream (on BYE); `on_end` is not called. Safe to call more than once."""
        self._stopping.set()
        self._queue.close()
        connection = self._connection
        if connection is not None:
            try:
                connection.shutdown(socket.SHUT_RDWR)  # wakes a send blocked on a slow peer
            except OSError:
                pass
        thread = self._thread
        if thread is None:
            self._close_sockets()
            self._state = "ended"
        elif thread is not threading.current_thread():
            thread.join(timeout)

    def health(self) -> LiveStreamHealth:
        return LiveStreamHealth(
            camera_id=self.camera_id, destination=self.destination, state=self._state,
            started_at=self._started_at, bytes_sent=self.bytes_sent, rtp_packets=self.rtp_packets,
            frames_sent=self.frames_sent, frames_dropped=self._source.dropped + self._bad_frames,
            frames_skipped=self._source.skipped + self._skipped_frames, end_reason=self._end_reason)

    # ------------------------------------------------------------------ the sender thread

    def _run(self) -> None:
        try:
            self._connect()
            if self._stopping.is_set():
                return
            self._state = "streaming"
            self._source.open()
            log.info("%s: streaming", self._label)
            self._pump()
        except _Ended as ended:
            if not self._stopping.is_set():
                self._end(str(ended))
        except Exception as error:  # noqa: BLE001 - a source's failure (an unreadable clip) ends this stream only
            if not self._stopping.is_set():
                log.exception("%s: unexpected error", self._label)
                self._end(f"{type(error).__name__}: {error}")
        finally:
            self._state = "ended"
            self._queue.close()
            self._source.close()
            self._close_sockets()
            if self._end_reason is None:
                log.info("%s: stopped after %d frames", self._label, self.frames_sent)

    def _pump(self) -> None:
        """Send what the source gives until the stream is stopped or the source ends."""
        source = self._source
        while not self._stopping.is_set():
            item = source.get(POLL_S)
            if item is None:
                if source.end_reason is not None:
                    raise _Ended(source.end_reason)
            elif isinstance(item, StreamGap):
                self._remuxer.resync()  # the next packet is a keyframe (of a new stream, after a reconnect)
                if item.reason == "new_stream":
                    log.info("%s: the camera reconnected; going on from its first keyframe", self._label)
            else:
                self._send_frame(item)

    def _send_frame(self, packet: EncodedPacket) -> None:
        try:
            rtp_packets = self._remuxer.remux(packet)
        except UnsupportedStream as error:
            raise _Ended(str(error)) from None
        except ValueError as error:
            self._bad_frames += 1
            self._remuxer.resync()
            log.warning("%s: dropped a frame that cannot be remuxed (%s); resuming at the next keyframe",
                        self._label, error)
            return
        if rtp_packets is None:
            self._skipped_frames += 1
            return
        if self.transport == "udp":
            self._send_datagrams(rtp_packets)
        else:
            self._send_stream(b"".join(rfc4571_frame(rtp) for rtp in rtp_packets))
        self.rtp_packets += len(rtp_packets)
        self.frames_sent += 1

    def _send_datagrams(self, rtp_packets: list[bytes]) -> None:
        assert self.remote is not None
        for rtp in rtp_packets:
            try:
                self._socket.send(rtp)
            except OSError as error:
                if error.errno == errno.ECONNREFUSED:
                    self._refused()
                    continue  # nobody listening (yet): UDP loses it, as on the wire
                if error.errno in (errno.ENOBUFS, errno.EAGAIN):
                    continue  # a full buffer: lost, as on the wire
                raise _Ended(f"sending to {self.remote[0]}:{self.remote[1]} failed: {error}") from None
            self.bytes_sent += len(rtp)

    def _refused(self) -> None:
        """ICMP port unreachable came back: tolerated at first (the platform may open its port
        late), the end of the stream once it has kept coming for `send_timeout_s`."""
        now = time.monotonic()
        if self._refused_since is None or now - self._refused_last > REFUSED_GAP_S:
            self._refused_since = now
        self._refused_last = now
        if now - self._refused_since >= self.send_timeout_s:
            assert self.remote is not None
            raise _Ended(f"the platform's media port {self.remote[0]}:{self.remote[1]} has refused the stream "
                         f"for {self.send_timeout_s:g} s (ICMP port unreachable)")

    def _send_stream(self, data: bytes) -> None:
        assert self._connection is not None
        try:
            self._connection.sendall(data)
        except TimeoutError:
            raise _Ended(f"the platform has not read the stream for {self.send_timeout_s:g} s") from None
        except OSError as error:
            if self._stopping.is_set():
                return
            raise _Ended(f"the platform closed the TCP connection ({error.strerror or error})") from None
        self.bytes_sent += len(data)

    def _connect(self) -> None:
        if self.transport == "udp":
            assert self.remote is not None
            try:
                self._socket.connect(self.remote)
            except OSError as error:
                raise _Ended(f"cannot send to {self.remote[0]}:{self.remote[1]}: {error.strerror or error}") from None
        elif self.transport == "tcp-active":
            self._connection = self._connect_out()
        elif self.transport == "tcp-passive":
            self._connection = self._accept()
        if self._connection is not None:
            self._connection.settimeout(self.send_timeout_s)
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connect_out(self) -> socket.socket | None:
        assert self.remote is not None
        sock = self._socket
        sock.setblocking(False)
        result = sock.connect_ex(self.remote)
        deadline = time.monotonic() + self.connect_timeout_s
        while result in (errno.EINPROGRESS, errno.EALREADY) and not self._stopping.is_set():
            if time.monotonic() > deadline:
                raise _Ended(f"could not connect to {self.remote[0]}:{self.remote[1]} within "
                             f"{self.connect_timeout_s:g} s")
            _, writable, _ = select.select([], [sock], [], POLL_S)
            if writable:
                result = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if self._stopping.is_set():
            return None
        if result not in (0, errno.EISCONN):
            raise _Ended(f"could not connect to {self.remote[0]}:{self.remote[1]}: {os.strerror(result)}")
        sock.setblocking(True)
        return sock

    def _accept(self) -> socket.socket | None:
        deadline = time.monotonic() + self.accept_timeout_s
        self._socket.settimeout(POLL_S)
        while not self._stopping.is_set():
            try:
                connection, peer = self._socket.accept()
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise _Ended(f"the platform did not connect to port {self.local_port} within "
                                 f"{self.accept_timeout_s:g} s") from None
                continue
            log.info("%s: the platform connected from %s:%d", self._label, *peer[:2])
            self._socket.close()  # one connection per stream: later attempts are refused
            return connection
        return None

    def _end(self, reason: str) -> None:
        self._end_reason = reason
        log.warning("%s: ended: %s (the signalling side should end the session with BYE)", self._label, reason)
        if self.on_end is not None:
            try:
                self.on_end(reason)
            except Exception:  # noqa: BLE001 - the caller's callback must not take the thread down silently
                log.exception("%s: the on_end callback failed", self._label)

    def _bind(self, host: str, port: int) -> socket.socket:
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:  # TIME_WAIT of an earlier stream; UDP: it would share a port in use
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            if self.transport == "tcp-passive":
                sock.listen(1)
        except OSError as error:
            sock.close()
            raise OSError(error.errno, f"camera {self.camera_id}: cannot bind the {self.transport} "
                                       f"media socket to {host}:{port}: {error.strerror}") from None
        return sock

    def _close_sockets(self) -> None:
        for sock in (self._connection, self._socket):
            if sock is not None:
                sock.close()
