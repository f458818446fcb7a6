"""Live camera ingest: one thread per camera keeps the latest decoded frame and reconnects forever.

One file because the keyframe policy, the frame slot and the watched container exist only for
`CameraReader`'s decode loop and read best beside it; opening and decoding streams is decode.py.

A camera that drops, stalls, refuses the connection or sends garbage is retried with capped,
jittered exponential backoff and reported in `health()`; it never blocks the caller or another
camera, because each camera has its own thread, the slot holds one frame (never a queue), and
every FFmpeg call is bounded by PyAV's open/read timeouts.

Decoding cost is what limits how many cameras an edge box takes. When the analysis runs at or
below the stream's keyframe rate the decoder skips every P frame (`keyframes only`), which is
most of the CPU; otherwise it decodes everything and drops what the analysis does not need.
`auto` learns the keyframe interval from the stream and switches when it changes. Only frames
the analysis asks for are converted to BGR, lazily, in the caller's thread.

Every demuxed packet of the video stream also leaves as an `EncodedPacket` through the
optional `packet_sink` (the camera's packet ring: evidence clips, GB/T 28181 live video),
whatever the decode mode: keyframe-only decoding skips the decoder, not the demuxer. Files
played in real time are paced packet by packet, so their packets arrive as a camera's would.
"""

from __future__ import annotations

import errno
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import av
import numpy as np

from gateway.backoff import Backoff
from gateway.redaction import redact
from gateway.video.decode import (
    DecodedFrame,
    VideoOpenError,
    decode_frames,
    frame_rate,
    open_video,
    stream_info,
)
from gateway.video.pacing import AnalysisPacer
from gateway.video.packets import EncodedPacket, StreamInfo

log = logging.getLogger(__name__)

DecodeMode = Literal["auto", "keyframes", "all"]
State = Literal["connecting", "streaming", "backoff", "stopped"]

KEYFRAME_SLACK = 1.1
"""Keyframe-only decoding still counts as 'at the keyframe rate' with 10 % timestamp jitter."""
KEYFRAME_SAMPLES = 3
"""Keyframe intervals remembered; the decision uses their median, so one odd GOP does not flip it."""
STALL_GOPS = 2.5
"""In keyframe-only mode a frame arrives once per GOP: the watchdog waits at least this many GOPs."""
PROBE_OPTIONS = {"analyzeduration": "1000000", "probesize": "500000"}
"""FFmpeg probes 5 s of stream by default before `open` returns; the SDP already says what we need."""


@dataclass(frozen=True, slots=True)
class LatestFrame:
    """The newest frame due for analysis. `t` is stream time (restarts after a reconnect);
    `received_at` is `time.monotonic()` when it was decoded: use it for frame age."""

    seq: int
    t: float
    received_at: float
    image: np.ndarray


@dataclass(frozen=True, slots=True)
class ReaderHealth:
    """One camera's ingest health, as operators see it (URL and error are redacted)."""

    camera_id: str
    url: str
    state: State
    decoded_fps: float
    analysed_fps: float
    frames_decoded: int
    frames_analysed: int
    """Distinct frames handed to the analysis through latest() / wait_for_frame()."""
    last_frame_age_s: float | None
    reconnects: int
    decode_errors: int
    last_error: str | None
    keyframes_only: bool
    keyframe_interval_s: float | None


class StreamStalled(Exception):
    """Packets may still arrive, but no frame has been decoded for too long."""


class _Stopping(Exception):
    """Raised inside the decode loop when `stop()` was called."""


# --------------------------------------------------------------------------- pure policies


