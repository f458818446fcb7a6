"""ONVIF device resolution: which camera it is, its media profiles, and its stream.

Resolution (`resolve_camera`) asks the device, in this order: its clock (GetSystemDateAndTime,
which ONVIF answers without credentials, through `OnvifSession.open`), its services
(GetServices, or GetCapabilities on old firmware), GetDeviceInformation, the media profiles
(GetProfiles), the stream URI for the chosen profile (GetStreamUri, RTP-Unicast over RTSP) and
its snapshot URI. The camera worker calls it at start and again after the stream fails, since
URIs and profiles can change when a camera is reconfigured.

Stream URLs come in two forms: `stream_url` carries user:password for the RTSP reader (it is
excluded from repr), `stream_url_display` is redacted for logs, the API and the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from onvif.util import normalize_url

from gateway.onvif.session import (
    DEFAULT_TIMEOUT_S,
    EVENTS_NS,
    MEDIA_NS,
    PTZ_NS,
    OnvifError,
    OnvifLoop,
    OnvifNoMediaProfile,
    OnvifNotSupported,
    OnvifProtocolError,
    OnvifSession,
    OnvifSoapFault,
    connect,
    connection_settings,
    endpoint,
    translate_error,
    xml_text,
)
from gateway.redaction import redact

log = logging.getLogger("gateway.onvif")



# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DeviceInfo:
    manufacturer: str = ""
    model: str = ""
    firmware_version: str = ""
    serial_number: str = ""
    hardware_id: str = ""


@dataclass(frozen=True)
class MediaProfile:
    token: str
    name: str
    encoding: str = ""
    width: int = 0
    height: int = 0
    fps: float | None = None
    ptz: bool = False

    @property
    def resolution(self) -> tuple[int, int]:
        return (self.width, self.height)

    def describe(self) -> str:
        size = f"{self.width}x{self.height}" if self.width else "?x?"
        return f"{self.name or self.token} ({self.token}, {self.encoding or '?'} {size})"


@dataclass(frozen=True)
class OnvifCamera:
    """What `resolve_camera` found.  `stream_url` carries credentials: never log it."""

    host: str
    port: int
    device: DeviceInfo
    profile: MediaProfile
    profiles: tuple[MediaProfile, ...]
    stream_url: str = field(repr=False)
    stream_url_display: str
    snapshot_url: str | None = field(default=None, repr=False)
    snapshot_url_display: str | None = None
    clock_skew_s: float = 0.0
    has_ptz: bool = False
    has_events: bool = False
    transport: str = "tcp"
    stream_urls_display: tuple[tuple[str, str], ...] = ()
    """(profile token, redacted stream URL) of every profile; filled only with `all_streams`."""

    @property
    def endpoint(self) -> str:
        return endpoint(self.host, self.port)

    @property
    def resolution(self) -> tuple[int, int]:
        return self.profile.resolution


def parse_profiles(raw: Any) -> list[MediaProfile]:
    """MediaProfiles of a GetProfiles answer; profiles without a video encoder are skipped."""
    profiles = []
    for item in raw or []:
        encoder = getattr(item, "VideoEncoderConfiguration", None)
        if encoder is None:
            continue
        resolution = getattr(encoder, "Resolution", None)
        rate = getattr(encoder, "RateControl", None)
        fps = getattr(rate, "FrameRateLimit", None) if rate is not None else None
        profiles.append(MediaProfile(
            token=xml_text(getattr(item, "token", "")),
            name=xml_text(getattr(item, "Name", "")),
            encoding=xml_text(getattr(encoder, "Encoding", "")),
            width=int(getattr(resolution, "Width", 0) or 0) if resolution is not None else 0,
            height=int(getattr(resolution, "Height", 0) or 0) if resolution is not None else 0,
            fps=float(fps) if fps else None,
            ptz=getattr(item, "PTZConfiguration", None) is not None,
        ))
    return profiles


_RESOLUTION = re.compile(r"^\s*(\d+)\s*[x×*]\s*(\d+)\s*$", re.IGNORECASE)
_PLAYABLE = ("H264", "H265", "HEVC")


def choose_profile(profiles: list[MediaProfile], wanted: str | None, endpoint: str = "") -> MediaProfile:
    """The profile named by `wanted` (token, name, or 'WIDTHxHEIGHT'); default the smallest stream.

    The default prefers H.264/H.265 profiles over MJPEG: analysis needs few pixels, and the
    sub stream spares the camera, the network and the decoder.
    """
    if not profiles:
        raise OnvifNoMediaProfile(endpoint, "the device has no media profile with a video encoder")
    if wanted is None or not str(wanted).strip():
        playable = [p for p in profiles if p.encoding.upper() in _PLAYABLE] or profiles
        return min(playable, key=lambda p: (p.width * p.height or 1 << 40, p.token))
    wanted = str(wanted).strip()
    for matches in (lambda p: p.token == wanted, lambda p: p.name == wanted,
                    lambda p: p.name.casefold() == wanted.casefold()):
        found = [p for p in profiles if matches(p)]
        if found:
            return found[0]
    size = _RESOLUTION.match(wanted)
    if size:
        width, height = int(size.group(1)), int(size.group(2))
        found = sorted((p for p in profiles if (p.width, p.height) == (width, height)),
                       key=lambda p: p.encoding.upper() not in _PLAYABLE)
        if found:
            return found[0]
    known = "; ".join(p.describe() for p in profiles)
    raise OnvifNoMediaProfile(endpoint, f"no media profile matches {wanted!r} (available: {known})")


def stream_urls(uri: str, user: str, password: str) -> tuple[str, str]:
    """(URL for the reader with our credentials, URL for display) of a GetStreamUri answer.

    Credentials the camera embedded in the URI are replaced by the configured ones; when none are
    configured the camera's own stay (they may be all it accepts).  Query-string credentials
    (some vendors) stay for the reader and are masked for display.
    """
    try:
        parts = urlsplit(uri)
        embedded_user, embedded_password = parts.username, parts.password
    except ValueError:
        return uri, redact(uri)
    host = parts.netloc.rpartition("@")[2]
    if user:
        info = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    elif embedded_user is not None or embedded_password is not None:
        info = parts.netloc.rpartition("@")[0] + "@"
    else:
        info = ""
    with_credentials = urlunsplit(parts._replace(netloc=info + host))
    return with_credentials, redact(with_credentials)


async def _stream_uri(session: OnvifSession, profile: MediaProfile) -> str:
    answer = await session.call("media", "GetStreamUri", {
        "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
        "ProfileToken": profile.token,
    })
    uri = normalize_url(xml_text(getattr(answer, "Uri", None)))
    if not uri or not uri.lower().startswith(("rtsp://", "rtsps://")):
        raise OnvifProtocolError(session.endpoint,
                                 f"GetStreamUri for profile {profile.token!r} gave no RTSP URI")
    return uri


async def resolve(session: OnvifSession, wanted_profile: str | None = None,
                  transport: str = "tcp", all_streams: bool = False) -> OnvifCamera:
    """Device info, profiles, chosen profile, stream and snapshot URIs over an open session.

    `all_streams` also asks the stream URI of every other profile (for `gateway discover`).
    """
    info = await session.call("devicemgmt", "GetDeviceInformation")
    device = DeviceInfo(*(xml_text(getattr(info, key, "")) for key in (
        "Manufacturer", "Model", "FirmwareVersion", "SerialNumber", "HardwareId")))
    if not session.has_service(MEDIA_NS):
        raise OnvifNotSupported(session.endpoint, "the device offers no media service (not Profile S)")
    profiles = parse_profiles(await session.call("media", "GetProfiles"))
    profile = choose_profile(profiles, wanted_profile, session.endpoint)
    uri = await _stream_uri(session, profile)
    stream_url, stream_display = stream_urls(uri, session.user, session._password)
    others: list[tuple[str, str]] = []
    for item in profiles if all_streams else []:
        if item.token == profile.token:
            others.append((item.token, stream_display))
            continue
        try:
            other = await _stream_uri(session, item)
            others.append((item.token, stream_urls(other, session.user, session._password)[1]))
        except (OnvifSoapFault, OnvifProtocolError) as error:
            others.append((item.token, f"(no stream URI: {error.detail})"))
    snapshot_url = snapshot_display = None
    try:
        snap = await session.call("media", "GetSnapshotUri", {"ProfileToken": profile.token})
        snapshot_url = normalize_url(xml_text(getattr(snap, "Uri", None))) or None
    except (OnvifSoapFault, OnvifProtocolError) as error:
        log.info("%s: no snapshot URI for profile %s (%s)", session.endpoint, profile.token, error.detail)
    if snapshot_url:
        snapshot_display = redact(snapshot_url)
    return OnvifCamera(
        host=session.host, port=session.port, device=device, profile=profile, profiles=tuple(profiles),
        stream_url=stream_url, stream_url_display=stream_display,
        snapshot_url=snapshot_url, snapshot_url_display=snapshot_display,
        clock_skew_s=session.clock_skew_s,
        has_ptz=session.has_service(PTZ_NS) and profile.ptz,
        has_events=session.has_service(EVENTS_NS), transport=transport,
        stream_urls_display=tuple(others),
    )


async def resolve_camera(settings: Any, timeout: float = DEFAULT_TIMEOUT_S, *,
                         all_streams: bool = False) -> OnvifCamera:
    """Connect to the `onvif:` source in `settings` and resolve its stream; bounded by `timeout`."""
    host, port, _, password = connection_settings(settings)
    inner = getattr(settings, "onvif", settings)
    where = endpoint(host, port)
    try:
        async with asyncio.timeout(timeout):
            async with connect(inner, timeout) as session:
                return await resolve(session, getattr(inner, "profile", None),
                                     getattr(inner, "transport", "tcp"), all_streams)
    except OnvifError:
        raise
    except BaseException as error:  # noqa: BLE001
        if isinstance(error, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
            raise
        raise translate_error(error, where, password, timeout) from None


def resolve_camera_sync(settings: Any, timeout: float = DEFAULT_TIMEOUT_S, *,
                        loop: OnvifLoop | None = None) -> OnvifCamera:
    """Blocking `resolve_camera` for a camera worker thread.

    With `loop` it runs on the shared ONVIF loop; without, on a private loop in the calling
    thread (fine for a rare call such as start-up or recovery after a stream failure).
    """
    if loop is not None:
        return loop.run(resolve_camera(settings, timeout), timeout + 5)
    return asyncio.run(resolve_camera(settings, timeout))

