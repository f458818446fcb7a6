"""The SDP of a GB/T 28181 INVITE: read the platform's offer, write the device's answer. Pure.

What a platform offers (WVP-GB28181-pro, the common open platform, writes exactly this; others
differ in the optional lines):

    v=0
    o=34020000001320000001 0 0 IN IP4 10.0.0.2
    s=Play                          Play (live) | Playback | Download
    u=34020000001320000001:0        Playback/Download: the channel and a type
    c=IN IP4 10.0.0.2               where the platform's media server receives
    t=0 0                           Playback/Download: start and stop, Unix seconds
    m=video 30000 TCP/RTP/AVP 96 97 98    RTP/AVP for UDP; 96 is PS
    a=recvonly
    a=rtpmap:96 PS/90000
    a=rtpmap:98 H264/90000
    a=setup:passive                 TCP only: the platform's role (RFC 4145)
    a=connection:new
    y=0200000001                    the SSRC to send with, 10 decimal digits
    f=v/2/5/25/1/4096a/1/8/1        optional media description

The device answers with the same session name and SSRC, its own address and port, `a=sendonly`,
the PS rtpmap only, and for TCP the opposite `a=setup` role:

- UDP (`RTP/AVP`): the gateway sends datagrams to the offer's c= address and m= port, from the
  port it puts in its answer.
- `a=setup:passive` in the offer: the platform listens on c=/m=, the gateway connects to it
  (it is the TCP client) and answers `a=setup:active` with the local port it connects from.
  This is what WVP calls TCP-PASSIVE, and the usual case.
- `a=setup:active` in the offer: the platform will connect; the gateway listens on a port of
  its own choosing, puts that port in the answer with `a=setup:passive`, and accepts the
  platform's connection (WVP's TCP-ACTIVE). The offer's m= port is then not used.
- `a=setup:actpass`, or a TCP offer without `a=setup` (GB/T 28181-2011 platforms, which listen
  on the port they offer): the gateway connects, as for `passive`.

`InviteOffer.transport` names the gateway's side of this ("udp", "tcp-active": the gateway
connects, "tcp-passive": the gateway listens), the same words `LiveStream` takes and the answer
writes in its `a=setup`. Anything the gateway cannot serve (no PS payload, audio only, a
`Talk` session, no address) or cannot parse raises `SdpError` naming the line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from gateway.outputs.gb28181.rtp import ssrc_from_y

Session = Literal["Play", "Playback", "Download"]
Transport = Literal["udp", "tcp-active", "tcp-passive"]
SESSIONS: tuple[Session, ...] = ("Play", "Playback", "Download")
UDP_PROTOCOL = "RTP/AVP"
TCP_PROTOCOLS = ("TCP/RTP/AVP", "RTP/AVP/TCP")
"""GB/T 28181 writes TCP/RTP/AVP; a few older platforms write RTP/AVP/TCP."""

_LINE = re.compile(r"^([a-z])=(.*)$")
_ORIGIN = re.compile(r"^(\S+) (\S+) (\S+) IN IP4 (\S+)$")
_CONNECTION = re.compile(r"^IN (IP4|IP6) (\S+)$")
_MEDIA = re.compile(r"^(\w+) (\d+)(?:/\d+)? (\S+)((?: \S+)+)$")
_TIMING = re.compile(r"^(\d+) (\d+)$")
_RTPMAP = re.compile(r"^(\d+) ([\w.-]+)/(\d+)(?:/\S+)?$")


class SdpError(ValueError):
    """An offer the gateway cannot read or cannot serve; the message names the line."""


@dataclass(frozen=True, slots=True)
class InviteOffer:
    """The platform's offer, reduced to what the device needs (see the module docstring)."""

    session: Session
    origin_user: str
    address: str
    port: int
    protocol: str
    payload_type: int
    """The payload type the offer maps to PS/90000 (96 in practice): the answer uses it."""
    ssrc: str | None
    """The y= value as written (10 digits), or None when the offer has no y= line."""
    setup: str | None
    """The platform's a=setup (active, passive, actpass), or None."""
    connection_new: bool
    start: int
    stop: int
    uri: str | None = None
    media_format: str | None = None
    """The f= value as written, if any."""
    attributes: tuple[tuple[str, str], ...] = field(default=())
    """Every a= line of the video media (name, value), for what this class does not name."""

    @property
    def tcp(self) -> bool:
        return self.protocol in TCP_PROTOCOLS

    @property
    def transport(self) -> Transport:
        """The gateway's side: udp, tcp-active (the gateway connects), tcp-passive (it listens)."""
        if not self.tcp:
            return "udp"
        return "tcp-passive" if self.setup == "active" else "tcp-active"

    @property
    def ssrc_value(self) -> int | None:
        return None if self.ssrc is None else ssrc_from_y(self.ssrc)


