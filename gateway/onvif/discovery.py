"""WS-Discovery: find ONVIF devices, resolve each, and print a `cameras:` stanza for the YAML.

onvif-zeep-async ships the WS-Discovery schema but no prober, and the gateway needs control over
where the probe goes (a chosen interface, or a unicast address in tests and on routed networks),
so this is a small UDP implementation of WS-Discovery 2005/04 Probe/ProbeMatches:

- Probe: SOAP 1.2 envelope, `d:Types` = `dn:NetworkVideoTransmitter`, sent to the target
  (default the multicast group 239.255.255.250:3702 with TTL 1, on the interface chosen with
  `interface`), repeated once as the spec's UDP retransmission suggests.
- ProbeMatches: every answer whose `wsa:RelatesTo` is our MessageID is parsed (malformed or
  unrelated datagrams are ignored); devices are told apart by their endpoint reference.  XAddrs
  give the device service URL; scopes give name, hardware and location
  (`onvif://www.onvif.org/name/<url-encoded>`).

Each device is then resolved with the given credentials (`resolve_camera`), in parallel, bounded
by a timeout; a device that refuses the credentials or cannot be resolved is reported with the
reason instead of a stanza.  The stanza never contains the password: it says `${CAM_PASSWORD}`
(or the configured variable) for the config loader to substitute.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import select
import socket
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

from lxml import etree

WSD_MULTICAST = ("239.255.255.250", 3702)
SOAP_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DN = "http://www.onvif.org/ver10/network/wsdl"
SCOPE_PREFIX = "onvif://www.onvif.org/"


@dataclass(frozen=True)
class DiscoveredDevice:
    """One ProbeMatch: endpoint reference, service addresses, scopes and who sent it."""

    endpoint: str
    xaddrs: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    sender: str = ""

    def scope(self, kind: str) -> str:
        """Decoded value(s) of one ONVIF scope kind (name, hardware, location...), '/'-joined."""
        values = []
        for scope in self.scopes:
            if scope.lower().startswith(SCOPE_PREFIX + kind.lower() + "/"):
                values.append(unquote(scope[len(SCOPE_PREFIX) + len(kind) + 1:]))
        return ", ".join(values)

    @property
    def name(self) -> str:
        return self.scope("name")

    @property
    def hardware(self) -> str:
        return self.scope("hardware")

    @property
    def location(self) -> str:
        return self.scope("location")

    @property
    def xaddr(self) -> str:
        """The device service URL to use: an IPv4 http one if there is one."""
        def rank(url: str) -> tuple[int, int]:
            try:
                host = urlsplit(url).hostname or ""
                ipv6 = ":" in host
            except ValueError:
                return (9, 9)
            return (0 if url.startswith("http://") else 1, 1 if ipv6 else 0)

        return min(self.xaddrs, key=rank) if self.xaddrs else ""

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.xaddr)
        default = 443 if parts.scheme == "https" else 80
        return parts.hostname or "", parts.port or default


def build_probe(message_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:a="{WSA}" xmlns:d="{WSD}" xmlns:dn="{DN}">'
        "<s:Header>"
        '<a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        "<a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
        "</a:Address></a:ReplyTo>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
        "</s:Header>"
        "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode()


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def parse_probe_matches(data: bytes, message_id: str | None = None, sender: str = "") -> list[DiscoveredDevice]:
    """Devices in one ProbeMatches datagram; [] for anything else (garbage, other messages)."""
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return []
    if message_id is not None:
        relates = root.findtext(f".//{{{WSA}}}RelatesTo")
        if relates is not None and relates.strip() != message_id:
            return []
    devices = []
    for match in root.iter(f"{{{WSD}}}ProbeMatch"):
        endpoint = (match.findtext(f"{{{WSA}}}EndpointReference/{{{WSA}}}Address") or "").strip()
        xaddrs = tuple((match.findtext(f"{{{WSD}}}XAddrs") or "").split())
        if not xaddrs:
            continue  # a device must be resolved (Resolve) first; ONVIF devices send XAddrs
        devices.append(DiscoveredDevice(
            endpoint=endpoint or xaddrs[0], xaddrs=xaddrs,
            scopes=tuple((match.findtext(f"{{{WSD}}}Scopes") or "").split()),
            types=tuple((match.findtext(f"{{{WSD}}}Types") or "").split()), sender=sender))
    return devices


def interface_address(interface: str) -> str:
    """IPv4 address of `interface`, given as an address or (Linux) an interface name like eth0."""
    try:
        return str(ipaddress.IPv4Address(interface))
    except ValueError:
        pass
    import fcntl  # Linux: SIOCGIFADDR

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", interface.encode()[:15]))
        except OSError as error:
            raise ValueError(f"interface {interface!r} has no IPv4 address ({error.strerror})") from None
    return socket.inet_ntoa(packed[20:24])


def ipv4_interfaces() -> list[tuple[str, str]]:
    """(name, IPv4 address) of this box's interfaces that have one, loopback included (Linux)."""
    found = []
    for _index, name in socket.if_nameindex():
        try:
            found.append((name, interface_address(name)))
        except ValueError:
            continue
    return found


