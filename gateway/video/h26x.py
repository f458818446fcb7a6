"""H.264 and H.265 bitstream plumbing for remuxing: NAL units, codec configuration, Annex B. Pure.

Cameras hand us access units in one of two shapes. RTSP (through FFmpeg) gives Annex B: NAL
units behind 00 00 01 / 00 00 00 01 start codes, with the parameter sets (VPS/SPS/PPS) in the
extradata and usually repeated before every keyframe. MP4 files give length-prefixed units
(AVCC/HVCC: each NAL unit behind a 1, 2 or 4 byte big-endian length) and an avcC/hvcC record
in the extradata that carries the parameter sets once, never in the packets. MPEG-2 PS (and
TS) carry Annex B only, and a receiver that joins late can decode from a keyframe only if the
parameter sets come with it, so `annexb_access_unit` returns every access unit in Annex B
form with the parameter sets in front of each keyframe that lacks them.

Malformed input (a length prefix running past the data, a truncated record, a packet that is
neither shape) raises ValueError with a one-line reason: camera data is untrusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gateway.video.packets import EncodedPacket

START_CODE = b"\x00\x00\x00\x01"
_SHORT_START_CODE = b"\x00\x00\x01"

# H.264 (ITU-T H.264 table 7-1)
H264_SLICE = 1
H264_IDR = 5
H264_SEI = 6
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9

# H.265 (ITU-T H.265 table 7-1)
HEVC_IRAP_FIRST = 16
"""BLA_W_LP; IRAP pictures (the ones a decoder can start at) are types 16..23."""
HEVC_IRAP_LAST = 23
HEVC_VPS = 32
HEVC_SPS = 33
HEVC_PPS = 34
HEVC_AUD = 35
HEVC_SEI_PREFIX = 39

CODECS = ("h264", "hevc")
_PARAMETER_SET_TYPES = {"h264": (H264_SPS, H264_PPS), "hevc": (HEVC_VPS, HEVC_SPS, HEVC_PPS)}
_AUD_TYPE = {"h264": H264_AUD, "hevc": HEVC_AUD}


def nal_type(codec: str, nal: bytes | memoryview) -> int:
    """The NAL unit type from the first header byte (H.264: 5 bits; H.265: 6 bits after F)."""
    if not nal:
        raise ValueError("empty NAL unit")
    return (nal[0] & 0x1F) if codec == "h264" else (nal[0] >> 1) & 0x3F


def is_annexb(data: bytes) -> bool:
    """True when `data` starts with a start code (the Annex B shape)."""
    return data.startswith(_SHORT_START_CODE) or data.startswith(START_CODE)


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without start codes (trailing zeros dropped:
    the zero_byte of a 4-byte start code and trailing_zero_8bits belong to the byte stream)."""
    first = data.find(_SHORT_START_CODE)
    if first < 0 or data[:first].strip(b"\x00"):
        raise ValueError("not an Annex B byte stream (no start code at the beginning)")
    units = []
    begin = first + 3
    while True:
        next_start = data.find(_SHORT_START_CODE, begin)
        end = len(data) if next_start < 0 else next_start
        unit = data[begin:end].rstrip(b"\x00")
        if unit:
            units.append(unit)
        if next_start < 0:
            return units
        begin = next_start + 3


