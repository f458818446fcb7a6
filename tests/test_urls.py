"""NVR shorthand -> RTSP URL, and credentials masked wherever a URL is shown."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from gateway.config.models import NvrSource, RtspSource
from gateway.redaction import redact
from gateway.video.urls import nvr_url, source_url


@pytest.mark.parametrize(("vendor", "channel", "stream", "path"), [
    ("hikvision", 1, "main", "/Streaming/Channels/101"),
    ("hikvision", 1, "sub", "/Streaming/Channels/102"),
    ("hikvision", 12, "sub", "/Streaming/Channels/1202"),
    ("dahua", 3, "main", "/cam/realmonitor?channel=3&subtype=0"),
    ("dahua", 3, "sub", "/cam/realmonitor?channel=3&subtype=1"),
])
def test_nvr_url_layouts(vendor: str, channel: int, stream: str, path: str) -> None:
    assert nvr_url(vendor, "10.0.0.5", channel, stream) == f"rtsp://10.0.0.5:554{path}"


def test_nvr_url_quotes_credentials_and_brackets_ipv6() -> None:
    url = nvr_url("hikvision", "fe80::1", 2, "main", port=8554, user="admin", password="p@ss:w/rd")
    assert url == "rtsp://admin:p%40ss%3Aw%2Frd@[fe80::1]:8554/Streaming/Channels/201"
    assert redact(url) == "rtsp://admin:***@[fe80::1]:8554/Streaming/Channels/201"


@pytest.mark.parametrize("bad", [dict(vendor="axis"), dict(stream="third"), dict(channel=0)])
def test_nvr_url_rejects_unknown_values(bad: dict) -> None:
    args = dict(vendor="dahua", host="h", channel=1, stream="sub") | bad
    with pytest.raises(ValueError):
        nvr_url(**args)


def test_source_url_from_config_models() -> None:
    nvr = NvrSource(vendor="dahua", host="192.168.1.64", channel=4, stream="main", user="admin",
                    password=SecretStr("s3cret"), transport="udp")
    assert source_url(nvr) == (
        "rtsp://admin:s3cret@192.168.1.64:554/cam/realmonitor?channel=4&subtype=0", "udp")
    plain = RtspSource(rtsp="rtsp://u:p@cam/live")
    assert source_url(plain) == ("rtsp://u:p@cam/live", "tcp")


def test_source_url_follows_a_nested_nvr_section() -> None:
    class Wrapped:
        transport = "tcp"
        nvr = NvrSource(vendor="hikvision", host="nvr", channel=5)

    assert source_url(Wrapped()) == ("rtsp://nvr:554/Streaming/Channels/502", "tcp")


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:12345@10.0.0.5/Streaming/Channels/102", "rtsp://admin:***@10.0.0.5/Streaming/Channels/102"),
    ("rtsp://admin@10.0.0.5/x", "rtsp://admin@10.0.0.5/x"),
    ("rtsp://10.0.0.5:554/x?channel=1", "rtsp://10.0.0.5:554/x?channel=1"),
    ("rtsp://:only@h/x", "rtsp://:***@h/x"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_redact_text_masks_the_password_alone_too() -> None:
    url = "rtsp://admin:hunter%2122@cam/x"
    text = "error opening rtsp://admin:hunter%2122@cam/x: auth hunter!22 failed"
    cleaned = redact(text, url)
    assert "hunter" not in cleaned
    assert "rtsp://admin:***@cam/x" in cleaned