def parse_offer(sdp: str | bytes) -> InviteOffer:
    """The offer in an INVITE body; raises SdpError naming the offending line."""
    text = sdp.decode("utf-8", "replace") if isinstance(sdp, bytes) else sdp
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise SdpError("empty SDP body")
    parser = _OfferParser()
    for number, line in lines:
        match = _LINE.match(line)
        if not match:
            raise SdpError(f"SDP line {number} {line[:80]!r}: not of the form x=value")
        try:
            parser.take(match.group(1), " ".join(match.group(2).split()))  # runs of blanks: one space
        except SdpError as error:
            raise SdpError(f"SDP line {number} {line[:80]!r}: {error}") from None
    return parser.offer()


def build_answer(offer: InviteOffer, *, username: str, address: str, port: int,
                 ssrc: str | None = None, media_format: str = "") -> str:
    """The device's answer (CRLF lines) to `offer`, sending from/at `address`:`port`.

    username: the o= user, the channel's GB/T 28181 ID. port: for udp the local port the
    packets leave from; for tcp-active the local port the gateway connects from; for
    tcp-passive the port it listens on. ssrc: only when the offer has no y= line (the
    platform's SSRC is used otherwise). media_format: the f= value (`video_format` builds one).
    """
    if not 0 < port < 65536:
        raise ValueError(f"answer port must be 1..65535, got {port}")
    _check_ipv4(address, "answer address")
    if not username or any(char.isspace() for char in username):
        raise ValueError(f"o= user must be one word, got {username!r}")
    y_value = offer.ssrc or ssrc
    if y_value is None:
        raise ValueError("the offer has no y= line: pass the SSRC to answer with")
    ssrc_from_y(y_value)
    protocol = "TCP/RTP/AVP" if offer.tcp else UDP_PROTOCOL
    lines = [
        "v=0",
        f"o={username} 0 0 IN IP4 {address}",
        f"s={offer.session}",
        f"c=IN IP4 {address}",
        f"t={offer.start} {offer.stop}",
        f"m=video {port} {protocol} {offer.payload_type}",
        "a=sendonly",
        f"a=rtpmap:{offer.payload_type} PS/90000",
    ]
    if offer.tcp:
        lines += [f"a=setup:{'active' if offer.transport == 'tcp-active' else 'passive'}", "a=connection:new"]
    lines += [f"y={y_value}", f"f={media_format}"]
    return "\r\n".join(lines) + "\r\n"


_VIDEO_CODECS = {"h264": 2, "hevc": 5}
"""GB/T 28181 f= video codec: 1 MPEG-4, 2 H.264, 3 SVAC, 4 3GP, 5 H.265 (the 2022 edition)."""
_RESOLUTIONS = {(176, 144): 1, (352, 288): 2, (704, 576): 3, (720, 576): 4, (720, 480): 4,
                (1280, 720): 5, (1920, 1080): 6}
"""f= resolution: 1 QCIF, 2 CIF, 3 4CIF, 4 D1, 5 720p, 6 1080p; other sizes have no code."""


def video_format(codec: str, width: int, height: int, fps: float | None) -> str:
    """An f= value describing the video sent: v/codec/resolution/fps/rate type/bitrate, no audio.
    Fields the standard has no code for (an unlisted size, the bitrate) are left empty."""
    resolution = _RESOLUTIONS.get((width, height), "")
    rate = "" if not fps else str(round(fps))
    return f"v/{_VIDEO_CODECS.get(codec, '')}/{resolution}/{rate}//a///"


