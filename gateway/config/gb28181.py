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

Channels. A platform files an alarm only under a channel it knows from the device's catalogue
(WVP stores an alarm only when its DeviceID is a catalogue channel; one raised on the device's
own ID is dropped), so every alert source has one:

- `channels` maps camera ids *and* sensor ids to channel ids. A camera's channel is a camera
  (131-199); a sensor's is an alarm input device (134). A sensor without a channel of its own
  alarms on its first linked camera's channel.
- `alarm_channel`, type 134: where the gateway's own alarms go (disk full, and any alert with
  neither camera nor sensor), and the fallback for a source without a channel. By default it is
  derived from `device_id` (type digits 11-13 set to 134, same serial), so an existing
  configuration keeps delivering every alarm without an edit, and an installer who numbers
  channels by hand can set it.

Every channel is in the catalogue (sensors as alarm input devices with their names and
addresses). `channel_problems` checks that the listed ids exist; `warnings` (printed by
`gateway check`) names every camera and sensor without a channel (its alarms land on the alarm
channel, so nothing is lost: a warning, not an error) and a keepalive interval that platforms
do not tolerate.
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
ALARM_INPUT = 134
ALARM_INPUT_TYPES = range(ALARM_INPUT, ALARM_INPUT + 1)

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
                                  "a front-end peripheral: 131 camera, 132 IP camera, 134 alarm input")]
AlarmChannelId = Annotated[str, BeforeValidator(_unquoted), _gb_id("alarm channel", ALARM_INPUT_TYPES,
                                       "34020000001340000001", "134 alarm input device")]
