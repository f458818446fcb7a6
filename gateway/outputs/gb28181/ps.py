"""MPEG-2 Program Stream (ISO/IEC 13818-1 / ITU-T H.222.0 2.5) as GB/T 28181 devices send it. Pure.

GB/T 28181 live video is one video elementary stream (stream id 0xE0) in a program stream,
one video frame per "PS frame", each cut into RTP packets. What a frame looks like, as the
devices that platforms are built against send it (and as the PS demuxers in ZLMediaKit's
media-server library and GStreamer's mpegpsdemux parse it):

    keyframe:   pack header | system header | program stream map | PES | PES ...
    other:      pack header | PES | PES ...

- The pack header (0x000001BA, MPEG-2 form) carries the SCR, taken from the frame's DTS, and
  the mux rate.
- The system header (0x000001BB) and the program stream map (0x000001BC) come before every
  keyframe, and only there, as the devices do: the PSM says which codec stream 0xE0 is
  (stream type 0x1B H.264, 0x24 H.265), and a receiver that joins late (or lost the start)
  learns it at the next keyframe, the first frame it could decode anyway. GStreamer's
  mpegpsdemux types stream 0xE0 from the PSM seen before its first PES (MPEG-2 video if none)
  for good, so a receiver built on it starts demuxing at a keyframe's PSM (as
  tests/gst_ps_receiver.py does); the media-server demuxer behind ZLMediaKit skips the PES
  packets of streams no PSM has declared yet.
- The frame goes into PES packets (0x000001E0) of at most 65535 bytes after the length field
  (PS has no "unbounded" length 0, unlike TS); the first carries the PTS (and the DTS when it
  differs), the continuation packets carry no timestamps.
- Each access unit starts with an access unit delimiter NAL unit, which H.222.0 requires for
  H.264 (2.14) and H.265 (2.17) in PS and TS; one is inserted when the camera sent none.

The system header and PSM never change for a muxer, so they are built once; the CRC-32 of the
PSM is the MPEG-2 CRC (polynomial 0x04C11DB7, initial value all ones, no reflection, no final
XOR), over the whole map from its start code.
"""

from __future__ import annotations

from gateway.video.h26x import H264_AUD, HEVC_AUD, START_CODE, nal_type

STREAM_TYPES = {"h264": 0x1B, "hevc": 0x24}
"""ISO/IEC 13818-1 table 2-34 stream_type: AVC video, HEVC video."""
VIDEO_STREAM_ID = 0xE0
PACK_START = b"\x00\x00\x01\xba"
SYSTEM_HEADER_START = b"\x00\x00\x01\xbb"
PSM_START = b"\x00\x00\x01\xbc"
PES_VIDEO_START = b"\x00\x00\x01\xe0"

MAX_PES_LENGTH = 0xFFFF
"""PES_packet_length is 16 bits: the bytes after it (flags, header data, payload)."""
TIMESTAMP_MODULO = 1 << 33
DEFAULT_MUX_RATE_BPS = 20_000_000
"""program_mux_rate (and the system header's rate_bound): a bound, in bits per second, not a
promise; receivers use it only to interpolate the clock between packs. 20 Mbit/s covers any
camera stream the gateway remuxes."""
VIDEO_BUFFER_BOUND_KB = 1024
"""P-STD_buffer_size_bound of the video stream, in units of 1024 bytes (scale 1)."""

_AUD = {
    "h264": START_CODE + bytes([H264_AUD, 0xF0]),  # primary_pic_type 7 (any slice), stop bit
    "hevc": START_CODE + bytes([HEVC_AUD << 1, 0x01, 0x50]),  # pic_type 2 (I, P, B), stop bit
}
_AUD_TYPE = {"h264": H264_AUD, "hevc": HEVC_AUD}