class KeyframePolicy:
    """Decides keyframe-only vs full decoding for one camera.

    `keyframes` and `all` are fixed. `auto` starts keyframe-only (cheapest; the decoder cannot
    output anything before the first keyframe anyway), learns the keyframe interval from the
    keyframes it sees, and decodes everything while the keyframe rate is below the analysis fps.
    If keyframe-only decoding yields nothing at all (a camera whose I frames are not IDR frames),
    `keyframe_decoding_failed()` makes it fall back to full decoding for good.
    """

    def __init__(self, mode: DecodeMode, analysis_fps: float):
        if mode not in ("auto", "keyframes", "all"):
            raise ValueError(f"decode mode must be auto, keyframes or all, got {mode!r}")
        self.mode = mode
        self.analysis_interval = 1.0 / analysis_fps
        self._intervals: deque[float] = deque(maxlen=KEYFRAME_SAMPLES)
        self._last_keyframe_t: float | None = None
        self._keyframes_broken = False
        self._decision = self._decide()

    @property
    def keyframe_interval(self) -> float | None:
        return statistics.median(self._intervals) if self._intervals else None

    @property
    def keyframes_only(self) -> bool:
        return self._decision

    def new_stream(self) -> None:
        """Timestamps restart on reconnect: forget the last keyframe time, keep the intervals."""
        self._last_keyframe_t = None

    def observe(self, t: float, keyframe: bool) -> None:
        if not keyframe:
            return
        last, self._last_keyframe_t = self._last_keyframe_t, t
        if last is not None and 0 < t - last < 60:
            self._intervals.append(t - last)
            self._decision = self._decide()

    def keyframe_decoding_failed(self) -> None:
        if self.mode == "auto":
            self._keyframes_broken = True
            self._decision = self._decide()

    def _decide(self) -> bool:
        if self.mode != "auto":
            return self.mode == "keyframes"
        if self._keyframes_broken:
            return False
        interval = self.keyframe_interval
        return interval is None or interval <= self.analysis_interval * KEYFRAME_SLACK


