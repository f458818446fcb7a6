"""Settings of a GB/T 28181 output: the gateway registers with the centre's video platform as a
device and uploads every new alert as an alarm on the camera's channel.

IDs. GB/T 28181 (Appendix D) numbers every device, channel and server with 20 decimal digits:
digits 1-8 the administrative centre code (province, city, district, unit), 9-10 the industry,
**11-13 the type**, 14 the network, 15-20 a serial number. The type is what a platform uses to
decide what it is talking to, and a swapped or mistyped ID is the most common installation
error (the platform then refuses the REGISTER, or files the cameras as something else), so the
type is checked here, with the plausible ranges:

- `platform_id`, the platform's SIP server: 200-299 (platform equipment; 200 = the central
  signalling server, as in `34020000002000000001`);
- `device_id`, the gateway itself: 111-130 (front-end host devices: 111 DVR, 113 encoder,
  118 NVR). The gateway is a box with channels, as an NVR is; a camera code here (131/132)
  would make platforms show it as one camera;
- channel ids, the cameras: 131-199 (front-end peripherals: 131 camera, 132 IP camera,
  134 alarm input device).

Cameras and channels. `channels` maps camera ids to channel ids. A camera that is not listed
does not appear in the platform's catalogue, and its alarms (and sensor alarms without a camera)
are raised on the gateway's own `device_id`: the platform still shows them, on the device
instead of on a camera. `channel_problems` checks that the listed cameras exist; the section
that holds the outputs calls it, as only it knows the cameras.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, field_validator, model_validator

from gateway.config.base import IDENT_PATTERN, LocatedErrors, LocatedValueError, StrictModel

GB_ID_LENGTH = 20

TYPE_NAMES: dict[int, str] = {
    111: "DVR", 112: "video server", 113: "encoder", 114: "decoder", 115: "video switching matrix",
    116: "audio switching matrix", 117: "alarm controller", 118: "NVR",
    131: "camera", 132: "IP camera", 133: "display", 134: "alarm input device",
    135: "alarm output device", 136: "voice input device", 137: "voice output device",
    138: "mobile transmission device", 139: "other peripheral",
    200: "central signalling server", 201: "web application server", 202: "media distribution server",
    203: "proxy server", 204: "security server", 205: "alarm server", 206: "database server",
    207: "GIS server", 208: "management server", 209: "access gateway", 210: "media storage server",
    211: "signalling security routing gateway", 215: "business group", 216: "virtual organisation",
    300: "central user", 400: "terminal user",
}
"""GB/T 28181-2016 Appendix D type codes (digits 11-13), for error messages."""

DEVICE_TYPES = range(111, 131)
CHANNEL_TYPES = range(131, 200)
PLATFORM_TYPES = range(200, 300)

_DOMAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")


def gb_type_code(gb_id: str) -> int:
    """Digits 11-13 of a 20-digit GB/T 28181 ID."""
    return int(gb_id[10:13])


def _type_label(code: int) -> str:
    name = TYPE_NAMES.get(code)
    return f"{code} ({name})" if name else str(code)


def _gb_id(role: str, types: range, example: str, hint: str):
    def check(value: str) -> str:
        if len(value) != GB_ID_LENGTH or not value.isascii() or not value.isdigit():
            raise ValueError(
                f"a GB/T 28181 {role} ID is exactly 20 decimal digits (e.g. {example}), got {value!r} "
                f"({len(value)} characters)"
            )
        code = gb_type_code(value)
        if code not in types:
            raise ValueError(
                f"digits 11-13 of {value} are the GB/T 28181 type code, here {_type_label(code)}; "
                f"a {role} needs {types.start}-{types.stop - 1} ({hint}), e.g. {example}"
            )
        return value

    return AfterValidator(check)


def _unquoted(value: object) -> object:
    """YAML reads an unquoted 34020000002000000001 as a number: take its digits (a lost leading
    zero then fails the 20-digit check, with the value shown)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


PlatformId = Annotated[str, BeforeValidator(_unquoted), _gb_id("platform", PLATFORM_TYPES, "34020000002000000001",
                                   "platform equipment; 200 = the SIP server")]
DeviceId = Annotated[str, BeforeValidator(_unquoted), _gb_id("device", DEVICE_TYPES, "34020000001180000001",
                                 "a front-end host device: 118 NVR, 111 DVR, 113 encoder")]
ChannelId = Annotated[str, BeforeValidator(_unquoted), _gb_id("channel", CHANNEL_TYPES, "34020000001320000001",
                                  "a front-end peripheral: 131 camera, 132 IP camera")]