class PsMuxer:
    """Builds the PS frame of each access unit of one video stream (H.264 or H.265).

    `mux(access_unit_annexb, pts_90k, dts_90k, keyframe)` returns the bytes of one PS frame:
    timestamps are 90 kHz ticks (taken modulo 2**33, as the fields are 33 bits). The muxer
    keeps no state between frames, so frames may be muxed in any order (they are sent in
    decoding order). `max_pes_payload` caps the payload bytes per PES packet (for tests; the
    default is the most the 16-bit PES length allows).
    """

    def __init__(self, codec: str, *, mux_rate_bps: int = DEFAULT_MUX_RATE_BPS, psm_version: int = 0,
                 max_pes_payload: int | None = None):
        if codec not in STREAM_TYPES:
            raise ValueError(f"codec {codec!r} cannot be carried in GB/T 28181 PS (only h264, hevc)")
        if not 0 <= psm_version < 32:
            raise ValueError(f"PSM version is 5 bits (0..31), got {psm_version}")
        self.codec = codec
        self.psm_version = psm_version
        self.stream_type = STREAM_TYPES[codec]
        self.mux_rate = _rate_units(mux_rate_bps)
        self.max_pes_payload = max_pes_payload
        self._keyframe_headers = system_header(self.mux_rate) + program_stream_map(self.stream_type, psm_version)

    def mux(self, access_unit: bytes, pts_90k: int, dts_90k: int, keyframe: bool) -> bytes:
        """One PS frame: pack header, [system header, PSM if keyframe], PES packets."""
        if not access_unit.startswith(b"\x00\x00\x01") and not access_unit.startswith(START_CODE):
            raise ValueError("the access unit must be Annex B (start with a start code)")
        pieces: list[bytes | memoryview] = [pack_header(dts_90k, self.mux_rate)]
        if keyframe:
            pieces.append(self._keyframe_headers)
        payload: list[bytes | memoryview] = [access_unit]
        if not self._starts_with_aud(access_unit):
            payload.insert(0, _AUD[self.codec])
        pieces += pes_packets(b"".join(payload) if len(payload) > 1 else access_unit,
                              pts_90k, dts_90k, keyframe, self.max_pes_payload)
        return b"".join(pieces)

    def _starts_with_aud(self, access_unit: bytes) -> bool:
        header = 3 if access_unit.startswith(b"\x00\x00\x01") else 4
        return len(access_unit) > header and nal_type(self.codec, access_unit[header:header + 1]) == \
            _AUD_TYPE[self.codec]


def pack_header(scr_90k: int, mux_rate_units: int) -> bytes:
    """MPEG-2 pack header (table 2-38): SCR base (33 bits, extension 0), mux rate, no stuffing."""
    scr = scr_90k % TIMESTAMP_MODULO
    return PACK_START + bytes((
        0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03),  # '01' SCR[32..30] marker SCR[29..28]
        (scr >> 20) & 0xFF,
        0x04 | ((scr >> 12) & 0xF8) | ((scr >> 13) & 0x03),  # SCR[19..15] marker SCR[14..13]
        (scr >> 5) & 0xFF,
        0x04 | ((scr << 3) & 0xF8),  # SCR[4..0] marker, extension[8..7] = 0
        0x01,  # extension[6..0] = 0, marker
        (mux_rate_units >> 14) & 0xFF,
        (mux_rate_units >> 6) & 0xFF,
        ((mux_rate_units << 2) & 0xFC) | 0x03,  # mux rate, two markers
        0xF8,  # reserved '11111', pack_stuffing_length 0
    ))


def system_header(rate_bound_units: int) -> bytes:
    """System header (table 2-40): one video stream (0xE0), no audio, variable rate."""
    body = bytes((
        0x80 | ((rate_bound_units >> 15) & 0x7F),  # marker, rate_bound[21..15]
        (rate_bound_units >> 7) & 0xFF,
        ((rate_bound_units << 1) & 0xFE) | 0x01,  # rate_bound[6..0], marker
        0x00,  # audio_bound 0, fixed_flag 0, CSPS_flag 0
        0xE1,  # system_audio_lock 1, system_video_lock 1, marker, video_bound 1
        0x7F,  # packet_rate_restriction 0, reserved '1111111'
        VIDEO_STREAM_ID,
        0xE0 | (VIDEO_BUFFER_BOUND_KB >> 8),  # '11', buffer_bound_scale 1 (x 1024), bound[12..8]
        VIDEO_BUFFER_BOUND_KB & 0xFF,
    ))
    return SYSTEM_HEADER_START + len(body).to_bytes(2, "big") + body


