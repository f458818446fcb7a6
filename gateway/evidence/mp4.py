"""One clip file: encoded packets of one stream into a fragmented MP4, without re-encoding.

Fragmented (`frag_keyframe+empty_moov+default_base_moof`): the header is written first, then
one fragment per GOP, flushed as soon as the next keyframe closes it. So a clip being recorded
already plays up to its last whole GOP, a crash (or power cut) leaves a playable file, and the
writer holds at most one GOP in memory, never the clip.

How PyAV gets the codec parameters without an input stream (the ring outlives the camera's
input container): `OutputContainer.add_mux_stream` (PyAV 17) makes a stream with only codec
parameters (codec, width, height, time base, frame rate) and no codec context, so nothing is
opened or encoded. It has no way to set the codec configuration (extradata); instead PyAV
(from 18.0) runs FFmpeg's `extract_extradata` filter over the first packet and writes the
header with what it finds. That works for Annex B packets only, so:
* length-prefixed packets (from MP4 sources, with an avcC/hvcC record) are turned into
  Annex B here (`gateway.video.h26x`, which GB/T 28181 live video uses too); the MP4 muxer
  turns them back into length-prefixed samples and builds its avcC/hvcC from the Annex B
  parameter sets;
* the clip starts at a keyframe, and the stream's parameter sets are put in front of that
  keyframe when it does not carry them itself (cameras that send SPS/PPS only in the SDP).

Timestamps are rebased so the clip starts at 0. A packet without one (FFmpeg's RTSP demuxer
gives the first packet of a session none) is placed one frame after the previous packet.
A packet the muxer cannot take (garbled, timestamps going backwards) is skipped and counted.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import av

from gateway.video import h26x
from gateway.video.packets import EncodedPacket, StreamInfo

log = logging.getLogger(__name__)

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
DEFAULT_FPS = 25.0
"""Frame duration assumed for a packet without a timestamp when the stream declares no rate."""


class ClipFormatError(ValueError):
    """The stream cannot become an MP4 clip (message names the codec or what is missing)."""


class Mp4ClipWriter:
    """Writes the packets of one `StreamInfo` to `path` as they come; `close()` finishes it.

    The first packet written must be a keyframe: packets before one are skipped (a clip taken
    from the ring or a subscription always starts at one). Raises `ClipFormatError` at once for
    a codec MP4 clips cannot carry (the old MS-MPEG-4 sample), and on the first keyframe if
    the stream has no parameter sets anywhere. I/O errors (disk full) come out of `write` and
    `close` as `OSError`/`av.FFmpegError` for the caller to decide on.
    """

    def __init__(self, path: str | Path, stream: StreamInfo):
        if not stream.remuxable:
            raise ClipFormatError(f"a {stream.codec} stream cannot be remuxed into an MP4 clip "
                                  "(only H.264 and H.265 can; re-encoding is not done)")
        self.path = Path(path)
        self.stream = stream
        self._config = self._configuration(stream)
        self._frame_ticks = max(1, round(1 / ((stream.fps or DEFAULT_FPS) * stream.time_base)))
        self._origin: int | None = None
        self._last_dts: int | None = None
        self.packets = 0
        self.skipped = 0
        self.first_received_at: float | None = None
        self.last_received_at: float | None = None
        self.duration_ticks = 0
        self._container = av.open(str(self.path), "w", format="mp4",
                                  options={"movflags": MOVFLAGS, "flush_packets": "1"})
        try:
            rate = Fraction(stream.fps).limit_denominator(1001) if stream.fps else None
            self._out = self._container.add_mux_stream(stream.codec, rate=rate, width=stream.width,
                                                       height=stream.height, time_base=stream.time_base)
        except BaseException:
            self._container.close()
            raise
        self._closed = False

    @staticmethod
    def _configuration(stream: StreamInfo) -> h26x.CodecConfig:
        """The stream's parameter sets, and how its packets frame their NAL units."""
        try:
            return h26x.parse_extradata(stream.codec, stream.extradata)
        except ValueError as error:
            raise ClipFormatError(f"{stream.codec} stream: unreadable codec configuration: {error}") from error

    @property
    def duration_s(self) -> float:
        """Stream time covered so far: first packet to the end of the last one."""
        if not self.packets:
            return 0.0
        return float((self.duration_ticks + self._frame_ticks) * self.stream.time_base)

    def write(self, packet: EncodedPacket) -> bool:
        """Add one packet; False when it was skipped (before the first keyframe, garbled, or
        its timestamps go backwards)."""
        if self._closed:
            raise ValueError(f"clip {self.path.name} is already closed")
        if packet.stream is not self.stream:
            raise ValueError(f"clip {self.path.name}: a packet of another stream (a clip cannot span a reconnect)")
        if self.packets == 0 and not packet.keyframe:
            self.skipped += 1
            return False
        try:
            data = self._annexb(packet)
        except ClipFormatError:
            raise
        except ValueError as error:
            return self._skip(packet, str(error))
        timestamps = self._timestamps(packet)
        if timestamps is None:
            return self._skip(packet, "its timestamp goes backwards")
        out = av.Packet(data)
        out.dts, out.pts = timestamps
        out.time_base = self.stream.time_base
        out.duration = self._frame_ticks
        out.is_keyframe = packet.keyframe
        out.stream = self._out
        try:
            self._container.mux_one(out)
        except (av.error.InvalidDataError, av.error.ArgumentError) as error:
            return self._skip(packet, f"the muxer refused it: {error}")
        self._last_dts = timestamps[0]
        self.duration_ticks = timestamps[0]
        self.packets += 1
        if self.first_received_at is None:
            self.first_received_at = packet.received_at
        self.last_received_at = packet.received_at
        return True

    def _annexb(self, packet: EncodedPacket) -> bytes:
        """The packet as Annex B; the clip's first keyframe with the parameter sets it needs."""
        codec, config = self.stream.codec, self._config
        if self.packets:
            if config.nal_length_size is None:
                return packet.data
            return h26x.length_prefixed_to_annexb(packet.data, config.nal_length_size)
        data = h26x.annexb_access_unit(packet)
        sps = h26x.H264_SPS if codec == "h264" else h26x.HEVC_SPS
        if not any(h26x.nal_type(codec, unit) == sps for unit in h26x.split_annexb(data)):
            raise ClipFormatError(f"{codec} stream without parameter sets (neither the stream's configuration nor "
                                  "its keyframe carries an SPS): the clip would not play")
        return data

    def _timestamps(self, packet: EncodedPacket) -> tuple[int, int] | None:
        """(dts, pts) rebased to the clip's start; None when dts does not move forward."""
        source_dts = packet.dts if packet.dts is not None else packet.pts
        expected = 0 if self._last_dts is None else self._last_dts + self._frame_ticks
        if source_dts is None:
            return expected, expected
        if self._origin is None:
            self._origin = source_dts - expected
        dts = source_dts - self._origin
        if self._last_dts is not None and dts <= self._last_dts:
            return None
        pts = dts if packet.pts is None else max(dts, packet.pts - self._origin)
        return dts, pts

    def _skip(self, packet: EncodedPacket, why: str) -> bool:
        self.skipped += 1
        if self.skipped == 1 or self.skipped % 100 == 0:
            log.warning("clip %s: skipped a packet (dts %s): %s (%d skipped so far; the clip goes on)",
                        self.path.name, packet.dts, why, self.skipped)
        return False

    def close(self) -> None:
        """Write the last fragment and the index; the file is complete. Idempotent.

        A clip that got no packet at all is not a playable file: it is removed."""
        if self._closed:
            return
        self._closed = True
        if self.packets == 0:
            self._container.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return
        self._container.close()

    def __enter__(self) -> Mp4ClipWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def write_clip(path: str | Path, packets: list[EncodedPacket]) -> Mp4ClipWriter:
    """All of `packets` (one stream) into one finished clip; returns the closed writer (counts)."""
    if not packets:
        raise ValueError("a clip needs at least one packet")
    with Mp4ClipWriter(path, packets[0].stream) as writer:
        for packet in packets:
            writer.write(packet)
    return writer
