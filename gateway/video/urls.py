"""Camera stream URLs: the NVR shorthand installers think in.

Installers know "NVR 10.0.0.5, channel 3, sub stream", not the vendor's URL layout, so the config
offers `vendor/host/channel/stream` next to a plain `rtsp:` URL; this module turns either into
the URL FFmpeg opens. Every URL that is logged, returned by the API or put in an exception goes
through `gateway.redaction.redact` first: the password becomes `***`, the user stays (it helps
to diagnose "wrong account" without leaking anything).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

VENDORS = ("hikvision", "dahua")
STREAMS = ("main", "sub")


def nvr_url(vendor: str, host: str, channel: int = 1, stream: str = "sub", *, port: int = 554,
            user: str = "", password: str = "") -> str:
    """The RTSP URL of one NVR channel (or a camera: it is channel 1 of itself).

    Hikvision: /Streaming/Channels/{ch}0{1 main|2 sub}  (channel 12 sub -> 1202)
    Dahua:     /cam/realmonitor?channel={ch}&subtype={0 main|1 sub}
    """
    if vendor not in VENDORS:
        raise ValueError(f"unknown NVR vendor {vendor!r} (known: {', '.join(VENDORS)})")
    if stream not in STREAMS:
        raise ValueError(f"stream must be 'main' or 'sub', got {stream!r}")
    if not 1 <= channel <= 256:
        raise ValueError(f"NVR channel must be 1..256, got {channel}")
    main = stream == "main"
    if vendor == "hikvision":
        path = f"/Streaming/Channels/{channel}0{1 if main else 2}"
    else:
        path = f"/cam/realmonitor?channel={channel}&subtype={0 if main else 1}"
    return f"rtsp://{_userinfo(user, password)}{_netloc_host(host)}:{port}{path}"


def source_url(source: Any) -> tuple[str, str]:
    """(URL, transport) of a configured camera source: an `rtsp:` source or the NVR shorthand.

    Duck-typed on the attribute names (`rtsp`, or `vendor/host/channel/stream/user/password`,
    possibly nested under `nvr`) so the config models can be reshaped without touching ingest.
    """
    transport = getattr(source, "transport", "tcp")
    if getattr(source, "rtsp", None):
        return str(source.rtsp), transport
    nested = getattr(source, "nvr", None)
    if nested is not None:
        url, inner_transport = source_url(nested)
        return url, getattr(source, "transport", None) or inner_transport
    if getattr(source, "vendor", None):
        password = getattr(source, "password", "") or ""
        if hasattr(password, "get_secret_value"):
            password = password.get_secret_value()
        url = nvr_url(source.vendor, source.host, getattr(source, "channel", 1),
                      getattr(source, "stream", "sub"), port=getattr(source, "port", 554),
                      user=getattr(source, "user", "") or "", password=password)
        return url, transport
    raise ValueError(f"not a stream source (need an rtsp URL or an NVR vendor): {type(source).__name__}")


def _userinfo(user: str, password: str) -> str:
    if not user and not password:
        return ""
    info = quote(user, safe="")
    if password:
        info += ":" + quote(password, safe="")
    return info + "@"


def _netloc_host(host: str) -> str:
    """IPv6 literals need brackets in a URL."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