CameraKey = Annotated[str, Field(pattern=IDENT_PATTERN)]


class Gb28181Output(StrictModel):
    """One GB/T 28181 platform the gateway registers with (`outputs: [{type: gb28181, ...}]`)."""

    type: Literal["gb28181"] = "gb28181"
    id: str = Field(default="gb28181", pattern=IDENT_PATTERN,
                    description="Names this output in logs, health and metrics ('gb28181:<id>').")
    host: str = Field(min_length=1, description="The platform's SIP address (IP or host name).")
    port: int = Field(default=5060, ge=1, le=65535)
    transport: Literal["udp", "tcp"] = "udp"
    platform_id: PlatformId = Field(description="The platform's SIP server ID (20 digits, type 200).")
    domain: str | None = Field(default=None, description="SIP domain; default the first 10 digits "
                               "of platform_id, as GB/T 28181 platforms expect.")
    device_id: DeviceId = Field(description="The gateway's device ID, as entered on the platform.")
    password: SecretStr = Field(description="The registration password; write it as ${ENV}.")
    expires_s: int = Field(default=3600, ge=60, le=86400,
                           description="Registration lifetime asked for; refreshed well before it runs out.")
    keepalive_s: float = Field(default=60, ge=1, le=3600, description="Keepalive MESSAGE interval.")
    max_missed_keepalives: int = Field(default=3, ge=1, le=100,
                                       description="This many unanswered keepalives: register again.")
    answer_timeout_s: float = Field(default=32, gt=0, le=300, description="How long a request waits for "
                                    "the platform's final answer (RFC 3261 timer F, 32 s).")
    retry_max_s: float = Field(default=60, ge=1, le=3600,
                               description="Longest wait between registration attempts (backoff cap).")
    bind: str = Field(default="0.0.0.0", description="Local address to send from and listen on.")
    local_port: int = Field(default=5060, ge=0, le=65535, description="Local SIP port (UDP; over TCP only "
                            "when set, else any free port); 0 = any free port.")
    contact_host: str | None = Field(default=None, description="Address the platform should reach the "
                                     "gateway at (NAT); default: the local address facing the platform.")
    channels: dict[CameraKey, ChannelId] = Field(
        default_factory=dict, description="Camera id -> its 20-digit channel ID; unlisted cameras "
                                          "raise alarms on device_id and are not in the catalogue.")
    name: str = Field(default="", description="Device name shown by the platform; default the gateway's name.")
    manufacturer: str = "Edge Gateway"
    model: str = "Crowd Analytics"

    @field_validator("domain")
    @classmethod
    def _plain_domain(cls, value: str | None) -> str | None:
        if value is not None and not _DOMAIN.match(value):
            raise ValueError(f"domain {value!r} must be digits (e.g. 3402000000), an IP address or a host name")
        return value

    @model_validator(mode="after")
    def _distinct_ids(self) -> Gb28181Output:
        problems: list[LocatedValueError] = []
        if self.device_id == self.platform_id:
            problems.append(LocatedValueError("device_id", "the device ID must differ from platform_id"))
        owner: dict[str, str] = {self.device_id: "device_id", self.platform_id: "platform_id"}
        for camera_id, channel_id in self.channels.items():
            if channel_id in owner:
                problems.append(LocatedValueError(
                    f"channels.{camera_id}",
                    f"channel ID {channel_id} is already used by {owner[channel_id]}: every channel "
                    "needs its own ID"))
            else:
                owner[channel_id] = f"channels.{camera_id}"
        if problems:
            raise LocatedErrors(problems)
        return self

    @property
    def sip_domain(self) -> str:
        return self.domain or self.platform_id[:10]

    @property
    def sink_name(self) -> str:
        return f"gb28181:{self.id}"

    def channel_id(self, camera_id: str | None) -> str:
        """The ID an alarm of this camera is raised on: its channel, else the gateway itself."""
        if camera_id is None:
            return self.device_id
        return self.channels.get(camera_id, self.device_id)

    def channel_problems(self, camera_ids: set[str]) -> list[LocatedValueError]:
        """Channels of cameras that are not configured (typos), located under this output."""
        known = ", ".join(sorted(camera_ids)) or "none"
        return [
            LocatedValueError(f"channels.{camera_id}", f"unknown camera {camera_id!r} (known: {known})")
            for camera_id in self.channels
            if camera_id not in camera_ids
        ]