def no_answer_hint(interfaces: Sequence[tuple[str, str]], interface: str | None,
                   target: tuple[str, int]) -> str | None:
    """What to try when a multicast probe without `--interface` found nothing on a box with
    several IPv4 networks: the probe left through one of them only (the default route's)."""
    if interface is not None or target != WSD_MULTICAST:
        return None
    networks = [(name, address) for name, address in interfaces if not ipaddress.IPv4Address(address).is_loopback]
    if len(networks) < 2:
        return None
    listed = ", ".join(f"{name} ({address})" for name, address in networks)
    return (f"this box has {len(networks)} IPv4 networks: {listed}; the probe went out on one of them only. "
            f"Probe the camera network with --interface NAME (e.g. gateway discover --interface {networks[-1][0]}), "
            "or one camera directly with --address IP")


def parse_target(text: str) -> tuple[str, int]:
    """'239.255.255.250:3702', '127.0.0.1:40000' or a bare host (port 3702)."""
    host, _, port = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    if not host:
        host, port = text.strip(), ""
    try:
        return str(ipaddress.IPv4Address(host)), int(port) if port else 3702
    except ValueError:
        raise ValueError(f"probe address must be IPv4[:port], got {text!r}") from None


def probe(timeout: float = 3.0, address: tuple[str, int] = WSD_MULTICAST,
          interface: str | None = None, repeats: int = 2) -> list[DiscoveredDevice]:
    """Send a Probe to `address` and collect ProbeMatches for `timeout` seconds."""
    target_host, target_port = address
    target = ipaddress.IPv4Address(target_host)
    local = interface_address(interface) if interface else ("127.0.0.1" if target.is_loopback else "0.0.0.0")
    message_id = f"urn:uuid:{uuid.uuid4()}"
    found: dict[str, DiscoveredDevice] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
        sock.bind((local, 0))
        if target.is_multicast:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            if interface:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
        message = build_probe(message_id)
        deadline = time.monotonic() + timeout
        sends = [time.monotonic() + i * min(0.25, timeout / 4) for i in range(max(1, repeats))]
        while True:
            now = time.monotonic()
            while sends and sends[0] <= now:
                sends.pop(0)
                try:
                    sock.sendto(message, (target_host, target_port))
                except OSError:
                    pass  # e.g. no route for multicast: nothing will answer
            if now >= deadline:
                break
            wait = min([deadline - now] + [max(0.0, s - now) for s in sends[:1]])
            readable, _, _ = select.select([sock], [], [], wait)
            if not readable:
                continue
            try:
                data, sender = sock.recvfrom(65535)
            except OSError:
                continue
            for device in parse_probe_matches(data, message_id, sender[0]):
                found.setdefault(device.endpoint, device)
    return list(found.values())


# --------------------------------------------------------------------------- resolve + YAML


@dataclass(frozen=True)
class DiscoveryResult:
    device: DiscoveredDevice
    camera: object | None = None  # gateway.onvif.device.OnvifCamera
    error: str = ""
    refused: bool = False
    """The device refused the credentials (as opposed to being unreachable or broken)."""


async def resolve_all(devices: Sequence[DiscoveredDevice], user: str, password: str,
                      timeout: float = 10.0) -> list[DiscoveryResult]:
    """Resolve every device concurrently; failures become results with `error` set."""
    from gateway.onvif.device import resolve_camera
    from gateway.onvif.session import OnvifError, OnvifNotAuthorized

    async def one(device: DiscoveredDevice) -> DiscoveryResult:
        host, port = device.host_port
        if not host:
            return DiscoveryResult(device, error=f"unusable XAddrs {' '.join(device.xaddrs)!r}")
        settings = SimpleNamespace(host=host, port=port, user=user, password=password,
                                   profile=None, transport="tcp")
        try:
            return DiscoveryResult(device, await resolve_camera(settings, timeout, all_streams=True))
        except OnvifError as error:
            return DiscoveryResult(device, error=error.detail, refused=isinstance(error, OnvifNotAuthorized))

    return list(await asyncio.gather(*(one(device) for device in devices)))


