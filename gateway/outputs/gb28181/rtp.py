"""RTP (RFC 3550) packets of a GB/T 28181 PS stream, RFC 4571 framing for TCP, and the SSRC. Pure.

GB/T 28181 sends each PS frame as a run of RTP packets with payload type 96 ("PS/90000" in the
SDP), a 90 kHz timestamp equal to the frame's PTS, and the marker bit on the last packet of
the frame, so the receiver knows a frame is complete without parsing the PS. The SSRC is not
ours to choose: the platform puts it in the SDP's `y=` line (10 decimal digits) and may drop
packets whose SSRC differs.

The payload size leaves room for IP/UDP/RTP headers within a 1500-byte Ethernet MTU on the
video private network (1400 + 12 + 8 + 20 = 1440); over TCP the same packets are sent, each
behind RFC 4571's 2-byte length.
"""

from __future__ import annotations

import re
import secrets

RTP_VERSION_BYTE = 0x80
"""V=2, no padding, no extension, no CSRC."""
RTP_HEADER_SIZE = 12
DEFAULT_PAYLOAD_TYPE = 96
DEFAULT_MAX_PAYLOAD = 1400
CLOCK_RATE = 90_000
MAX_RFC4571_PACKET = 0xFFFF

_Y_VALUE = re.compile(r"^[0-9]{10}$")


class RtpPacketizer:
    """Cuts payloads (one PS frame each) into RTP packets of one stream.

    The sequence number starts at a random value (RFC 3550 5.1; `first_sequence` fixes it for
    tests) and wraps at 16 bits; the timestamp is the caller's 90 kHz time, taken modulo 2**32.
    """

    def __init__(self, ssrc: int, payload_type: int = DEFAULT_PAYLOAD_TYPE, *,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, first_sequence: int | None = None):
        if not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError(f"SSRC must fit 32 bits, got {ssrc}")
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RTP payload type must be 0..127, got {payload_type}")
        if max_payload < 1:
            raise ValueError(f"max payload must be positive, got {max_payload}")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.max_payload = max_payload
        self.sequence = secrets.randbelow(1 << 16) if first_sequence is None else first_sequence & 0xFFFF
        """The sequence number of the next packet."""
        self._ssrc_bytes = ssrc.to_bytes(4, "big")

    def packetize(self, payload: bytes, timestamp_90k: int) -> list[bytes]:
        """The RTP packets carrying `payload` (one frame): marker set on the last one."""
        if not payload:
            raise ValueError("nothing to packetize (empty payload)")
        view = memoryview(payload)
        timestamp = (timestamp_90k & 0xFFFFFFFF).to_bytes(4, "big")
        last = (len(view) - 1) // self.max_payload
        packets = []
        for index in range(last + 1):
            marker = 0x80 if index == last else 0x00
            header = bytes((RTP_VERSION_BYTE, marker | self.payload_type)) + \
                self.sequence.to_bytes(2, "big") + timestamp + self._ssrc_bytes
            packets.append(header + view[index * self.max_payload:(index + 1) * self.max_payload])
            self.sequence = (self.sequence + 1) & 0xFFFF
        return packets


def rfc4571_frame(rtp_packet: bytes) -> bytes:
    """One RTP packet framed for a TCP stream (RFC 4571): 2-byte big-endian length, then the packet."""
    if len(rtp_packet) > MAX_RFC4571_PACKET:
        raise ValueError(f"RTP packet of {len(rtp_packet)} bytes does not fit RFC 4571's 16-bit length")
    return len(rtp_packet).to_bytes(2, "big") + rtp_packet


def ssrc_from_y(y_value: str) -> int:
    """The SSRC from an SDP `y=` value: exactly 10 decimal digits ("0200000001" -> 0x0BEBC201).

    GB/T 28181 writes the SSRC in decimal: the first digit says live (0) or history (1), the
    next five are digits of the platform's SIP domain, the last four number the stream.
    """
    text = y_value.strip()
    if not _Y_VALUE.match(text):
        raise ValueError(f"SSRC {y_value!r} is not 10 decimal digits (GB/T 28181 y= line)")
    value = int(text)
    if value > 0xFFFFFFFF:
        raise ValueError(f"SSRC {y_value!r} does not fit in 32 bits")
    return value


def ssrc_to_y(ssrc: int) -> str:
    """The `y=` value of an SSRC: 10 decimal digits, zero-padded."""
    if not 0 <= ssrc <= 0xFFFFFFFF:
        raise ValueError(f"SSRC must fit 32 bits, got {ssrc}")
    return f"{ssrc:010d}"