def split_length_prefixed(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of one AVCC/HVCC access unit (each behind a big-endian length)."""
    if length_size not in (1, 2, 4):
        raise ValueError(f"NAL length size must be 1, 2 or 4 bytes, not {length_size}")
    units = []
    offset, total = 0, len(data)
    while offset < total:
        if offset + length_size > total:
            raise ValueError(f"truncated NAL length prefix at byte {offset} of {total}")
        size = int.from_bytes(data[offset:offset + length_size], "big")
        offset += length_size
        if size == 0 or offset + size > total:
            raise ValueError(f"NAL unit of {size} bytes at byte {offset} runs past the "
                             f"{total}-byte access unit (or is empty)")
        units.append(data[offset:offset + size])
        offset += size
    return units


def join_annexb(units: list[bytes] | tuple[bytes, ...]) -> bytes:
    """NAL units as an Annex B byte stream, each behind a 4-byte start code."""
    return b"".join(START_CODE + unit for unit in units)


def length_prefixed_to_annexb(data: bytes, length_size: int) -> bytes:
    """One AVCC/HVCC access unit converted to Annex B."""
    return join_annexb(split_length_prefixed(data, length_size))


@dataclass(frozen=True, slots=True)
class CodecConfig:
    """What the extradata says: the parameter sets (in decoding order: VPS, SPS, PPS) and how
    the packets frame their NAL units (`nal_length_size` None: Annex B; else 1, 2 or 4)."""

    codec: str
    parameter_sets: tuple[bytes, ...]
    nal_length_size: int | None


def parse_avcc(record: bytes) -> CodecConfig:
    """An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3) from MP4 extradata."""
    if len(record) < 7:
        raise ValueError(f"avcC record of {len(record)} bytes is too short (need at least 7)")
    if record[0] != 1:
        raise ValueError(f"avcC configurationVersion is {record[0]}, expected 1")
    length_size = (record[4] & 0x03) + 1
    if length_size == 3:
        raise ValueError("avcC lengthSizeMinusOne is 2 (3-byte lengths are not allowed)")
    reader = _Reader(record, 5, "avcC")
    sets = [reader.sized(2) for _ in range(reader.byte() & 0x1F)]
    sets += [reader.sized(2) for _ in range(reader.byte())]
    return CodecConfig("h264", tuple(sets), length_size)


def parse_hvcc(record: bytes) -> CodecConfig:
    """An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3) from MP4 extradata."""
    if len(record) < 23:
        raise ValueError(f"hvcC record of {len(record)} bytes is too short (need at least 23)")
    if record[0] != 1:
        raise ValueError(f"hvcC configurationVersion is {record[0]}, expected 1")
    length_size = (record[21] & 0x03) + 1
    if length_size == 3:
        raise ValueError("hvcC lengthSizeMinusOne is 2 (3-byte lengths are not allowed)")
    reader = _Reader(record, 22, "hvcC")
    sets = []
    for _ in range(reader.byte()):
        reader.byte()  # array_completeness, reserved, NAL_unit_type: each unit says its own type
        sets += [reader.sized(2) for _ in range(reader.uint(2))]
    sets = [unit for unit in sets if nal_type("hevc", unit) in _PARAMETER_SET_TYPES["hevc"]]  # not SEI
    return CodecConfig("hevc", tuple(_in_decoding_order("hevc", sets)), length_size)


def parse_extradata(codec: str, extradata: bytes | None) -> CodecConfig:
    """The codec configuration, whichever shape the extradata has (Annex B, avcC or hvcC)."""
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r} cannot be remuxed (only H.264 and H.265)")
    if not extradata:
        return CodecConfig(codec, (), None)
    if is_annexb(extradata):
        sets = [unit for unit in split_annexb(extradata)
                if nal_type(codec, unit) in _PARAMETER_SET_TYPES[codec]]
        return CodecConfig(codec, tuple(_in_decoding_order(codec, sets)), None)
    return parse_avcc(extradata) if codec == "h264" else parse_hvcc(extradata)


@lru_cache(maxsize=64)
def _cached_config(codec: str, extradata: bytes | None) -> CodecConfig:
    return parse_extradata(codec, extradata)


def annexb_access_unit(packet: EncodedPacket) -> bytes:
    """The packet's access unit in Annex B form; on a keyframe, with the parameter sets in
    front (after an access unit delimiter, if one leads) unless the unit already carries them.

    Non-keyframes that are Annex B already are returned as they are (no copy): this runs for
    every frame of every live stream.
    """
    codec = packet.stream.codec
    config = _cached_config(codec, packet.stream.extradata)
    data = packet.data
    if not data:
        raise ValueError("empty packet")
    if config.nal_length_size is None:
        if not is_annexb(data):
            raise ValueError("packet is not Annex B although the extradata is "
                             f"(starts with {data[:4].hex()})")
        if not packet.keyframe:
            return data
        units = split_annexb(data)
        completed = with_parameter_sets(codec, units, config.parameter_sets)
        return data if completed is units else join_annexb(completed)
    units = split_length_prefixed(data, config.nal_length_size)
    if packet.keyframe:
        units = with_parameter_sets(codec, units, config.parameter_sets)
    return join_annexb(units)


def with_parameter_sets(codec: str, units: list[bytes], parameter_sets: tuple[bytes, ...]) -> list[bytes]:
    """`units` with `parameter_sets` inserted before the first non-AUD unit, unless every
    parameter set type the codec needs is already among the units (then `units` itself)."""
    present = {nal_type(codec, unit) for unit in units}
    if not parameter_sets or all(kind in present for kind in _PARAMETER_SET_TYPES[codec]):
        return units
    at = 1 if units and nal_type(codec, units[0]) == _AUD_TYPE[codec] else 0
    return [*units[:at], *parameter_sets, *units[at:]]


def _in_decoding_order(codec: str, units: list[bytes]) -> list[bytes]:
    order = _PARAMETER_SET_TYPES[codec]
    return sorted(units, key=lambda unit: order.index(nal_type(codec, unit)))


class _Reader:
    """Bounds-checked reading of a configuration record; errors name the record and offset."""

    def __init__(self, data: bytes, offset: int, what: str):
        self.data, self.offset, self.what = data, offset, what

    def uint(self, size: int) -> int:
        if self.offset + size > len(self.data):
            raise ValueError(f"{self.what} record truncated at byte {self.offset} of {len(self.data)}")
        value = int.from_bytes(self.data[self.offset:self.offset + size], "big")
        self.offset += size
        return value

    def byte(self) -> int:
        return self.uint(1)

    def sized(self, length_size: int) -> bytes:
        size = self.uint(length_size)
        if size == 0 or self.offset + size > len(self.data):
            raise ValueError(f"{self.what} parameter set of {size} bytes at byte {self.offset} "
                             f"runs past the {len(self.data)}-byte record (or is empty)")
        unit = self.data[self.offset:self.offset + size]
        self.offset += size
        return unit