def discover(timeout: float = 3.0, address: tuple[str, int] = WSD_MULTICAST, interface: str | None = None,
             user: str = "", password: str = "", resolve_timeout: float = 10.0) -> list[DiscoveryResult]:
    """Probe, then resolve each device (blocking; for the CLI)."""
    devices = probe(timeout, address, interface)
    if not devices:
        return []
    return asyncio.run(resolve_all(devices, user, password, resolve_timeout))


_SLUG = re.compile(r"[^A-Za-z0-9]+")


def camera_id(result: DiscoveryResult, taken: set[str]) -> str:
    """A config id from the device name (ASCII part), else model + host; unique within `taken`."""
    camera = result.camera
    host = getattr(camera, "host", "") or result.device.host_port[0]
    base = _SLUG.sub("-", result.device.name).strip("-").lower()
    if len(base) < 2:
        model = getattr(getattr(camera, "device", None), "model", "") or result.device.hardware or "cam"
        base = f"{_SLUG.sub('-', model).strip('-').lower() or 'cam'}-{_SLUG.sub('-', host).strip('-')}"
    base = base[:56].strip("-") or "cam"
    ident, counter = base, 2
    while ident in taken:
        ident, counter = f"{base}-{counter}", counter + 1
    taken.add(ident)
    return ident


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _comment(text: str) -> str:
    return " ".join(str(text).split())


def format_cameras_yaml(results: Sequence[DiscoveryResult], *, user: str = "",
                        password_env: str = "CAM_PASSWORD", probe_note: str = "") -> str:
    """A paste-ready `cameras:` stanza for the resolved devices; the others as comments."""
    resolved = [r for r in results if r.camera is not None]
    failed = [r for r in results if r.camera is None]
    lines = [f"# gateway discover: {len(results)} ONVIF device(s) answered{probe_note}; "
             f"{len(resolved)} resolved, {len(failed)} not."]
    if resolved:
        lines.append(f"# The password is read from ${{{password_env}}} when the config is loaded.")
        lines.append("cameras:")
    taken: set[str] = set()
    for result in resolved:
        camera = result.camera
        device = camera.device  # type: ignore[attr-defined]
        profile = camera.profile  # type: ignore[attr-defined]
        profiles = camera.profiles  # type: ignore[attr-defined]
        lines.append(f"  # {_comment(device.manufacturer)} {_comment(device.model)}, firmware "
                     f"{_comment(device.firmware_version) or '?'}, serial {_comment(device.serial_number) or '?'}"
                     f" ({_comment(result.device.endpoint)})")
        streams = dict(getattr(camera, "stream_urls_display", ()) or ())
        for item in profiles:
            marker = "*" if item.token == profile.token else "-"
            url = streams.get(item.token) or (camera.stream_url_display  # type: ignore[attr-defined]
                                              if item.token == profile.token else "")
            lines.append(f"  #   {marker} profile {_comment(item.describe())}" + (f" {_comment(url)}" if url else ""))
        if camera.snapshot_url_display:  # type: ignore[attr-defined]
            lines.append(f"  #   snapshot: {_comment(camera.snapshot_url_display)}")  # type: ignore[attr-defined]
        extras = []
        if result.device.location:
            extras.append(f"location scope {result.device.location}")
        if camera.has_ptz:  # type: ignore[attr-defined]
            extras.append("PTZ (presets can drive a patrol:)")
        if abs(camera.clock_skew_s) > 5:  # type: ignore[attr-defined]
            extras.append(f"clock off by {camera.clock_skew_s:+.0f} s: set up NTP")  # type: ignore[attr-defined]
        if extras:
            lines.append(f"  #   {_comment('; '.join(extras))}")
        names = [p.name for p in profiles]
        chosen = profile.name if profile.name and names.count(profile.name) == 1 else profile.token
        lines.append(f"  - id: {camera_id(result, taken)}")
        display_name = result.device.name or f"{device.manufacturer} {device.model}".strip()
        if display_name:
            lines.append(f"    name: {_q(display_name)}")
        lines += [
            "    source:",
            "      onvif:",
            f"        host: {_q(camera.host)}",  # type: ignore[attr-defined]
            f"        port: {camera.port}",  # type: ignore[attr-defined]
            f"        user: {_q(user)}",
            f'        password: "${{{password_env}}}"',
            f"        profile: {_q(chosen)}",
        ]
        if profile.width and profile.height:
            lines.append(f"    resolution: [{profile.width}, {profile.height}]")
    if failed:
        lines.append("# Not added (fix the credentials or the network and run discover again):")
        for result in failed:
            who = ", ".join(part for part in (result.device.name, result.device.hardware) if part)
            lines.append(f"#   {_comment(result.device.xaddr)}" + (f" ({_comment(who)})" if who else "")
                         + f": {_comment(result.error)}")
    return "\n".join(lines) + "\n"
