"""SIP messages (RFC 3261): parse what the platform sends, build what the gateway sends. Pure.

Only what a GB/T 28181 device needs: requests and responses with headers and a byte body, the
handful of header fields a device reads (Via, From, To, Call-ID, CSeq, Content-Length,
WWW-Authenticate, Expires), and Content-Length framing for TCP. Parsing is strict: anything
malformed raises `SipParseError` with a one-line reason, which the transport logs before it
drops the message, so hostile or broken input from the network never goes further.

No maintained Python SIP stack fits: the PyPI ones are either unmaintained (aiosip, 2017),
C bindings without arm64 wheels (pjsua2), or young voice-call libraries (opensip, aiosipua)
that do not send out-of-dialog MESSAGE requests, which is most of what GB/T 28181 is.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from email.utils import parsedate_to_datetime

MAX_MESSAGE_BYTES = 65_535
"""The largest UDP datagram; a TCP message larger than this is refused as well."""

SIP_VERSION = "SIP/2.0"
BRANCH_MAGIC = "z9hG4bK"
"""RFC 3261 branch prefix: marks a branch as globally unique (transaction id)."""

COMPACT_NAMES = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via", "o": "Event",
}
CANONICAL_NAMES = {
    name.lower(): name
    for name in ("Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length", "Content-Type",
                 "Max-Forwards", "Expires", "WWW-Authenticate", "Authorization", "User-Agent",
                 "Allow", "Date", "Subject", "Supported", "Content-Encoding", "Route", "Record-Route",
                 "Event", "Subscription-State")
}
REQUIRED_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d)(?: (.*))?$")
_CSEQ = re.compile(r"^(\d{1,10})\s+([A-Za-z]+)$")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_URI_USER = re.compile(r"^sips?:([^@;>]+)@", re.IGNORECASE)


class SipParseError(ValueError):
    """A message that is not valid SIP (or too large); the reason is one line for the log."""


def canonical_name(name: str) -> str:
    """'call-id', 'i' -> 'Call-ID'; unknown names keep their spelling (compared case-insensitively)."""
    lowered = name.lower()
    if lowered in COMPACT_NAMES:
        return COMPACT_NAMES[lowered]
    return CANONICAL_NAMES.get(lowered, name)


@dataclass
class SipMessage:
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str) -> str | None:
        """First value of a header (case-insensitive, compact forms understood)."""
        wanted = canonical_name(name).lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def get_all(self, name: str) -> list[str]:
        wanted = canonical_name(name).lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def add(self, name: str, value: str) -> None:
        if "\r" in value or "\n" in value or not _TOKEN.match(name):
            raise ValueError(f"header {name!r} would break the message (line break or bad name)")
        self.headers.append((canonical_name(name), value))

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of CSeq; validated when the message was parsed."""
        match = _CSEQ.match((self.get("CSeq") or "").strip())
        if not match:
            raise SipParseError(f"bad CSeq {self.get('CSeq')!r}")
        return int(match.group(1)), match.group(2).upper()

    @property
    def branch(self) -> str:
        """The branch of the top Via: with CSeq's method, the transaction it belongs to."""
        return header_params(self.get("Via") or "").get("branch", "")

    def _head_lines(self) -> list[str]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The wire form; Content-Length is always written, from the body."""
        lines = self._head_lines()
        lines += [f"{name}: {value}" for name, value in self.headers if name.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class SipRequest(SipMessage):
    method: str = ""
    uri: str = ""

    def _head_lines(self) -> list[str]:
        if not _TOKEN.match(self.method) or " " in self.uri or not self.uri:
            raise ValueError(f"bad request line {self.method!r} {self.uri!r}")
        return [f"{self.method} {self.uri} {SIP_VERSION}"]

    def summary(self) -> str:
        return f"{self.method} {self.uri} (Call-ID {self.call_id})"


@dataclass
class SipResponse(SipMessage):
    status: int = 0
    reason: str = ""

    def _head_lines(self) -> list[str]:
        return [f"{SIP_VERSION} {self.status} {self.reason}"]

    def summary(self) -> str:
        return f"{self.status} {self.reason} to {self.get('CSeq')} (Call-ID {self.call_id})"


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """One SIP message from a datagram or a framed TCP message; raises SipParseError.

    Over UDP the body is cut to Content-Length (bytes after it are discarded, RFC 3261 18.3);
    a Content-Length larger than the body means the message was truncated.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message of {len(data)} bytes is larger than {MAX_MESSAGE_BYTES}")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("no blank line after the headers (not SIP, or truncated)")
    head = data[:end].decode("utf-8", errors="replace")
    body = data[end + 4:]
    lines = _unfold(head.split("\r\n"))
    message = _start_line(lines[0])
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:60]!r}")
        message.headers.append((canonical_name(name), value.strip()))
    for required in REQUIRED_HEADERS:
        if not message.get(required):
            raise SipParseError(f"missing {required} header")
    message.cseq  # noqa: B018  (validates CSeq)
    length = message.get("Content-Length")
    if length is not None:
        size = _content_length(length)
        if size > len(body):
            raise SipParseError(f"Content-Length {size} but only {len(body)} body bytes (truncated)")
        body = body[:size]
    message.body = body
    return message


def _unfold(lines: list[str]) -> list[str]:
    """Join header continuation lines (starting with a space or tab) to the line before."""
    joined: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and len(joined) > 1:
            joined[-1] += " " + line.strip()
        elif line[:1] in (" ", "\t"):
            raise SipParseError("continuation line where the start line or a header should be")
        else:
            joined.append(line)
    return joined


def _start_line(line: str) -> SipRequest | SipResponse:
    if line.startswith("SIP/"):
        match = _STATUS_LINE.match(line)
        if not match:
            raise SipParseError(f"bad status line {line[:60]!r}")
        return SipResponse(status=int(match.group(1)), reason=match.group(2) or "")
    match = _REQUEST_LINE.match(line)
    if not match:
        raise SipParseError(f"bad request line {line[:60]!r}")
    return SipRequest(method=match.group(1).upper(), uri=match.group(2))


def _content_length(value: str) -> int:
    if not value.strip().isdigit():
        raise SipParseError(f"bad Content-Length {value!r}")
    size = int(value)
    if size > MAX_MESSAGE_BYTES:
        raise SipParseError(f"Content-Length {size} is larger than {MAX_MESSAGE_BYTES}")
    return size


class StreamFramer:
    """Cuts a TCP byte stream into SIP messages by Content-Length (RFC 3261 18.3). Pure.

    `feed` returns the complete messages so far; a stream that cannot be framed (no header end
    within the size limit, a bad or missing Content-Length) raises SipParseError, after which
    the connection must be dropped: there is no way to find the next message.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while True:
            while self._buffer[:2] == b"\r\n":  # keep-alive CRLFs between messages (RFC 5626)
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE_BYTES:
                    raise SipParseError(f"no end of headers within {MAX_MESSAGE_BYTES} bytes")
                return messages
            size = _stream_content_length(bytes(self._buffer[:end]))
            total = end + 4 + size
            if len(self._buffer) < total:
                return messages
            messages.append(bytes(self._buffer[:total]))
            del self._buffer[:total]


def _stream_content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            return _content_length(value.decode("ascii", errors="replace"))
    raise SipParseError("a message on a TCP stream needs a Content-Length header")


# --------------------------------------------------------------------------- header values


def header_params(value: str) -> dict[str, str]:
    """';'-parameters of a header value outside <...> and quotes: 'a;tag=x;rport' -> {tag: x, rport: ''}."""
    depth, quoted, params_start = 0, False, -1
    for index, char in enumerate(value):
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        elif char == ";" and depth == 0:
            params_start = index
            break
    if params_start < 0:
        return {}
    params: dict[str, str] = {}
    for part in value[params_start + 1:].split(";"):
        name, _, param_value = part.partition("=")
        if name.strip():
            params[name.strip().lower()] = param_value.strip().strip('"')
    return params


def uri_of(value: str) -> str:
    """The URI of a name-addr ('"x" <sip:a@b>;tag=1' -> 'sip:a@b') or of a bare addr-spec."""
    unquoted = _QUOTED.sub('""', value)
    start, end = unquoted.find("<"), unquoted.find(">")
    if 0 <= start < end:
        return unquoted[start + 1:end].strip()
    return unquoted.split(";", 1)[0].strip()


def uri_user(uri: str) -> str | None:
    """User part of a sip: URI ('sip:3402...@3402000000' -> '3402...'), or None."""
    match = _URI_USER.match(uri)
    return match.group(1) if match else None


def with_tag(value: str, tag: str) -> str:
    """A From/To value with a tag added (unless it has one)."""
    return value if "tag" in header_params(value) else f"{value};tag={tag}"


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


def server_key(request: SipRequest) -> tuple[str, str]:
    """Which server transaction a request belongs to (RFC 3261 17.2.3): the branch, if it is an
    RFC 3261 one; else Call-ID, CSeq and From tag (an RFC 2543 peer)."""
    if request.branch.startswith(BRANCH_MAGIC):
        return request.branch, request.cseq[1]
    tag = header_params(request.get("From") or "").get("tag", "")
    return f"{request.call_id}|{request.cseq[0]}|{tag}", request.cseq[1]


def response_to(request: SipRequest, status: int, reason: str, to_tag: str) -> SipResponse:
    """The response a UAS sends (RFC 3261 8.2.6): Via, From, Call-ID, CSeq copied; To tagged."""
    response = SipResponse(status=status, reason=reason)
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq"):
            response.headers.append((name, value))
        elif name == "To":
            response.headers.append((name, with_tag(value, to_tag) if status > 100 else value))
    return response


def parse_date(value: str, local: tzinfo) -> datetime | None:
    """A Date header as an aware datetime, or None: GB/T 28181 platforms write their local time
    as 'YYYY-MM-DDTHH:MM:SS[.mmm]' (read in `local`, the gateway's zone: platform and gateway
    share the country's time), others RFC 1123 ('Sat, 13 Nov 2010 23:29:00 GMT')."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=local)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else None