SourceKey = Annotated[str, Field(pattern=IDENT_PATTERN)]
PLATFORM_KEEPALIVE_S = 60
PLATFORM_MISSED_KEEPALIVES = 3
"""What platforms assume when they do not read the device's BasicParam: a keepalive every 60 s,
offline after 3 missed (WVP: min(expires, 60 x 3) = 180 s until it has read ConfigDownload)."""


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
    channels: dict[SourceKey, ChannelId] = Field(
        default_factory=dict, description="Camera or sensor id -> its 20-digit channel ID (sensors: type "
                                          "134); unlisted sources alarm on alarm_channel.")
    alarm_channel: AlarmChannelId | None = Field(
        default=None, description="Channel (type 134) of the gateway's own alarms and of sources without "
                                  "a channel; default device_id with type digits 134.")
    max_streams: int = Field(default=4, ge=0, le=64, description=(
        "Video streams to the platform at once (live and playback INVITEs); beyond it the platform gets "
        "486 Busy Here. Each is a remux, no re-encoding: a few % of a Pi core and about 3 MB; 0 turns video off."))
    media_ports: tuple[int, int] | None = Field(default=None, description=(
        "[first, last] local ports of the media sockets (UDP, TCP), one per stream: open them in the firewall "
        "when the platform connects to the gateway (TCP passive); default any free port the system gives."))
    name: str = Field(default="", description="Device name shown by the platform; default the gateway's name.")
    manufacturer: str = "Edge Gateway"
    model: str = "Crowd Analytics"

    @field_validator("domain")
    @classmethod
    def _plain_domain(cls, value: str | None) -> str | None:
        if value is not None and not _DOMAIN.match(value):
            raise ValueError(f"domain {value!r} must be digits (e.g. 3402000000), an IP address or a host name")
        return value

    @field_validator("media_ports")
    @classmethod
    def _port_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1024 <= value[0] <= value[1] <= 65535:
            raise ValueError(f"media_ports must be [first, last] with 1024 <= first <= last <= 65535, got "
                             f"[{value[0]}, {value[1]}]")
        return value

    @model_validator(mode="after")
    def _distinct_ids(self) -> Gb28181Output:
        problems: list[LocatedValueError] = []
        if self.media_ports is not None and self.media_ports[1] - self.media_ports[0] + 1 < self.max_streams:
            problems.append(LocatedValueError("media_ports", (
                f"{self.media_ports[1] - self.media_ports[0] + 1} port(s) for max_streams {self.max_streams}: "
                "every stream needs a port of its own")))
        if self.device_id == self.platform_id:
            problems.append(LocatedValueError("device_id", "the device ID must differ from platform_id"))
        owner: dict[str, str] = {self.device_id: "device_id", self.platform_id: "platform_id",
                                 self.gateway_channel: "alarm_channel"}
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

    @property
    def gateway_channel(self) -> str:
        """The channel of the gateway's own alarms: `alarm_channel`, else derived from device_id."""
        return self.alarm_channel or f"{self.device_id[:10]}{ALARM_INPUT}{self.device_id[13:]}"

    def channel_id(self, camera_id: str | None, sensor_id: str | None = None) -> str:
        """The channel an alarm is raised on: the sensor's, else the camera's, else the
        gateway's alarm channel (never the device ID: platforms drop alarms that are not on a
        catalogue channel)."""
        for source in (sensor_id, camera_id):
            if source is not None and source in self.channels:
                return self.channels[source]
        return self.gateway_channel

    def channel_problems(self, camera_ids: set[str],
                         sensor_ids: set[str] | frozenset[str] = frozenset()) -> list[LocatedValueError]:
        """Channels of ids that are neither cameras nor sensors (typos), ids that are both, and
        sensor channels that are not alarm inputs (134), located under this output."""
        cameras = ", ".join(sorted(camera_ids)) or "none"
        sensors = ", ".join(sorted(sensor_ids)) or "none"
        problems = []
        for source, channel_id in self.channels.items():
            where = f"channels.{source}"
            if source in camera_ids and source in sensor_ids:
                problems.append(LocatedValueError(where, f"{source!r} is both a camera and a sensor id: rename one"))
            elif source in sensor_ids and gb_type_code(channel_id) != ALARM_INPUT:
                problems.append(LocatedValueError(where, (
                    f"sensor {source!r} needs an alarm input channel: digits 11-13 of {channel_id} are "
                    f"{_type_label(gb_type_code(channel_id))}, a sensor's must be {_type_label(ALARM_INPUT)}")))
            elif source not in camera_ids and source not in sensor_ids:
                problems.append(LocatedValueError(
                    where, f"unknown camera or sensor {source!r} (cameras: {cameras}; sensors: {sensors})"))
        return problems

    def warnings(self, camera_ids: list[str], sensor_links: dict[str, list[str]]) -> list[str]:
        """What `gateway check` warns about: alert sources without a channel (their alarms are
        raised on the alarm channel, not under their own name) and a keepalive platforms do
        not tolerate. sensor_links: sensor id -> its linked camera ids."""
        where = f"outputs[{self.sink_name}]"
        found = []
        for camera_id in camera_ids:
            if camera_id not in self.channels:
                found.append(f"{where}: camera {camera_id!r} has no GB/T 28181 channel: it is not in the "
                             f"platform's catalogue and its alarms are raised on the alarm channel "
                             f"{self.gateway_channel}; add it to channels:")
        for sensor_id, linked in sensor_links.items():
            if sensor_id not in self.channels and not any(camera in self.channels for camera in linked[:1]):
                found.append(f"{where}: sensor {sensor_id!r} has no GB/T 28181 channel (nor a linked camera "
                             f"with one): its alarms are raised on the alarm channel {self.gateway_channel}; "
                             "give it an alarm input channel (type 134) in channels:")
        if self.keepalive_s > PLATFORM_KEEPALIVE_S:
            found.append(
                f"{where}: keepalive_s {self.keepalive_s:g} is longer than the {PLATFORM_KEEPALIVE_S} s platforms "
                f"assume: a platform that has not read the device's BasicParam (ConfigDownload) takes the "
                f"device offline after {PLATFORM_KEEPALIVE_S * PLATFORM_MISSED_KEEPALIVES} s without one and "
                "discards its alarms; use 60 or less")
        return found
