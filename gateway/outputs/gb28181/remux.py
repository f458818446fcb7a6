"""From the camera's packets to the RTP packets of a GB/T 28181 stream: h26x -> PS -> RTP. Pure.

`PacketRemuxer` is the whole per-frame path of a live stream without the socket: it starts at
a keyframe, converts each access unit to Annex B with its parameter sets, muxes it into a PS
frame and cuts that into RTP packets. `TimestampMapper` gives the frames one continuous 90 kHz
timeline although the camera's own timestamps restart on every reconnect: a receiver (and its
jitter buffer) must never see time go backwards within one RTP stream.
"""

from __future__ import annotations

from gateway.outputs.gb28181.ps import PsMuxer
from gateway.outputs.gb28181.rtp import DEFAULT_MAX_PAYLOAD, DEFAULT_PAYLOAD_TYPE, RtpPacketizer
from gateway.video.h26x import annexb_access_unit
from gateway.video.packets import EncodedPacket, StreamInfo

CLOCK = 90_000
DEFAULT_FRAME_TICKS = CLOCK // 25
"""One frame at 25 fps: the step assumed across a discontinuity before any frame rate is known."""
MAX_FRAME_TICKS = CLOCK
"""Frame intervals up to 1 s are learnt as the frame step; longer ones are gaps (lost frames)."""
MAX_FORWARD_JUMP_TICKS = 10 * CLOCK
"""A jump forward larger than this (10 s) is a discontinuity, not a pause: it is closed up."""


class UnsupportedStream(ValueError):
    """The camera's stream changed to something that cannot be remuxed (not H.264/H.265)."""


class TimestampMapper:
    """Maps each packet's pts/dts (in its stream's time base) to the output's 90 kHz ticks.

    The output starts at 0. Within one `StreamInfo` the camera's timing is kept (offset only);
    on a new `StreamInfo` (a reconnect), on time going backwards or on a jump of more than
    10 s, the output continues one frame after the last frame sent. A packet without
    timestamps is placed one frame after the previous one. PTS never precedes DTS.
    """

    def __init__(self) -> None:
        self._stream: StreamInfo | None = None
        self._scale = (CLOCK, 1)
        self._offset = 0
        self._rebase = True
        self._last_dts: int | None = None
        self._frame_ticks = DEFAULT_FRAME_TICKS

    def map(self, packet: EncodedPacket) -> tuple[int, int]:
        """(pts, dts) of `packet` on the output timeline, in 90 kHz ticks."""
        if packet.stream is not self._stream:
            self._stream = packet.stream
            self._scale = (packet.stream.time_base * CLOCK).as_integer_ratio()
            if packet.stream.fps:
                self._frame_ticks = max(1, round(CLOCK / packet.stream.fps))
            self._rebase = True
        dts_in = packet.dts if packet.dts is not None else packet.pts
        pts_in = packet.pts if packet.pts is not None else packet.dts
        if dts_in is None or pts_in is None:
            dts = self._next_after_last()
            self._commit(dts)
            return dts, dts
        dts_90k, pts_90k = self._to_90k(dts_in), self._to_90k(pts_in)
        dts = dts_90k + self._offset
        if self._rebase or self._discontinuous(dts):
            self._offset = self._next_after_last() - dts_90k
            dts = dts_90k + self._offset
            self._rebase = False
        self._commit(dts)
        return max(pts_90k + self._offset, dts), dts

    def _discontinuous(self, dts: int) -> bool:
        return self._last_dts is not None and not 0 < dts - self._last_dts <= MAX_FORWARD_JUMP_TICKS

    def _to_90k(self, ticks: int) -> int:
        numerator, denominator = self._scale
        return (ticks * numerator * 2 + denominator) // (2 * denominator)

    def _next_after_last(self) -> int:
        return 0 if self._last_dts is None else self._last_dts + self._frame_ticks

    def _commit(self, dts: int) -> None:
        if self._last_dts is not None and 0 < dts - self._last_dts <= MAX_FRAME_TICKS:
            self._frame_ticks = dts - self._last_dts  # the latest frame interval (not a gap)
        self._last_dts = dts


class PacketRemuxer:
    """One live stream's packets in, RTP packets out (see the module docstring).

    `remux(packet)` returns the RTP packets of the frame, or None while waiting for a keyframe
    (at the start, after a new `StreamInfo`, after `resync()`). It raises ValueError for a
    packet it cannot convert (then call `resync()` and go on) and `UnsupportedStream` when
    the stream turned into a codec that cannot be remuxed.
    """

    def __init__(self, ssrc: int, *, payload_type: int = DEFAULT_PAYLOAD_TYPE,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, first_sequence: int | None = None):
        self.packetizer = RtpPacketizer(ssrc, payload_type, max_payload=max_payload,
                                        first_sequence=first_sequence)
        self.timestamps = TimestampMapper()
        self.muxer: PsMuxer | None = None
        self.stream: StreamInfo | None = None
        self.waiting_for_keyframe = True

    def resync(self) -> None:
        """Send nothing until the next keyframe (after a packet was lost or could not be read)."""
        self.waiting_for_keyframe = True

    def remux(self, packet: EncodedPacket) -> list[bytes] | None:
        if packet.stream is not self.stream:
            self._switch_stream(packet.stream)
        if self.waiting_for_keyframe and not packet.keyframe:
            return None
        assert self.muxer is not None
        access_unit = annexb_access_unit(packet)
        pts, dts = self.timestamps.map(packet)
        self.waiting_for_keyframe = False
        frame = self.muxer.mux(access_unit, pts, dts, packet.keyframe)
        return self.packetizer.packetize(frame, pts)

    def _switch_stream(self, stream: StreamInfo) -> None:
        if not stream.remuxable:
            raise UnsupportedStream(f"the camera now sends {stream.codec}, which cannot be remuxed "
                                    f"into GB/T 28181 PS (only H.264 and H.265)")
        if self.muxer is None or self.muxer.codec != stream.codec:
            version = 0 if self.muxer is None else (self.muxer.psm_version + 1) % 32
            self.muxer = PsMuxer(stream.codec, psm_version=version)
        self.stream = stream
        self.waiting_for_keyframe = True

