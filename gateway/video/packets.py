"""Encoded video as the camera sent it: the packets the reader demuxes, before any decoding.

Evidence clips (remuxed to MP4) and GB/T 28181 live video (remuxed to MPEG-2 PS over RTP) are
both made of these packets, never of decoded frames: no re-encoding, so they cost almost
nothing and show exactly what the camera sent. The reader hands every packet it demuxes to the
camera's packet sink, whatever its decode mode (keyframe-only decoding still reads every
packet), so this is the one place the encoded stream leaves the ingest.

Plain data: `StreamInfo` describes the stream (codec, size, time base, codec configuration),
shared by all packets of one connection; a new connection (reconnect, new profile) brings a new
`StreamInfo`, and consumers that remux must start a new file or stream at that point.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


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
