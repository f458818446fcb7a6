"""Camera sources, told apart by their key: `rtsp:` (a URL), `nvr:` (vendor shorthand, flat:
`{nvr: hikvision, host: 10.0.0.5, channel: 3, stream: sub}`), `onvif:` (a nested map) or `file:`
(a recorded video)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import ConfigDict, Discriminator, Field, SecretStr, Tag, field_validator

from gateway.config.base import OneLine, Secret, StrictModel


class RtspSource(StrictModel):
    """`source: {rtsp: rtsp://user:${CAM_PASSWORD}@host:554/path}`."""

    rtsp: OneLine = Field(description="rtsp://user:pass@host:554/path; put the password in ${ENV}.")
    transport: Literal["tcp", "udp"] = "tcp"

    @field_validator("rtsp")
    @classmethod
    def _rtsp_scheme(cls, value: str) -> str:
        if not value.startswith(("rtsp://", "rtsps://")):
            raise ValueError("must start with rtsp:// or rtsps://")
        try:
            host = urlsplit(value).hostname
        except ValueError:
            host = None
        if not host:
            raise ValueError("the URL has no host (rtsp://[user:password@]host[:port]/path)")
        return value


class NvrSource(StrictModel):
    """Shorthand for the common NVR/camera URL schemes, written flat under `source:`:

        source: {nvr: hikvision, host: 10.0.0.5, channel: 3, stream: sub, user: admin,
                 password: "${NVR_PASSWORD}"}

    The `nvr:` key names the vendor (attribute `vendor`); a camera is channel 1 of itself.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    vendor: Literal["hikvision", "dahua"] = Field(alias="nvr")
    host: OneLine
    port: int = Field(default=554, ge=1, le=65535)
    channel: int = Field(default=1, ge=1, le=256)
    stream: Literal["main", "sub"] = "sub"
    user: OneLine = ""
    password: Secret = SecretStr("")
    transport: Literal["tcp", "udp"] = "tcp"


class OnvifSettings(StrictModel):
    host: OneLine
    port: int = Field(default=80, ge=1, le=65535)
    user: OneLine = ""
    password: Secret = SecretStr("")
    profile: OneLine | None = Field(default=None, description="Profile name or token; default: smallest stream.")
    events: bool = Field(default=True, description="Subscribe to the camera's alarms (tamper, motion, inputs).")
    transport: Literal["tcp", "udp"] = "tcp"


class OnvifSource(StrictModel):
    """`source: {onvif: {host, port, user, password, profile}}`: the stream URI is asked for."""

    onvif: OnvifSettings


class FileSource(StrictModel):
    """A recorded file, played at its own frame rate (demo, testing); `loop` restarts it at the end."""

    file: Path
    loop: bool = True


SOURCE_KINDS = ("rtsp", "nvr", "onvif", "file")
"""The key that says which kind of source a `source:` map is, in order of precedence."""

_SOURCE_CLASSES: dict[type, str] = {
    RtspSource: "rtsp",
    NvrSource: "nvr",
    OnvifSource: "onvif",
    FileSource: "file",
}


def _source_kind(value: Any) -> str | None:
    """Pick the source model by key, so a bad `source:` gives one error, not one per branch."""
    if isinstance(value, dict):
        return next((kind for kind in SOURCE_KINDS if kind in value), None)
    return _SOURCE_CLASSES.get(type(value))


CameraSource = Annotated[
    Union[
        Annotated[RtspSource, Tag("rtsp")],
        Annotated[NvrSource, Tag("nvr")],
        Annotated[OnvifSource, Tag("onvif")],
        Annotated[FileSource, Tag("file")],
    ],
    Discriminator(
        _source_kind,
        custom_error_type="camera_source",
        custom_error_message=f"source needs one of {', '.join(SOURCE_KINDS)}",
    ),
]
