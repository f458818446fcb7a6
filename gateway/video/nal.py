"""H.264/H.265 bitstream framing: Annex B start codes vs length-prefixed NAL units. Pure bytes.

Cameras over RTSP give Annex B packets (NAL units after 00 00 01 start codes) and Annex B
parameter sets (SPS/PPS, plus VPS for H.265) as the codec configuration. MP4 files give
length-prefixed packets (each NAL unit after its 1-4 byte big-endian length) and an avcC/hvcC
record holding the parameter sets. Remuxers want one form: these functions turn the second
into the first (PyAV's muxers learn the parameter sets from an Annex B keyframe; MPEG-2 PS
carries Annex B as is), and find the parameter sets a keyframe carries or lacks.

Malformed input raises `ValueError` naming what is wrong (a corrupt packet is the caller's to
skip), never an IndexError from deep inside.
"""

from __future__ import annotations

START_CODE = b"\x00\x00\x00\x01"
SEQUENCE_PARAMETER_SET = {"h264": 7, "hevc": 33}
"""NAL unit type of the sequence parameter set (H.264 SPS 7; H.265 SPS 33, beside VPS 32, PPS 34)."""


def is_length_prefixed_config(extradata: bytes | None) -> bool:
    """True for an avcC/hvcC record (configurationVersion 1), False for Annex B or nothing."""
    return bool(extradata) and extradata[0] == 1  # type: ignore[index]


def config_parameter_sets(codec: str, extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, parameter set NAL units) of an avcC (H.264) or hvcC (H.265) record."""
    if codec == "h264":
        return _avcc_parameter_sets(extradata)
    if codec == "hevc":
        return _hvcc_parameter_sets(extradata)
    raise ValueError(f"no parameter set record for codec {codec!r}")


def _avcc_parameter_sets(record: bytes) -> tuple[int, list[bytes]]:
    reader = _Reader(record, "avcC record")
    reader.skip(4)  # version, profile, profile compatibility, level
    length_size = (reader.byte() & 0x03) + 1
    units = [reader.sized(2) for _ in range(reader.byte() & 0x1F)]  # SPS
    units += [reader.sized(2) for _ in range(reader.byte())]  # PPS
    return length_size, units


def _hvcc_parameter_sets(record: bytes) -> tuple[int, list[bytes]]:
    reader = _Reader(record, "hvcC record")
    reader.skip(21)  # version, profile/tier/level, constraint flags, chroma and bit depths, frame rate
    length_size = (reader.byte() & 0x03) + 1
    units: list[bytes] = []
    for _ in range(reader.byte()):  # arrays, one per NAL unit type
        reader.skip(1)
        units += [reader.sized(2) for _ in range(reader.uint(2))]
    return length_size, units


def to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """A length-prefixed packet as Annex B (4-byte start codes)."""
    if length_size not in (1, 2, 3, 4):
        raise ValueError(f"NAL length size must be 1 to 4 bytes, got {length_size}")
    parts: list[bytes] = []
    offset, end = 0, len(data)
    while offset < end:
        if offset + length_size > end:
            raise ValueError(f"packet truncated in a NAL length at byte {offset} of {end}")
        size = int.from_bytes(data[offset:offset + length_size], "big")
        offset += length_size
        if size == 0 or offset + size > end:
            raise ValueError(f"NAL unit of {size} bytes at byte {offset} overruns the {end}-byte packet")
        parts.append(START_CODE)
        parts.append(data[offset:offset + size])
        offset += size
    return b"".join(parts)


def annexb_units(units: list[bytes]) -> bytes:
    """NAL units joined as an Annex B byte stream."""
    return b"".join(START_CODE + unit for unit in units)


def nal_types(codec: str, annexb: bytes) -> list[int]:
    """The NAL unit types in an Annex B packet, in order (H.264 or H.265 header layout)."""
    types: list[int] = []
    index = annexb.find(b"\x00\x00\x01")
    while index >= 0 and index + 3 < len(annexb):
        header = annexb[index + 3]
        types.append(header & 0x1F if codec == "h264" else (header >> 1) & 0x3F)
        index = annexb.find(b"\x00\x00\x01", index + 3)
    return types


def has_sequence_parameter_set(codec: str, annexb: bytes) -> bool:
    return SEQUENCE_PARAMETER_SET[codec] in nal_types(codec, annexb)


class _Reader:
    """Bounds-checked big-endian reads over a configuration record."""

    def __init__(self, data: bytes, what: str):
        self.data, self.what, self.offset = data, what, 0

    def take(self, count: int) -> bytes:
        if self.offset + count > len(self.data):
            raise ValueError(f"{self.what} truncated at byte {self.offset} of {len(self.data)}")
        chunk = self.data[self.offset:self.offset + count]
        self.offset += count
        return chunk

    def skip(self, count: int) -> None:
        self.take(count)

    def byte(self) -> int:
        return self.take(1)[0]

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def sized(self, size_bytes: int) -> bytes:
        return self.take(self.uint(size_bytes))