def program_stream_map(stream_type: int, version: int = 0) -> bytes:
    """Program stream map (table 2-41) declaring stream 0xE0 as `stream_type`, with its CRC."""
    elementary_map = bytes((stream_type, VIDEO_STREAM_ID, 0x00, 0x00))  # no descriptors
    body = bytes((
        0x80 | 0x20 | (version & 0x1F),  # current_next_indicator 1, single_extension 0, reserved 1
        0xFF,  # reserved '1111111', marker
        0x00, 0x00,  # program_stream_info_length
    )) + len(elementary_map).to_bytes(2, "big") + elementary_map
    length = len(body) + 4  # + CRC_32
    head = PSM_START + length.to_bytes(2, "big") + body
    return head + mpeg_crc32(head).to_bytes(4, "big")


def pes_packets(payload: bytes, pts_90k: int, dts_90k: int, keyframe: bool,
                max_payload: int | None = None) -> list[bytes | memoryview]:
    """The PES packets (stream 0xE0) of one access unit: the first with PTS (and DTS if it
    differs), the rest without timestamps; as pieces (headers and payload views) to join.

    data_alignment_indicator is set on the first PES of a keyframe only: the media-server PS
    demuxer behind ZLMediaKit reads it as "IDR frame" (H.222.0 allows 0 on any PES)."""
    first_header = _timestamps_header(pts_90k % TIMESTAMP_MODULO, dts_90k % TIMESTAMP_MODULO)
    view = memoryview(payload)
    pieces: list[bytes | memoryview] = []
    offset = 0
    header = first_header
    while offset < len(view) or not pieces:
        room = MAX_PES_LENGTH - 3 - len(header)
        if max_payload is not None:
            room = min(room, max_payload)
        chunk = view[offset:offset + room]
        flags = 0x84 if offset == 0 and keyframe else 0x80  # '10', data_alignment_indicator
        pieces.append(PES_VIDEO_START + (3 + len(header) + len(chunk)).to_bytes(2, "big") +
                      bytes((flags, 0xC0 if len(header) == 10 else 0x80 if header else 0x00, len(header))) +
                      header)
        pieces.append(chunk)
        offset += len(chunk)
        header = b""
    return pieces


def _timestamps_header(pts: int, dts: int) -> bytes:
    if dts == pts:
        return _timestamp(0x2, pts)
    return _timestamp(0x3, pts) + _timestamp(0x1, dts)


def _timestamp(prefix: int, ticks: int) -> bytes:
    """A 33-bit PTS/DTS in 5 bytes: 4-bit prefix, 3 bits, marker, 15 bits, marker, 15 bits, marker."""
    return bytes((
        (prefix << 4) | ((ticks >> 29) & 0x0E) | 0x01,
        (ticks >> 22) & 0xFF,
        ((ticks >> 14) & 0xFE) | 0x01,
        (ticks >> 7) & 0xFF,
        ((ticks << 1) & 0xFE) | 0x01,
    ))


def _rate_units(bits_per_second: int) -> int:
    """Mux rate in the fields' unit of 50 bytes per second (22 bits)."""
    units = -(-bits_per_second // 400)
    if not 0 < units < (1 << 22):
        raise ValueError(f"mux rate {bits_per_second} bit/s is out of range")
    return units


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def mpeg_crc32(data: bytes) -> int:
    """CRC-32/MPEG-2 (ISO/IEC 13818-1 annex A): over data followed by its CRC it gives 0."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc
