"""A fake-but-faithful ONVIF device for tests: SOAP over HTTP on 127.0.0.1, plus WS-Discovery.

The responses are ONVIF documents written from the WSDL/XSD (devicemgmt, media, ptz, events,
WS-BaseNotification), in SOAP 1.2 envelopes, with the element order the schemas demand, so the
client parses them with the same zeep bindings it uses against real cameras. WS-Security is
checked for real: the UsernameToken's PasswordDigest = Base64(SHA-1(nonce + created + password))
is recomputed, and `Created` must be within `skew_window_s` of the device's own clock (which can
be offset with `clock_offset_s`), so a wrong password or a skewed clock gives the genuine
`env:Sender / ter:NotAuthorized` fault (or HTTP 401 with `auth_failure="http401"`).

Knobs: per-operation `faults` and `delays`, `never_answer` (accepts the request, never replies),
`refuse_credentials` / `wrong_password_for_s` (every authenticated request gets NotAuthorized, as
a camera does while its password is being changed), PTZ behaviour (`move_s`: a GotoPreset move
takes this long, MoveStatus MOVING and the position sliding towards the preset meanwhile;
`ptz_status`: what GetStatus reports, "full", "move_status", "position" or "unsupported";
`ptz_stuck`: GotoPreset is accepted but the head does not move; `pan_range`/`tilt_range`/
`zoom_range`: the position space the head reports in, e.g. (0, 360) for a camera that reports
degrees while naming the generic space, declared by GetNodes unless `declare_spaces=False`;
ContinuousMove moves the head at velocity x half the range per second until Stop or its
Timeout, SetPreset/RemovePreset store and forget presets),
`get_services=False` (old devices: fall back to GetCapabilities), `stream_uri_credentials`
(the camera embeds user:password in the stream URI, as some do), PullPoint behaviour
(`max_subscriptions`, `cancel_all_on_unsubscribe`, `broken_relative_time`, `max_termination_s`),
`reboot(downtime_s)` (port closed for a while, every subscription forgotten) and `push_event()`.

`DiscoveryResponder` answers WS-Discovery Probe messages on a loopback UDP port (unicast only;
nothing is ever sent to a multicast group).
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

from lxml import etree

from onvif_ptz_ops import PtzOperations

ENV = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DIGEST_TYPE = ("http://docs.oasis-open.org/wss/2004/01/"
               "oasis-200401-wss-username-token-profile-1.0#PasswordDigest")
NAMESPACES = {
    "env": ENV,
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "timg": "http://www.onvif.org/ver20/imaging/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "ter": "http://www.onvif.org/ver10/error",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsrf-rw": "http://docs.oasis-open.org/wsrf/rw-2",
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "tns1": "http://www.onvif.org/ver10/topics",
    "wsse": WSSE,
    "wsu": WSU,
}
XMLNS = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES.items())
PRE_AUTH = {"GetSystemDateAndTime", "GetServices", "GetCapabilities", "GetServiceCapabilities",
            "GetWsdlUrl", "GetHostname", "GetEndpointReference"}
"""ONVIF access class PRE_AUTH (Core spec, 5.9.4.3): answered without credentials. A camera with a
wrong password therefore lets a client connect and list its services, then refuses the rest."""
PTZ_STATUS_KINDS = ("full", "move_status", "position", "unsupported")


@dataclass
class FakeProfile:
    token: str
    name: str
    width: int
    height: int
    encoding: str = "H264"
    fps: int = 25
    ptz: bool = False
    path: str = ""


@dataclass
class FakePreset:
    token: str
    name: str
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0


@dataclass
class FaultSpec:
    """One SOAP fault: code env:Sender|env:Receiver, subcode e.g. ter:ActionNotSupported."""

    code: str = "env:Receiver"
    subcode: str | None = "ter:ActionNotSupported"
    reason: str = "Optional Action Not Implemented"
    status: int = 0  # 0: 400 for Sender faults, 500 for Receiver faults

    @property
    def http_status(self) -> int:
        return self.status or (400 if self.code.endswith("Sender") else 500)


NOT_AUTHORIZED = FaultSpec("env:Sender", "ter:NotAuthorized", "Sender not Authorized")


class Fault(Exception):
    def __init__(self, spec: FaultSpec, detail: str = ""):
        super().__init__(spec.reason)
        self.spec = spec
        self.detail = detail


@dataclass
class Subscription:
    id: int
    termination: datetime
    messages: list[str] = field(default_factory=list)
    pulls: int = 0


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(text)
    days, hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Reset every open keep-alive connection, as a device that powers off does."""
        with self._connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that gave up (timeouts, stopped listeners) are part of the tests


class FakeOnvifDevice(PtzOperations):
    """An ONVIF Profile S (+PTZ, +events) device on 127.0.0.1.  Use as a context manager."""

    def __init__(self, *, user: str = "admin", password: str = "Secret-1",
                 manufacturer: str = "Acme", model: str = "IPC-2000", firmware: str = "V5.6.1 build 230101",
                 serial: str = "SN-0001", hardware_id: str = "HW-77",
                 profiles: list[FakeProfile] | None = None, presets: list[FakePreset] | None = None,
                 ptz: bool | None = None, clock_offset_s: float = 0.0, skew_window_s: float = 5.0,
                 auth_failure: str = "fault", get_services: bool = True,
                 faults: dict[str, FaultSpec] | None = None, delays: dict[str, float] | None = None,
                 never_answer: bool = False, stream_uri_credentials: bool = False,
                 rtsp_port: int = 554, max_subscriptions: int = 8,
                 cancel_all_on_unsubscribe: bool = False, broken_relative_time: bool = False,
                 max_termination_s: float | None = None, name: str = "Front Gate",
                 location: str = "city/Shenzhen", port: int = 0, refuse_credentials: bool = False,
                 wrong_password_for_s: float = 0.0, move_s: float = 0.0, ptz_status: str = "full",
                 ptz_stuck: bool = False, pan_range: tuple[float, float] = (-1.0, 1.0),
                 tilt_range: tuple[float, float] = (-1.0, 1.0), zoom_range: tuple[float, float] = (0.0, 1.0),
                 declare_spaces: bool = True, start_position: tuple[float, float, float] | None = None):
        self.user, self.password = user, password
        self.info = (manufacturer, model, firmware, serial, hardware_id)
        self.profiles = profiles if profiles is not None else [
            FakeProfile("Profile_1", "mainStream", 1920, 1080, ptz=bool(presets)),
            FakeProfile("Profile_2", "subStream", 640, 360, ptz=bool(presets)),
        ]
        self.presets = presets or []
        self.ptz = bool(self.presets) if ptz is None else ptz
        self.clock_offset_s = clock_offset_s
        self.skew_window_s = skew_window_s
        self.auth_failure = auth_failure
        self.get_services = get_services
        self.faults: dict[str, FaultSpec] = dict(faults or {})
        self.delays: dict[str, float] = dict(delays or {})
        self.raw_responses: dict[str, tuple[int, bytes]] = {}  # operation -> (HTTP status, body)
        self.never_answer = never_answer
        self.stream_uri_credentials = stream_uri_credentials
        self.rtsp_port = rtsp_port
        self.max_subscriptions = max_subscriptions
        self.cancel_all_on_unsubscribe = cancel_all_on_unsubscribe
        self.broken_relative_time = broken_relative_time
        self.max_termination_s = max_termination_s
        self.name, self.location = name, location
        self.endpoint_uuid = f"urn:uuid:{uuid.uuid4()}"
        self.calls: list[str] = []
        self.call_times: list[tuple[str, float]] = []
        """(operation, time.monotonic()) of every request, for tests of retry pacing."""
        self.auth_failures = 0
        self.goto_calls: list[tuple[str, str]] = []
        self.refuse_credentials = refuse_credentials
        """While True every authenticated request is refused (tests flip it to 'fix the password')."""
        self.wrong_password_for_s = wrong_password_for_s
        self._credentials_ok_at = 0.0
        if ptz_status not in PTZ_STATUS_KINDS:
            raise ValueError(f"ptz_status must be one of {PTZ_STATUS_KINDS}")
        self.move_s = move_s
        self.ptz_status = ptz_status
        self.ptz_stuck = ptz_stuck
        self.ranges = (pan_range, tilt_range, zoom_range)
        self.declare_spaces = declare_spaces
        self._position = start_position or tuple(max(low, min(high, 0.0)) for low, high in self.ranges)
        self._move: tuple[tuple[float, float, float], tuple[float, float, float], float] | None = None
        self._velocity: tuple[tuple[float, float, float], float, float | None] | None = None
        """A continuous move: (velocity per axis -1..1, started at, ends at or None)."""
        self.ptz_calls: list[tuple[str, str]] = []
        """(operation, detail) of every PTZ command (ContinuousMove, Stop, SetPreset, RemovePreset)."""
        self.stopped_at: list[tuple[float, float, float]] = []
        """Where the head was when each Stop came (what a continuous move achieved)."""
        self._next_preset = 100
        self.subscriptions: dict[int, Subscription] = {}
        self.states: dict[tuple, tuple[str, dict[str, str], dict[str, str]]] = {}
        """Current property states (topic, source) -> (topic, data, source), as pushed."""
        self.stats = {"created": 0, "renewed": 0, "unsubscribed": 0, "pulls": 0}
        self._next_subscription = 1
        self._lock = threading.Condition()
        self._released = threading.Event()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeOnvifDevice:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> FakeOnvifDevice:
        self._credentials_ok_at = time.monotonic() + self.wrong_password_for_s
        self._released.clear()
        self._server = _Server(("127.0.0.1", self._port), self._handler_class())
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-onvif-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        with self._lock:
            self._lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
            self._server = None

    def reboot(self, downtime_s: float = 0.5) -> None:
        """Power-cycle: every connection is reset, subscriptions and event states are lost, and
        connections are refused for `downtime_s` (the restart happens in the background)."""
        with self._lock:
            self.subscriptions.clear()
            self.states.clear()
        self.stop()
        threading.Timer(downtime_s, self.start).start()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    @property
    def device_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/onvif/device_service"

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.clock_offset_s)

    # ------------------------------------------------------------------ events

    def push_event(self, topic: str, data: dict[str, str], source: dict[str, str] | None = None,
                   operation: str = "Changed") -> None:
        """Queue one notification on every live subscription (tns1: topics); the device
        remembers it as the property's current state, re-sent at every synchronisation point."""
        message = notification_xml(topic, data, source or {}, operation, self.now())
        with self._lock:
            key = (topic, tuple(sorted((source or {}).items())))
            if operation == "Deleted":
                self.states.pop(key, None)
            else:
                self.states[key] = (topic, dict(data), dict(source or {}))
            for subscription in self.subscriptions.values():
                subscription.messages.append(message)
            self._lock.notify_all()

    def live_subscriptions(self) -> int:
        now = self.now()
        with self._lock:
            return sum(1 for s in self.subscriptions.values() if s.termination > now)

    # ------------------------------------------------------------------ HTTP

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        device = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if device.never_answer:
                    device._released.wait()
                    self.close_connection = True
                    return
                status, payload, extra = device.handle(self.path, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", 'application/soap+xml; charset=utf-8')
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 - snapshot
                payload = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def handle(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        try:
            envelope = etree.fromstring(body)
            request = envelope.find(f"{{{ENV}}}Body")[0]
        except (etree.XMLSyntaxError, TypeError, IndexError):
            return self._fault(FaultSpec("env:Sender", "ter:WellFormed", "Malformed SOAP message"))
        operation = etree.QName(request).localname
        self.calls.append(operation)
        self.call_times.append((operation, time.monotonic()))
        if delay := self.delays.get(operation):
            self._released.wait(delay)
        if operation not in PRE_AUTH and not self._authorized(envelope):
            self.auth_failures += 1
            if self.auth_failure == "http401":
                return 401, b"", {"WWW-Authenticate": 'Digest realm="IP Camera", nonce="abc", qop="auth"'}
            return self._fault(NOT_AUTHORIZED, "The action requested requires authorization "
                                               "and the sender is not authorized")
        if operation in self.faults:
            return self._fault(self.faults[operation])
        if operation in self.raw_responses:
            status, raw = self.raw_responses[operation]
            return status, raw, {}
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            return self._fault(FaultSpec())
        try:
            content, action = handler(request, path)
        except Fault as fault:
            return self._fault(fault.spec, fault.detail)
        header = f"<wsa:Action>{action}</wsa:Action>" if action else ""
        return 200, _envelope(content, header), {}

    def _fault(self, spec: FaultSpec, detail: str = "") -> tuple[int, bytes, dict[str, str]]:
        subcode = (f"<env:Subcode><env:Value>{spec.subcode}</env:Value></env:Subcode>"
                   if spec.subcode else "")
        detail_xml = f"<env:Detail>{detail}</env:Detail>" if detail.startswith("<") else (
            f"<env:Detail><env:Text>{escape(detail)}</env:Text></env:Detail>" if detail else "")
        content = (f"<env:Fault><env:Code><env:Value>{spec.code}</env:Value>{subcode}</env:Code>"
                   f'<env:Reason><env:Text xml:lang="en">{escape(spec.reason)}</env:Text></env:Reason>'
                   f"{detail_xml}</env:Fault>")
        return spec.http_status, _envelope(content), {}

    def _authorized(self, envelope: etree._Element) -> bool:
        if self.refuse_credentials or time.monotonic() < self._credentials_ok_at:
            return False
        token = envelope.find(f"{{{ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None:
            return False
        username = token.findtext(f"{{{WSSE}}}Username") or ""
        password = token.find(f"{{{WSSE}}}Password")
        nonce = token.findtext(f"{{{WSSE}}}Nonce") or ""
        created = token.findtext(f"{{{WSU}}}Created") or ""
        if username != self.user or password is None:
            return False
        if password.get("Type", "").endswith("#PasswordText"):
            return password.text == self.password  # allowed by the profile, used by old clients
        try:
            raw_nonce = base64.b64decode(nonce)
            sent = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return False
        expected = base64.b64encode(
            hashlib.sha1(raw_nonce + created.encode() + self.password.encode()).digest()).decode()
        if password.text != expected:
            return False
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=timezone.utc)
        return abs((sent - self.now()).total_seconds()) <= self.skew_window_s

    # ------------------------------------------------------------------ device management

    def op_GetSystemDateAndTime(self, request, path):  # noqa: N802
        now = self.now()
        local = now + timedelta(hours=8)

        def stamp(moment: datetime) -> str:
            return (f"<tt:Time><tt:Hour>{moment.hour}</tt:Hour><tt:Minute>{moment.minute}</tt:Minute>"
                    f"<tt:Second>{moment.second}</tt:Second></tt:Time>"
                    f"<tt:Date><tt:Year>{moment.year}</tt:Year><tt:Month>{moment.month}</tt:Month>"
                    f"<tt:Day>{moment.day}</tt:Day></tt:Date>")

        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>CST-8:00:00</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime>{stamp(now)}</tt:UTCDateTime>"
            f"<tt:LocalDateTime>{stamp(local)}</tt:LocalDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>", None)

    def op_GetDeviceInformation(self, request, path):  # noqa: N802
        manufacturer, model, firmware, serial, hardware = (escape(v) for v in self.info)
        return (f"<tds:GetDeviceInformationResponse><tds:Manufacturer>{manufacturer}</tds:Manufacturer>"
                f"<tds:Model>{model}</tds:Model><tds:FirmwareVersion>{firmware}</tds:FirmwareVersion>"
                f"<tds:SerialNumber>{serial}</tds:SerialNumber><tds:HardwareId>{hardware}</tds:HardwareId>"
                "</tds:GetDeviceInformationResponse>", None)

    def _xaddr(self, service: str) -> str:
        return f"http://127.0.0.1:{self._port}/onvif/{service}"

    def _services(self) -> list[tuple[str, str, int, int]]:
        services = [
            (NAMESPACES["tds"], self._xaddr("device_service"), 2, 60),
            (NAMESPACES["trt"], self._xaddr("media_service"), 2, 60),
            (NAMESPACES["tev"], self._xaddr("event_service"), 2, 60),
            (NAMESPACES["timg"], self._xaddr("imaging_service"), 2, 20),
        ]
        if self.ptz:
            services.append((NAMESPACES["tptz"], self._xaddr("ptz_service"), 2, 60))
        return services

    def op_GetServices(self, request, path):  # noqa: N802
        if not self.get_services:
            raise Fault(FaultSpec())
        items = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{xaddr}</tds:XAddr>"
            f"<tds:Version><tt:Major>{major}</tt:Major><tt:Minor>{minor}</tt:Minor></tds:Version>"
            "</tds:Service>" for ns, xaddr, major, minor in self._services())
        return f"<tds:GetServicesResponse>{items}</tds:GetServicesResponse>", None

    def op_GetCapabilities(self, request, path):  # noqa: N802
        ptz = f"<tt:PTZ><tt:XAddr>{self._xaddr('ptz_service')}</tt:XAddr></tt:PTZ>" if self.ptz else ""
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{self._xaddr('device_service')}</tt:XAddr></tt:Device>"
            f"<tt:Events><tt:XAddr>{self._xaddr('event_service')}</tt:XAddr>"
            "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
            "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
            "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
            "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>"
            f"<tt:Imaging><tt:XAddr>{self._xaddr('imaging_service')}</tt:XAddr></tt:Imaging>"
            f"<tt:Media><tt:XAddr>{self._xaddr('media_service')}</tt:XAddr>"
            "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
            "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
            "</tt:StreamingCapabilities></tt:Media>"
            f"{ptz}</tds:Capabilities></tds:GetCapabilitiesResponse>", None)

    # ------------------------------------------------------------------ media

    def _profile(self, request) -> FakeProfile:
        token = request.findtext(f"{{{NAMESPACES['trt']}}}ProfileToken") or request.findtext(
            f"{{{NAMESPACES['tptz']}}}ProfileToken")
        for profile in self.profiles:
            if profile.token == token:
                return profile
        raise Fault(FaultSpec("env:Sender", "ter:InvalidArgVal", "No such profile"),
                    f"<ter:NoProfile>{escape(token or '')}</ter:NoProfile>")

    def op_GetProfiles(self, request, path):  # noqa: N802
        items = []
        for p in self.profiles:
            encoder = ""
            if p.encoding:
                codec = (f"<tt:H264><tt:GovLength>{p.fps * 2}</tt:GovLength><tt:H264Profile>Main"
                         "</tt:H264Profile></tt:H264>" if p.encoding == "H264" else "")
                encoder = (
                    f'<tt:VideoEncoderConfiguration token="VideoEncoder_{p.token}">'
                    f"<tt:Name>VideoEncoder_{p.token}</tt:Name><tt:UseCount>1</tt:UseCount>"
                    f"<tt:Encoding>{p.encoding}</tt:Encoding>"
                    f"<tt:Resolution><tt:Width>{p.width}</tt:Width><tt:Height>{p.height}</tt:Height>"
                    "</tt:Resolution><tt:Quality>3</tt:Quality>"
                    f"<tt:RateControl><tt:FrameRateLimit>{p.fps}</tt:FrameRateLimit>"
                    "<tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>2048</tt:BitrateLimit>"
                    f"</tt:RateControl>{codec}"
                    "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0"
                    "</tt:IPv4Address></tt:Address><tt:Port>8860</tt:Port><tt:TTL>128</tt:TTL>"
                    "<tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
                    "<tt:SessionTimeout>PT5S</tt:SessionTimeout></tt:VideoEncoderConfiguration>")
            ptz = ('<tt:PTZConfiguration token="PTZConfiguration_1"><tt:Name>PTZ</tt:Name>'
                   "<tt:UseCount>2</tt:UseCount><tt:NodeToken>PTZNode_1</tt:NodeToken>"
                   "<tt:DefaultPTZTimeout>PT5S</tt:DefaultPTZTimeout></tt:PTZConfiguration>"
                   if p.ptz else "")
            items.append(
                f'<trt:Profiles token="{p.token}" fixed="true"><tt:Name>{escape(p.name)}</tt:Name>'
                '<tt:VideoSourceConfiguration token="VideoSourceConfig_1"><tt:Name>VideoSourceConfig'
                "</tt:Name><tt:UseCount>2</tt:UseCount><tt:SourceToken>VideoSource_1</tt:SourceToken>"
                '<tt:Bounds x="0" y="0" width="1920" height="1080"/></tt:VideoSourceConfiguration>'
                f"{encoder}{ptz}</trt:Profiles>")
        return f"<trt:GetProfilesResponse>{''.join(items)}</trt:GetProfilesResponse>", None

    def op_GetStreamUri(self, request, path):  # noqa: N802
        profile = self._profile(request)
        userinfo = f"{quote(self.user)}:{quote(self.password, safe='')}@" if self.stream_uri_credentials else ""
        stream = profile.path or f"/Streaming/Channels/{profile.token}"
        uri = f"rtsp://{userinfo}127.0.0.1:{self.rtsp_port}{stream}?transportmode=unicast"
        return ("<trt:GetStreamUriResponse><trt:MediaUri>"
                f"<tt:Uri>{escape(uri)}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
                "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
                "</trt:MediaUri></trt:GetStreamUriResponse>", None)

    def op_GetSnapshotUri(self, request, path):  # noqa: N802
        profile = self._profile(request)
        uri = f"http://127.0.0.1:{self._port}/onvif/snapshot?profile={profile.token}"
        return ("<trt:GetSnapshotUriResponse><trt:MediaUri>"
                f"<tt:Uri>{escape(uri)}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
                "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
                "</trt:MediaUri></trt:GetSnapshotUriResponse>", None)

    # ------------------------------------------------------------------ PTZ

    def _ptz_profile(self, request) -> str:
        token = request.findtext(f"{{{NAMESPACES['tptz']}}}ProfileToken") or ""
        if not any(p.token == token and p.ptz for p in self.profiles):
            raise Fault(FaultSpec("env:Sender", "ter:InvalidArgVal", "No such profile or no PTZ"),
                        f"<ter:NoProfile>{escape(token)}</ter:NoProfile>")
        return token

    def op_GetPresets(self, request, path):  # noqa: N802
        self._ptz_profile(request)
        items = "".join(
            f'<tptz:Preset token="{escape(p.token)}"><tt:Name>{escape(p.name)}</tt:Name>'
            f'<tt:PTZPosition><tt:PanTilt x="{p.pan}" y="{p.tilt}" '
            'space="http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"/>'
            f'<tt:Zoom x="{p.zoom}" space="http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace"/>'
            "</tt:PTZPosition></tptz:Preset>" for p in self.presets)
        return f"<tptz:GetPresetsResponse>{items}</tptz:GetPresetsResponse>", None

    def ptz_position(self) -> tuple[tuple[float, float, float], bool]:
        """((pan, tilt, zoom), moving) of the PTZ head now."""
        with self._lock:
            now = time.monotonic()
            if self._velocity is not None:
                return self._continuous_position(now)
            if self._move is None:
                return self._position, False
            origin, target, started = self._move
            progress = (now - started) / self.move_s if self.move_s > 0 else 1.0
            if progress >= 1.0:
                self._position, self._move = target, None
                return target, False
            return tuple(a + (b - a) * progress for a, b in zip(origin, target, strict=True)), True

    def op_GotoPreset(self, request, path):  # noqa: N802
        profile = self._ptz_profile(request)
        token = request.findtext(f"{{{NAMESPACES['tptz']}}}PresetToken") or ""
        preset = next((p for p in self.presets if p.token == token), None)
        if preset is None:
            raise Fault(FaultSpec("env:Sender", "ter:InvalidArgVal", "No such preset"),
                        f"<ter:NoToken>{escape(token)}</ter:NoToken>")
        self.goto_calls.append((profile, token))
        if not self.ptz_stuck:
            with self._lock:
                self._settle()
                self._move = (self._position, (preset.pan, preset.tilt, preset.zoom), time.monotonic())
        return "<tptz:GotoPresetResponse/>", None

    def op_GetStatus(self, request, path):  # noqa: N802
        self._ptz_profile(request)
        if self.ptz_status == "unsupported":
            raise Fault(FaultSpec())
        (pan, tilt, zoom), moving = self.ptz_position()
        position = (f'<tt:Position><tt:PanTilt x="{pan:.6f}" y="{tilt:.6f}" '
                    'space="http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"/>'
                    f'<tt:Zoom x="{zoom:.6f}" '
                    'space="http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace"/></tt:Position>'
                    if self.ptz_status in ("full", "position") else "")
        word = "MOVING" if moving else "IDLE"
        move_status = (f"<tt:MoveStatus><tt:PanTilt>{word}</tt:PanTilt><tt:Zoom>{word}</tt:Zoom></tt:MoveStatus>"
                       if self.ptz_status in ("full", "move_status") else "")
        return ("<tptz:GetStatusResponse><tptz:PTZStatus>"
                f"{position}{move_status}<tt:UtcTime>{_iso(self.now())}</tt:UtcTime>"
                "</tptz:PTZStatus></tptz:GetStatusResponse>", None)

    # ------------------------------------------------------------------ events (PullPoint)

    def _termination(self, requested: str | None, default_s: float = 60.0) -> datetime:
        now = self.now()
        if self.broken_relative_time:
            seconds = 10.0  # ignores what was asked (some firmwares): the client must notice
        elif not requested:
            seconds = default_s
        elif requested.strip().startswith("P"):
            seconds = parse_duration(requested)
        else:
            absolute = datetime.fromisoformat(requested.strip().replace("Z", "+00:00"))
            seconds = (absolute - now).total_seconds()
        if self.max_termination_s is not None:
            seconds = min(seconds, self.max_termination_s)
        return now + timedelta(seconds=seconds)

    def _subscription(self, path: str) -> Subscription:
        query = parse_qs(urlsplit(path).query)
        ident = int(query.get("id", ["0"])[0])
        subscription = self.subscriptions.get(ident)
        if subscription is None or subscription.termination <= self.now():
            self.subscriptions.pop(ident, None)
            raise Fault(FaultSpec("env:Sender", None, "The subscription does not exist or has expired"),
                        "<wsrf-rw:ResourceUnknownFault><wsrf-bf:Timestamp xmlns:wsrf-bf="
                        f'"http://docs.oasis-open.org/wsrf/bf-2">{_iso(self.now())}</wsrf-bf:Timestamp>'
                        "</wsrf-rw:ResourceUnknownFault>")
        return subscription

    def op_CreatePullPointSubscription(self, request, path):  # noqa: N802
        requested = request.findtext(f"{{{NAMESPACES['tev']}}}InitialTerminationTime")
        with self._lock:
            now = self.now()
            for ident in [i for i, s in self.subscriptions.items() if s.termination <= now]:
                del self.subscriptions[ident]
            if len(self.subscriptions) >= self.max_subscriptions:
                raise Fault(FaultSpec("env:Receiver", "ter:Action", "Too many subscriptions"),
                            "Maximum number of subscriptions reached")
            ident = self._next_subscription
            self._next_subscription += 1
            termination = self._termination(requested)
            self.subscriptions[ident] = Subscription(ident, termination)
            self.stats["created"] += 1
        address = f"http://127.0.0.1:{self._port}/onvif/subscription?id={ident}"
        return ("<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
                f"<wsa:Address>{escape(address)}</wsa:Address></tev:SubscriptionReference>"
                f"<wsnt:CurrentTime>{_iso(now)}</wsnt:CurrentTime>"
                f"<wsnt:TerminationTime>{_iso(termination)}</wsnt:TerminationTime>"
                "</tev:CreatePullPointSubscriptionResponse>",
                "http://www.onvif.org/ver10/events/wsdl/EventPortType/CreatePullPointSubscriptionResponse")

    def op_SetSynchronizationPoint(self, request, path):  # noqa: N802
        """Every property's current state again, as 'Initialized' (ONVIF Core 9.6): the scene
        is unchanged unless an event said otherwise."""
        idle_scene = ("tns1:VideoSource/GlobalSceneChange/ImagingService", {"State": "false"},
                      {"Source": "VideoSource_1"})
        with self._lock:
            subscription = self._subscription(path)
            states = dict(self.states)
            states.setdefault((idle_scene[0], tuple(sorted(idle_scene[2].items()))), idle_scene)
            for topic, data, source in states.values():
                subscription.messages.append(notification_xml(topic, data, source, "Initialized", self.now()))
            self._lock.notify_all()
        return ("<tev:SetSynchronizationPointResponse/>",
                "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription/SetSynchronizationPointResponse")

    def op_PullMessages(self, request, path):  # noqa: N802
        timeout = parse_duration(request.findtext(f"{{{NAMESPACES['tev']}}}Timeout") or "PT1S")
        limit = int(request.findtext(f"{{{NAMESPACES['tev']}}}MessageLimit") or "1")
        deadline = time.monotonic() + timeout
        with self._lock:
            subscription = self._subscription(path)
            self.stats["pulls"] += 1
            subscription.pulls += 1
            while not subscription.messages and not self._released.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(min(remaining, 0.05))
                if self.subscriptions.get(subscription.id) is not subscription:
                    break  # unsubscribed or rebooted while waiting
            messages = subscription.messages[:limit]
            del subscription.messages[:limit]
            now = self.now()
            termination = subscription.termination
        return ("<tev:PullMessagesResponse>"
                f"<tev:CurrentTime>{_iso(now)}</tev:CurrentTime>"
                f"<tev:TerminationTime>{_iso(termination)}</tev:TerminationTime>"
                f"{''.join(messages)}</tev:PullMessagesResponse>",
                "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription/PullMessagesResponse")

    def op_Renew(self, request, path):  # noqa: N802
        requested = request.findtext(f"{{{NAMESPACES['wsnt']}}}TerminationTime")
        with self._lock:
            subscription = self._subscription(path)
            subscription.termination = self._termination(requested)
            self.stats["renewed"] += 1
            now = self.now()
        return ("<wsnt:RenewResponse>"
                f"<wsnt:TerminationTime>{_iso(subscription.termination)}</wsnt:TerminationTime>"
                f"<wsnt:CurrentTime>{_iso(now)}</wsnt:CurrentTime></wsnt:RenewResponse>",
                "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/RenewResponse")

    def op_Unsubscribe(self, request, path):  # noqa: N802
        with self._lock:
            subscription = self._subscription(path)
            self.stats["unsubscribed"] += 1
            if self.cancel_all_on_unsubscribe:
                self.subscriptions.clear()
            else:
                del self.subscriptions[subscription.id]
            self._lock.notify_all()
        return ("<wsnt:UnsubscribeResponse/>",
                "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/UnsubscribeResponse")