class _OfferParser:
    """Collects an offer line by line; the first m=video with a PS payload is the one served."""

    def __init__(self) -> None:
        self.session: str | None = None
        self.origin_user = ""
        self.session_address: str | None = None
        self.media_address: str | None = None
        self.timing = (0, 0)
        self.uri: str | None = None
        self.ssrc: str | None = None
        self.media_format: str | None = None
        self.media: tuple[int, str, list[int]] | None = None
        self.in_video = False
        self.seen_media = False
        self.attributes: list[tuple[str, str]] = []

    def take(self, kind: str, value: str) -> None:
        if kind == "m":
            self._media(value)
        elif kind == "a":
            if self.in_video:
                name, _, attribute_value = value.partition(":")
                self.attributes.append((name.strip().lower(), attribute_value.strip()))
        elif kind == "c":
            self._connection(value)
        elif kind == "s":
            self.session = value.strip()
        elif kind == "o":
            match = _ORIGIN.match(value)
            if not match:
                raise SdpError("expected o=<user> <id> <version> IN IP4 <address>")
            self.origin_user = match.group(1)
        elif kind == "t":
            self._timing(value)
        elif kind == "u":
            self.uri = value
        elif kind == "y":
            try:
                ssrc_from_y(value)
            except ValueError as error:
                raise SdpError(str(error)) from None
            self.ssrc = value.strip()
        elif kind == "f":
            self.media_format = value
        # v, i, e, p, b, z, k, r: valid SDP the device does not need

    def _media(self, value: str) -> None:
        match = _MEDIA.match(value)
        if not match:
            raise SdpError("expected m=<media> <port> <protocol> <payload types>")
        media, port, protocol, formats = match.group(1), int(match.group(2)), match.group(3), match.group(4)
        self.in_video = media == "video" and self.media is None
        self.seen_media = True
        if not self.in_video:
            return
        if protocol != UDP_PROTOCOL and protocol not in TCP_PROTOCOLS:
            raise SdpError(f"transport {protocol!r} is not RTP/AVP or TCP/RTP/AVP")
        if not 0 < port < 65536:
            raise SdpError(f"port {port} is not 1..65535 (0 would refuse the stream)")
        try:
            payload_types = [int(item) for item in formats.split()]
        except ValueError:
            raise SdpError(f"payload types {formats.strip()!r} are not numbers") from None
        self.media = (port, protocol, payload_types)

    def _connection(self, value: str) -> None:
        match = _CONNECTION.match(value.strip())
        if not match:
            raise SdpError("expected c=IN IP4 <address>")
        if match.group(1) != "IP4":
            raise SdpError("only IPv4 media addresses are supported")
        address = match.group(2).split("/")[0]
        _check_ipv4(address, "c= address", SdpError)
        if self.seen_media:
            if self.in_video:
                self.media_address = address
        else:
            self.session_address = address

    def _timing(self, value: str) -> None:
        match = _TIMING.match(value.strip())
        if not match:
            raise SdpError("expected t=<start> <stop> (decimal seconds)")
        self.timing = (int(match.group(1)), int(match.group(2)))

    def offer(self) -> InviteOffer:
        if self.session not in SESSIONS:
            raise SdpError(f"session s={self.session!r} is not served (only s=Play, Playback, Download)"
                           if self.session is not None else "no s= line")
        if self.media is None:
            raise SdpError("no m=video line: the gateway sends video only")
        port, protocol, payload_types = self.media
        attributes = tuple(self.attributes)
        payload_type = _ps_payload_type(payload_types, attributes)
        address = self.media_address or self.session_address
        if address is None:
            raise SdpError("no c= line: the offer does not say where to send")
        directions = {name for name, _ in attributes} & {"sendonly", "inactive"}
        if directions:
            raise SdpError(f"a={directions.pop()}: the platform does not want to receive video")
        if self.session in ("Playback", "Download") and self.timing[1] <= self.timing[0]:
            raise SdpError(f"s={self.session} needs a time range, got t={self.timing[0]} {self.timing[1]}")
        setup = next((value.lower() for name, value in attributes if name == "setup"), None)
        if protocol in TCP_PROTOCOLS and setup not in (None, "active", "passive", "actpass"):
            raise SdpError(f"a=setup:{setup} is not active, passive or actpass")
        return InviteOffer(
            session=self.session, origin_user=self.origin_user, address=address, port=port,
            protocol=protocol, payload_type=payload_type, ssrc=self.ssrc, setup=setup,
            connection_new=any(name == "connection" and value.lower() == "new" for name, value in attributes),
            start=self.timing[0], stop=self.timing[1], uri=self.uri, media_format=self.media_format,
            attributes=attributes)


def _ps_payload_type(payload_types: list[int], attributes: tuple[tuple[str, str], ...]) -> int:
    """The offered payload type mapped to PS/90000 (or 96 offered without any rtpmap)."""
    maps = {}
    for name, value in attributes:
        if name == "rtpmap":
            match = _RTPMAP.match(value)
            if not match:
                raise SdpError(f"a=rtpmap:{value} is not <type> <encoding>/<clock rate>")
            maps[int(match.group(1))] = (match.group(2).upper(), int(match.group(3)))
    for payload_type in payload_types:
        if maps.get(payload_type) == ("PS", 90000):
            return payload_type
    if not maps and 96 in payload_types:
        return 96
    raise SdpError(f"no payload type of {payload_types} is PS/90000: the gateway sends MPEG-PS only")


def _check_ipv4(address: str, what: str, error: type[ValueError] = ValueError) -> None:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise error(f"{what} {address!r} is not an IPv4 address") from None