class RateMeter:
    """Events per second over the last `window_s` seconds (decoded fps, analysed fps)."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=512)

    def tick(self, now: float) -> None:
        self._times.append(now)

    def rate(self, now: float) -> float:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(now - self._times[0], 1e-6)


# --------------------------------------------------------------------------- the slot


class FrameSlot:
    """Holds the newest frame due for analysis: one frame, never a queue.

    The decoded PyAV frame is kept as is and converted to BGR when someone asks, in the
    asker's thread, once per frame: frames the analysis never looks at cost no conversion.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._seq = 0
        self._decoded: DecodedFrame | None = None
        self._received_at = 0.0
        self._converted: LatestFrame | None = None
        self._handed_out = 0
        self._handed_count = 0
        self.delivered = RateMeter()

    @property
    def seq(self) -> int:
        return self._seq

    def put(self, decoded: DecodedFrame, received_at: float) -> None:
        with self._cond:
            self._seq += 1
            self._decoded, self._received_at, self._converted = decoded, received_at, None
            self._cond.notify_all()

    def get(self) -> LatestFrame | None:
        with self._cond:
            seq, decoded, received_at, converted = (
                self._seq, self._decoded, self._received_at, self._converted)
        if decoded is None:
            return None
        if converted is not None and converted.seq == seq:
            return converted
        image = decoded.bgr()
        image.flags.writeable = False  # shared by every caller of this frame: copy to draw on it
        frame = LatestFrame(seq, decoded.t, received_at, image)
        with self._cond:
            if self._seq == seq and self._converted is None:
                self._converted = frame
            if seq > self._handed_out:
                self._handed_out = seq
                self._handed_count += 1
                self.delivered.tick(time.monotonic())
        return frame

    def wait(self, after_seq: int, timeout: float | None, stopped: threading.Event) -> bool:
        """True once a frame newer than `after_seq` is there; False on timeout or stop."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._seq > after_seq or stopped.is_set(), timeout
            ) and self._seq > after_seq

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def handed_out(self) -> int:
        """How many distinct frames were given to the analysis."""
        return self._handed_count


class _WatchedContainer:
    """The container as `decode_frames` sees it, with a check between packets.

    `decode_frames` iterates `container.decode(stream)`, which only returns to Python when a
    frame comes out: in keyframe-only mode that is once per GOP, and never if the stream sends
    packets but no decodable frames. Demuxing here, packet by packet, gives the stop flag and
    the stall watchdog a chance to run on every packet (PyAV's read timeout covers silence),
    and hands every packet to `on_packet` (real-time pacing, the packet sink) before decoding.
    In keyframe-only mode the other packets are not even handed to the decoder.
    """

    def __init__(self, container: av.container.InputContainer, check: Any, keyframes_only: bool,
                 on_packet: Callable[[av.Packet], None] | None = None):
        self._container, self._check, self._on_packet = container, check, on_packet
        self.streams = container.streams
        self.keyframes_only = keyframes_only
        self.decode_errors = 0

    def decode(self, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
        on_packet = self._on_packet
        for packet in self._container.demux(stream):
            self._check()
            if on_packet is not None:
                on_packet(packet)
            if self.keyframes_only and not packet.is_keyframe:
                continue  # the decoder would discard it anyway (skip_frame); spare the call
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                # One damaged packet (UDP loss, a glitching encoder) is not worth a reconnect;
                # if nothing decodes any more, the stall watchdog reconnects.
                self.decode_errors += 1
                continue
            yield from frames


# --------------------------------------------------------------------------- the reader


class CameraReader:
    """Pulls one camera's stream on its own thread; `latest()` and `health()` never block.

    url: rtsp:// (credentials allowed; they are shown as *** everywhere) or anything FFmpeg opens;
    or a resolver called before every connection attempt (an ONVIF camera asks the device for
    its current stream URI, so a camera that changed address or profile is found again).
    decode_mode: auto | keyframes | all (see KeyframePolicy). analysis_fps: frames per second
    the analysis wants; frames due at that rate (by stream time) go into the slot.
    open_timeout_s / read_timeout_s: bound every FFmpeg call (a silent network is detected
    after min(read_timeout_s, stall_s)). stall_s: no decoded frame for this long (packets or
    not) means reconnect; in keyframe-only mode at least 2.5 GOPs, so stall_s must exceed the
    camera's GOP. decoder_threads: 1 per camera; FFmpeg's default (one per core) multiplies
    threads by the camera count, and frame threading would hold back one decoded frame per
    extra thread (a whole GOP each in keyframe-only mode). realtime: play a file at its own
    pace, packet by packet, as a camera sends it. packet_sink: called on the reader thread
    with every packet of the video stream (see the module docstring); it must return at once
    (a `PacketRing.put`), and an exception from it is logged once and otherwise ignored.
    """

    def __init__(self, camera_id: str, url: str | Callable[[], str], *, transport: str = "tcp",
                 decode_mode: DecodeMode = "auto", analysis_fps: float = 2.0,
                 open_timeout_s: float = 10, read_timeout_s: float = 10, stall_s: float = 10,
                 backoff_initial_s: float = 1, backoff_max_s: float = 60,
                 decoder_threads: int = 1, realtime: bool = False, loop: bool = False,
                 packet_sink: Callable[[EncodedPacket], None] | None = None):
        if transport not in ("tcp", "udp"):
            raise ValueError(f"camera {camera_id}: transport must be tcp or udp, got {transport!r}")
        self.camera_id = camera_id
        self._resolve_url = url if callable(url) else None
        self.url = "" if callable(url) else url
        self.display_url = "stream (address not resolved yet)" if callable(url) \
            else redact(url)
        self.transport = transport
        self.analysis_fps = analysis_fps
        self.open_timeout_s, self.read_timeout_s, self.stall_s = open_timeout_s, read_timeout_s, stall_s
        self.decoder_threads = decoder_threads
        self.realtime, self.loop = realtime, loop
        self.packet_sink = packet_sink
        self.packet_sink_errors = 0
        """Packets the sink raised on (the first is logged; the reader keeps going regardless)."""
        self.policy = KeyframePolicy(decode_mode, analysis_fps)
        self.backoff = Backoff(backoff_initial_s, backoff_max_s)
        self.log = logging.LoggerAdapter(log, {"camera": camera_id})
        self._slot = FrameSlot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: State = "stopped"
        self._decoded = RateMeter()
        self._frames_decoded = 0
        self._last_frame_at: float | None = None
        self._reconnects = 0
        self._decode_errors = 0
        self._last_error: str | None = None
        self._keyframes_only = self.policy.keyframes_only
        self._stream_started = 0.0
        self._streaming = False

    # ----------------------------------------------------------------- public

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"camera {self.camera_id}: reader already started")
        self._state = "connecting"
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> bool:
        """Ask the thread to end and wait up to `timeout`. Returns False if it is still blocked
        in a network call; it then ends on its own within the read timeout (it is a daemon)."""
        self._stop.set()
        self._slot.wake_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.log.warning("camera %s: reader still inside a network call; it exits within %.0f s",
                                 self.camera_id, max(self.open_timeout_s, self.read_timeout_s))
                self._state = "stopped"
                return False
        self._state = "stopped"
        return True

    def latest(self) -> LatestFrame | None:
        return self._slot.get()

    @property
    def alive(self) -> bool:
        """The reader thread runs (whatever the camera does: an offline camera is retried)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def frame_seq(self) -> int:
        """Sequence number of the newest frame in the slot (0: none yet); costs no conversion."""
        return self._slot.seq

    def wait_for_frame(self, after_seq: int = 0, timeout: float | None = None) -> LatestFrame | None:
        """The newest frame once its seq exceeds `after_seq`; None on timeout or after stop()."""
        if self._slot.wait(after_seq, timeout, self._stop):
            return self._slot.get()
        return None

    def health(self) -> ReaderHealth:
        now = time.monotonic()
        last = self._last_frame_at
        return ReaderHealth(
            camera_id=self.camera_id, url=self.display_url, state=self._state,
            decoded_fps=round(self._decoded.rate(now), 2),
            analysed_fps=round(self._slot.delivered.rate(now), 2),
            frames_decoded=self._frames_decoded, frames_analysed=self._slot.handed_out,
            last_frame_age_s=None if last is None else round(now - last, 3),
            reconnects=self._reconnects, decode_errors=self._decode_errors, last_error=self._last_error,
            keyframes_only=self._keyframes_only,
            keyframe_interval_s=self.policy.keyframe_interval,
        )

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._state = "connecting"
                self._stream_once()
                if self.loop:
                    continue
                error = "stream ended (the server closed it)"
            except _Stopping:
                break
            except Exception as exc:  # noqa: BLE001 - one camera's failure must never escape
                error = self._describe(exc)
            if self._stop.is_set():
                break
            self._last_error = error
            delay = self.backoff.next_delay()
            self._state = "backoff"
            self.log.warning("camera %s: %s %s; retry %d in %.1f s", self.camera_id,
                             self.display_url, error, self.backoff.failures, delay)
            if self._stop.wait(delay):
                break
            self._reconnects += 1
        self._state = "stopped"

    def _stream_once(self) -> None:
        if self._resolve_url is not None:
            try:
                self.url = self._resolve_url()
            except Exception as error:  # noqa: BLE001 - any resolver failure means: back off, retry
                raise VideoOpenError(f"cannot resolve the stream address: {error}") from error
            self.display_url = redact(self.url)
        options = {"rtsp_transport": self.transport, **PROBE_OPTIONS} \
            if self.url.startswith(("rtsp://", "rtsps://")) else {}
        read_timeout = min(self.read_timeout_s, self.stall_s)
        container = open_video(self.url, options, timeout=(self.open_timeout_s, read_timeout),
                               display_name=self.display_url)
        try:
            container.streams.video[0].codec_context.thread_count = self.decoder_threads
            self._decode(container)
        finally:
            container.close()

    def _decode(self, container: av.container.InputContainer) -> None:
        """Decode until the stream ends; restart `decode_frames` when the keyframe policy flips."""
        self.policy.new_stream()
        self._stream_started = time.monotonic()
        self._streaming = False
        pacer = AnalysisPacer(self.analysis_fps, frame_rate(container))
        watched = _WatchedContainer(container, self._check_watchdog, self.policy.keyframes_only,
                                    self._packet_handler(container))
        while True:
            self._keyframes_only = watched.keyframes_only = self.policy.keyframes_only
            switched = False
            for decoded in decode_frames(watched, keyframes_only=self._keyframes_only):
                self._decode_errors += watched.decode_errors
                watched.decode_errors = 0
                self._on_frame(decoded, pacer)
                if self.policy.keyframes_only != self._keyframes_only and decoded.keyframe:
                    self._log_switch()
                    switched = True
                    break
            if not switched:
                return

    def _on_frame(self, decoded: DecodedFrame, pacer: AnalysisPacer) -> None:
        now = time.monotonic()
        self._frames_decoded += 1
        self._last_frame_at = now
        self._decoded.tick(now)
        if not self._streaming:
            self._streaming = True
            self._state = "streaming"
            self._on_connected(decoded)
        if decoded.index == 0 and decoded.frame.pts is None:
            # FFmpeg's RTSP demuxer gives the first packet no timestamp, so its `t` is a guess
            # (0): show the frame, but keep it out of the pacing and the keyframe statistics.
            self._slot.put(decoded, now)
            return
        self.policy.observe(decoded.t, decoded.keyframe)
        if pacer.due(decoded.t):
            self._slot.put(decoded, now)

    def _packet_handler(self, container: av.container.InputContainer) -> Callable[[av.Packet], None] | None:
        """What happens to each demuxed packet before decoding: real-time pacing for files, then
        the packet sink. None when neither is wanted (no cost per packet then)."""
        if not self.realtime and self.packet_sink is None:
            return None
        stream = container.streams.video[0]
        start_ticks = stream.start_time or 0
        time_base = float(stream.time_base or 0)
        frame_s = 1.0 / (frame_rate(container) or 25.0)
        info = stream_info(container) if self.packet_sink is not None else None
        count = 0

        def handle(packet: av.Packet) -> None:
            nonlocal count
            if self.realtime:
                ticks = packet.dts if packet.dts is not None else packet.pts
                # a raw stream without timestamps plays at its nominal rate, as decode_frames times it
                t = count * frame_s if ticks is None else (ticks - start_ticks) * time_base
                self._wait_for_presentation_time(t)
                count += 1
            if info is not None and packet.size:
                self._tap(packet, info)

        return handle

    def _wait_for_presentation_time(self, t: float) -> None:
        """Hold a file's packet until its time comes (stream time 0 = when the stream opened).
        Decode order (dts) is the order packets arrive in, so a file's packets come out as a
        camera sends them, and its frames as before (each right after its packet)."""
        delay = self._stream_started + t - time.monotonic()
        if delay > 0 and self._stop.wait(delay):
            raise _Stopping()

    def _tap(self, packet: av.Packet, info: StreamInfo) -> None:
        """Hand one packet to the sink; a failing sink costs a log line, never the camera."""
        sink = self.packet_sink
        assert sink is not None
        try:
            sink(EncodedPacket(bytes(packet), packet.pts, packet.dts, packet.is_keyframe,
                               time.monotonic(), info))
        except Exception:  # noqa: BLE001 - the sink's failure must not stop the camera's frames
            self.packet_sink_errors += 1
            if self.packet_sink_errors == 1:
                self.log.exception("camera %s: the packet sink failed; packets are no longer recorded "
                                   "reliably (clips, live video), frames go on; further failures are "
                                   "counted, not logged", self.camera_id)

    def _on_connected(self, decoded: DecodedFrame) -> None:
        mode = "keyframe-only" if self._keyframes_only else "full"
        if self.backoff.failures:
            self.log.info("camera %s: %s back after %d failed attempts (%s decoding)", self.camera_id,
                          self.display_url, self.backoff.failures, mode)
        else:
            self.log.info("camera %s: streaming %s, %dx%d, %s decoding", self.camera_id,
                          self.display_url, decoded.frame.width, decoded.frame.height, mode)
        self.backoff.reset()
        self._last_error = None

    def _log_switch(self) -> None:
        interval = self.policy.keyframe_interval or 0.0
        self.log.info("camera %s: keyframe every %.2f s, analysing at %g fps: switching to %s decoding",
                      self.camera_id, interval, self.analysis_fps,
                      "keyframe-only" if self.policy.keyframes_only else "full")

    def _check_watchdog(self) -> None:
        if self._stop.is_set():
            raise _Stopping()
        now = time.monotonic()
        since = self._last_frame_at if self._streaming and self._last_frame_at else self._stream_started
        limit = self.stall_s
        interval = self.policy.keyframe_interval
        if self._keyframes_only and interval:
            limit = max(limit, STALL_GOPS * interval)
        if now - since > limit:
            if self._keyframes_only and not self._streaming:
                self.policy.keyframe_decoding_failed()
            raise StreamStalled(f"no new frame for {now - since:.1f} s (stalled)")

    # ----------------------------------------------------------------- error text

    def _describe(self, exc: BaseException) -> str:
        """An operator-readable reason, credentials masked."""
        cause = exc.__cause__ if isinstance(exc, VideoOpenError) and exc.__cause__ else exc
        opening = isinstance(exc, VideoOpenError)
        if isinstance(cause, StreamStalled):
            text = str(cause)
        elif isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            text = "refused connection (camera down or wrong port?)"
        elif isinstance(cause, av.error.HTTPNotFoundError):
            text = "has no such stream (404: check the path or channel)"
        elif isinstance(cause, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
            text = "rejected the credentials (401/403: check user and password)"
        elif isinstance(cause, (av.error.ExitError, TimeoutError)):
            text = (f"did not answer within {self.open_timeout_s:g} s" if opening else
                    f"sent no data for {min(self.read_timeout_s, self.stall_s):g} s")
        elif opening and not isinstance(cause, av.FFmpegError | OSError):
            text = str(exc)
        else:
            text = f"{'cannot open' if opening else 'read failed'}: {type(cause).__name__}: {cause}"
        return redact(text, self.url)