def notification_xml(topic: str, data: dict[str, str], source: dict[str, str], operation: str,
                     moment: datetime) -> str:
    """One wsnt:NotificationMessage with a tt:Message (Source/Key/Data SimpleItems)."""

    def items(values: dict[str, str]) -> str:
        return "".join(f'<tt:SimpleItem Name="{escape(k)}" Value="{escape(str(v))}"/>' for k, v in values.items())

    stamp = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return ('<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/'
            f'topicExpression/ConcreteSet">{escape(topic)}</wsnt:Topic><wsnt:Message>'
            f'<tt:Message UtcTime="{stamp}" PropertyOperation="{operation}">'
            f"<tt:Source>{items(source)}</tt:Source><tt:Data>{items(data)}</tt:Data>"
            "</tt:Message></wsnt:Message></wsnt:NotificationMessage>")


def _envelope(content: str, header: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope {XMLNS}>'
            f"<env:Header>{header}</env:Header><env:Body>{content}</env:Body></env:Envelope>").encode()


# ---------------------------------------------------------------------------------- WS-Discovery

WSD_NS = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
WSA_2004 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"


class DiscoveryResponder:
    """Answers WS-Discovery Probes on 127.0.0.1:<port> (unicast) for the given devices.

    `extra_xaddrs` lets a test announce a device that is not there (unreachable in resolve).
    `garbage` also sends a malformed datagram first (the prober must ignore it).
    """

    def __init__(self, devices: list[FakeOnvifDevice], extra: list[tuple[str, str]] | None = None,
                 garbage: bool = False):
        self.devices = devices
        self.extra = extra or []  # (endpoint uuid, xaddr)
        self.garbage = garbage
        self.probes = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-wsd", daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def __enter__(self) -> DiscoveryResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._sock.recvfrom(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                probe = etree.fromstring(data)
            except etree.XMLSyntaxError:
                continue
            if probe.find(f".//{{{WSD_NS}}}Probe") is None:
                continue
            self.probes += 1
            message_id = probe.findtext(f".//{{{WSA_2004}}}MessageID") or ""
            if self.garbage:
                self._sock.sendto(b"<not-xml", sender)
            records = [(d.endpoint_uuid, d.device_url, _scopes(d)) for d in self.devices]
            records += [(ident, xaddr, "onvif://www.onvif.org/Profile/Streaming") for ident, xaddr in self.extra]
            for ident, xaddr, scopes in records:
                self._sock.sendto(probe_match(message_id, ident, xaddr, scopes), sender)


def _scopes(device: FakeOnvifDevice) -> str:
    return " ".join([
        "onvif://www.onvif.org/type/video_encoder",
        "onvif://www.onvif.org/Profile/Streaming",
        f"onvif://www.onvif.org/name/{quote(device.name)}",
        f"onvif://www.onvif.org/hardware/{quote(device.info[1])}",
        f"onvif://www.onvif.org/location/{device.location}",
    ] + (["onvif://www.onvif.org/type/ptz"] if device.ptz else []))


def probe_match(relates_to: str, endpoint: str, xaddrs: str, scopes: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV}" xmlns:wsa="{WSA_2004}" xmlns:d="{WSD_NS}" '
        'xmlns:dn="http://www.onvif.org/ver10/network/wsdl" xmlns:tds="http://www.onvif.org/ver10/device/wsdl">'
        "<SOAP-ENV:Header>"
        f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        f"<wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo>"
        "<wsa:To SOAP-ENV:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>"
        "<wsa:Action SOAP-ENV:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>"
        '<d:AppSequence InstanceId="1" MessageNumber="1"/>'
        "</SOAP-ENV:Header><SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch>"
        f"<wsa:EndpointReference><wsa:Address>{escape(endpoint)}</wsa:Address></wsa:EndpointReference>"
        "<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
        f"<d:Scopes>{escape(scopes)}</d:Scopes>"
        f"<d:XAddrs>{escape(xaddrs)}</d:XAddrs>"
        "<d:MetadataVersion>10</d:MetadataVersion>"
        "</d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()
