"""`ClipPlayer`: an evidence clip played to a GB/T 28181 platform as a stream (s=Playback).

The clip is the MP4 the clip writer made from the camera's own packets, so playing it is the
same remux as live video (`remux`: no decoding, no re-encoding): PyAV demuxes the file and the
packets go out at the pace of their timestamps, as the camera sent them (a Download at its
`speed`). It is a `sources.PacketSource`, read on the stream's sender thread: the file is opened
there (`open`), never on the SIP thread, and an unreadable file ends the stream with the reason.

Time: the platform asks for start..stop in Unix seconds (the INVITE's t= line, the times its
RecordInfo query listed); the clip knows the wall time of its first packet (`ClipFile.start`).
Playing starts at the keyframe at or before `start` and ends with the clip, or at `stop`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av

from gateway.status import ClipFile
from gateway.video.packets import EncodedPacket, StreamGap, StreamInfo

log = logging.getLogger(__name__)


class ClipPlayer:
    """One clip's packets, paced in real time (see the module docstring).

    start/stop: the period asked for (Unix seconds); speed: 1 = real time, 4 = four times as
    fast (a Download); clock/sleep: for tests of the pacing without waiting.
    """

    def __init__(self, camera_id: str, clip: ClipFile, *, start: float = 0.0, stop: float = 0.0,
                 speed: float = 1.0, clock: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        if speed <= 0:
            raise ValueError(f"playback speed must be positive, got {speed}")
        self.camera_id, self.clip, self.speed = camera_id, clip, speed
        self.offset_s = max(0.0, start - clip.start)
        """Where in the clip playing starts (seconds from its first packet)."""
        self.until_s = stop - clip.start if stop > start else None
        self._clock, self._sleep = clock, sleep
        self._container: Any = None
        self._packets: Iterator[Any] | None = None
        self._stream: StreamInfo | None = None
        self._first_t: float | None = None
        self._origin_t = 0.0
        """The file's start time (stream seconds): clip time 0."""
        self._began = 0.0
        self._next: EncodedPacket | None = None
        self._end_reason: str | None = None
        self.dropped = 0
        self.skipped = 0
        self.sent = 0

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def stream(self) -> StreamInfo | None:
        """The clip's stream, once opened."""
        return self._stream

    def open(self) -> None:
        """Open the file and seek to the keyframe at or before the start (the stream's thread)."""
        try:
            self._container = av.open(self.clip.path)
            video = self._container.streams.video[0]
        except (OSError, av.FFmpegError, IndexError) as error:
            raise OSError(f"camera {self.camera_id}: cannot read the clip {self.clip.path}: {error}") from None
        context = video.codec_context
        self._stream = StreamInfo(codec=context.name, width=context.width, height=context.height,
                                  time_base=Fraction(video.time_base), extradata=bytes(context.extradata or b""),
                                  fps=float(video.average_rate) if video.average_rate else None)
        origin = video.start_time or 0
        self._origin_t = float(origin * video.time_base)
        if self.offset_s > 0:
            self._container.seek(origin + int(self.offset_s / video.time_base), stream=video, backward=True)
        self._packets = iter(self._container.demux(video))
        self._began = self._clock()
        log.info("camera %s: playing the clip %s from %.1f s at %gx", self.camera_id, self.clip.path,
                 self.offset_s, self.speed)

    def get(self, timeout: float) -> EncodedPacket | StreamGap | None:
        """The next packet once its time has come, or None after `timeout` (or at the end)."""
        if self._end_reason is not None:
            return None
        if self._next is None:
            self._next = self._read()
            if self._next is None:
                return None
        assert self._first_t is not None
        due = self._began + ((self._next.t or self._first_t) - self._first_t) / self.speed
        wait = due - self._clock()
        if wait > timeout:
            self._sleep(timeout)
            return None
        if wait > 0:
            self._sleep(wait)
        packet, self._next = self._next, None
        self.sent += 1
        return packet

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _read(self) -> EncodedPacket | None:
        """The next packet of the file, or None at the end (then `end_reason` says which)."""
        assert self._packets is not None and self._stream is not None, "open() first"
        for packet in self._packets:
            if packet.size == 0:
                continue
            encoded = EncodedPacket(bytes(packet), packet.pts, packet.dts, packet.is_keyframe, self._clock(),
                                    self._stream)
            clip_t = encoded.t
            if self._first_t is None:
                if not encoded.keyframe:
                    self.skipped += 1
                    continue
                self._first_t = clip_t if clip_t is not None else self._origin_t
            if self.until_s is not None and clip_t is not None and clip_t - self._origin_t > self.until_s:
                self._finish(f"the recording reached the end of the period asked for ({self.sent} frames)")
                return None
            return encoded
        self._finish(f"the clip ended ({self.sent} frames)")
        return None

    def _finish(self, reason: str) -> None:
        self._end_reason = reason
        self.close()
