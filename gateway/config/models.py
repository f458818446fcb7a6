"""The configuration file as typed models: every key the gateway reads, validated strictly.

Unknown keys are errors (`extra="forbid"`): a typo such as `threshhold` must fail `gateway check`,
not silently fall back to a default. Cross-field checks (unique ids, zones that rules refer to,
polygons inside the frame) live here too, so one validation pass reports every problem.

Coordinates: polygons are in pixels of the camera's `resolution` (the frame the installer drew
on) unless the camera says `coordinates: normalized`, in which case every point is in 0..1 of the
frame's width and height. At run time pixel polygons are scaled to the actual stream size, so a
zone drawn on the main stream also works on the sub stream.

Camera sources are told apart by their key: `rtsp:` (a URL), `nvr:` (vendor shorthand, flat:
`{nvr: hikvision, host: 10.0.0.5, channel: 3, stream: sub}`), `onvif:` (a nested map) or `file:`
(a recorded video). Rules are told apart by `type:`.

The end of this module navigates the models by key path (`describe_loc`, `path_values`): the
loader uses it to turn pydantic's error locations into YAML lines and to find `Path` fields.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ErrorType

IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Ids end up in MQTT topics and URLs: no spaces, slashes, '+' or '#'."""

Ident = Annotated[str, Field(pattern=IDENT_PATTERN)]
Point = tuple[float, float]
TIME_WINDOW = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- gateway, detector


class GatewaySection(StrictModel):
    id: Ident = Field(description="Unique gateway id; used in MQTT topics and the client id.")
    name: str = ""
    township: str = ""
    timezone: str = "Asia/Shanghai"
    data_dir: Path = Path("/var/lib/gateway")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use an IANA name such as Asia/Shanghai"
            raise ValueError(f"unknown time zone {value!r} ({hint})") from None
        return value


class DetectorSection(StrictModel):
    backend: Literal["onnxruntime", "ultralytics"] = "onnxruntime"
    model: Path = Field(description="Model file; relative paths are relative to the config file.")
    input_size: int | tuple[int, int] | None = Field(
        default=None, description="Network input (square int or [width, height]); default: the model's."
    )
    confidence: float = Field(default=0.3, gt=0, lt=1)
    nms_iou: float = Field(default=0.45, gt=0, le=1)
    threads: int = Field(default=2, ge=1, le=64)
    person_classes: list[str | int] = Field(
        default_factory=list,
        description="Class names or ids counted as people; default the model's 'person' class.",
    )
    layout: Literal["auto", "yolox", "ultralytics"] = "auto"

    @field_validator("input_size")
    @classmethod
    def _positive_multiple_of_32(cls, value: int | tuple[int, int] | None):
        if value is None:
            return value
        sizes = (value, value) if isinstance(value, int) else value
        for size in sizes:
            if size < 32 or size > 4096 or size % 32:
                raise ValueError(f"input size {size} must be a multiple of 32 between 32 and 4096")
        return value


# --------------------------------------------------------------------------- camera geometry


class Location(StrictModel):
    address: str = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class Polygon(StrictModel):
    """Shared shape of zones and masks: at least 3 points, range-checked against the camera."""

    polygon: list[Point] = Field(min_length=3)

    @field_validator("polygon", mode="before")
    @classmethod
    def _at_least_three_points(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) < 3:
            raise ValueError(f"need at least 3 points, got {len(value)}")
        return value


class Zone(Polygon):
    id: Ident
    name: str = ""


class Mask(Polygon):
    """A private area (window, courtyard) blanked out of analysis and snapshots."""

    name: str = ""


class Calibration(StrictModel):
    """Ground-plane calibration: image points (same units as polygons) and where they lie in metres."""

    image_points: list[Point] = Field(min_length=4)
    ground_points_m: list[Point] = Field(min_length=4)

    @model_validator(mode="after")
    def _same_length(self) -> Calibration:
        if len(self.image_points) != len(self.ground_points_m):
            raise LocatedValueError(
                "ground_points_m",
                f"image_points has {len(self.image_points)} points but ground_points_m has "
                f"{len(self.ground_points_m)}: they must pair up",
            )
        return self


# --------------------------------------------------------------------------- rules


def _time_window(window: str) -> str:
    """One 'HH:MM-HH:MM' window; checked per item so the error points at the item's line."""
    match = TIME_WINDOW.match(window.strip())
    if not match:
        raise ValueError(f"time window {window!r} must look like '22:00-06:00' (24-hour clock)")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise ValueError(f"time window {window!r} has an impossible time (00:00..23:59, or 24:00 as end)")
    if (start_h, start_m) == (end_h, end_m):
        raise ValueError(f"time window {window!r} is empty (start equals end)")
    return window.strip()


TimeWindow = Annotated[str, AfterValidator(_time_window)]
"""'22:00-06:00' spans midnight; '24:00' is allowed as an end time only."""


class RuleUpdates(StrictModel):
    """When an open event sends `update` messages."""

    min_change: int = Field(default=2, ge=1, description="count changed by at least this much")
    every_s: float = Field(default=60, gt=0, description="or this long since the last message")


class Escalation(StrictModel):
    """While `sensor` is active, alerts of the rule carry `severity` (sent as an update)."""

    sensor: Ident
    severity: int = Field(default=4, ge=1, le=4)


class RuleBase(StrictModel):
    id: Ident | None = Field(default=None, description="Default: '<type>-<zone or frame>'.")
    zone: Ident | None = Field(default=None, description="Zone id; omitted means the whole frame.")
    for_s: float = Field(default=5, ge=0, description="Condition must hold this long to start.")
    clear_s: float = Field(default=5, ge=0, description="Condition must be false this long to end.")
    cooldown_s: float = Field(default=0, ge=0, description="After an end, no new start this long.")
    schedule: list[TimeWindow] = Field(
        default_factory=list, description="Active windows 'HH:MM-HH:MM' (local time); empty = always."
    )
    severity: int = Field(default=2, ge=1, le=4)
    updates: RuleUpdates = Field(default_factory=RuleUpdates)
    when_sensor: Ident | None = Field(
        default=None, description="Sensor id: the rule is armed only while that sensor is active.")
    escalate: Escalation | None = Field(
        default=None, description="Raise the severity while a sensor is active (e.g. an SOS button).")

    @property
    def rule_id(self) -> str:
        return self.id or f"{self.type}-{self.zone or 'frame'}"  # type: ignore[attr-defined]


class CrowdRule(RuleBase):
    """Too many people: count >= min_people, or density >= min_density_per_m2 (calibrated)."""

    type: Literal["crowd"]
    min_people: int | None = Field(default=None, ge=1)
    min_density_per_m2: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_threshold(self) -> CrowdRule:
        if self.min_people is None and self.min_density_per_m2 is None:
            raise ValueError("a crowd rule needs min_people or min_density_per_m2")
        return self


class GatheringRule(RuleBase):
    """People clustered within radius_m of each other (single linkage), persisting."""

    type: Literal["gathering"]
    min_people: int = Field(default=4, ge=2)
    radius_m: float = Field(default=2.0, gt=0, le=50)


class GrowthRule(RuleBase):
    """The count rises by at least `delta` within `window_s` seconds."""

    type: Literal["growth"]
    delta: int = Field(ge=1)
    window_s: float = Field(default=20, gt=0)
    for_s: float = Field(default=0, ge=0)


class LoiteringRule(RuleBase):
    """One person (track) stays in the zone for at least `for_s` seconds."""

    type: Literal["loitering"]
    for_s: float = Field(default=120, gt=0)


class IntrusionRule(RuleBase):
    """Anyone in the zone while the schedule is active."""

    type: Literal["intrusion"]
    min_people: int = Field(default=1, ge=1)
    for_s: float = Field(default=1, ge=0)


Rule = Annotated[
    Union[CrowdRule, GatheringRule, GrowthRule, LoiteringRule, IntrusionRule],
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- camera sources


class RtspSource(StrictModel):
    """`source: {rtsp: rtsp://user:${CAM_PASSWORD}@host:554/path}`."""

    rtsp: str = Field(description="rtsp://user:pass@host:554/path; put the password in ${ENV}.")
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
    host: str
    port: int = Field(default=554, ge=1, le=65535)
    channel: int = Field(default=1, ge=1, le=256)
    stream: Literal["main", "sub"] = "sub"
    user: str = ""
    password: SecretStr = SecretStr("")
    transport: Literal["tcp", "udp"] = "tcp"


class OnvifSettings(StrictModel):
    host: str
    port: int = Field(default=80, ge=1, le=65535)
    user: str = ""
    password: SecretStr = SecretStr("")
    profile: str | None = Field(default=None, description="Profile name or token; default: smallest stream.")
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


class MotionSettings(StrictModel):
    enabled: bool = True
    sensitivity: float = Field(default=0.5, gt=0, le=1)
    max_skip_s: float = Field(default=5, gt=0)


class PatrolStop(StrictModel):
    preset: str
    dwell_s: float = Field(default=30, gt=0)
    settle_s: float = Field(default=3, ge=0)
    zones: list[Ident] = Field(default_factory=list)


# --------------------------------------------------------------------------- cameras

PositiveInt = Annotated[int, Field(gt=0)]


class CameraDefaults(StrictModel):
    """Values every camera inherits unless it sets its own."""

    fps: float = Field(default=2, gt=0, le=60, description="Frames analysed per second.")
    resolution: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None, description="[width, height] of the frame the pixel polygons were drawn on."
    )
    coordinates: Literal["pixels", "normalized"] = "pixels"
    decode: Literal["auto", "keyframes", "all"] = "auto"
    offline_after_s: float = Field(default=60, gt=0)
    stall_s: float = Field(default=10, gt=0, description="No new frame this long: reconnect. "
                           "Must exceed the camera's keyframe interval.")
    motion: MotionSettings = Field(default_factory=MotionSettings)


from gateway.config.counting import CountingSection  # noqa: E402  (its module imports StrictModel from here)


class Camera(CameraDefaults):
    id: Ident
    name: str = ""
    grid_id: str = ""
    location: Location = Field(default_factory=Location)
    source: CameraSource
    masks: list[Mask] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    calibration: Calibration | None = None
    patrol: list[PatrolStop] = Field(default_factory=list)
    counting: CountingSection = Field(default_factory=CountingSection)

    @model_validator(mode="after")
    def _consistent(self) -> Camera:
        problems = [
            *_duplicates("zones", [zone.id for zone in self.zones]),
            *_duplicates("rules", [rule.rule_id for rule in self.rules]),
            *self._rule_problems(),
            *self._patrol_problems(),
            *self._polygon_problems(),
        ]
        if problems:
            raise LocatedErrors(problems)
        return self

    def _rule_problems(self) -> Iterator[LocatedValueError]:
        zone_ids = {zone.id for zone in self.zones}
        for index, rule in enumerate(self.rules):
            if rule.zone is not None and rule.zone not in zone_ids:
                yield _located(f"rules[{index}].zone", f"unknown zone {rule.zone!r}", zone_ids)
            if isinstance(rule, CrowdRule) and rule.min_density_per_m2 and not self.calibration:
                yield _located(
                    f"rules[{index}].min_density_per_m2",
                    "a density threshold needs the camera's calibration (or use min_people)",
                )

    def _patrol_problems(self) -> Iterator[LocatedValueError]:
        zone_ids = {zone.id for zone in self.zones}
        if self.patrol and not isinstance(self.source, OnvifSource):
            yield _located("patrol", "a PTZ patrol needs an onvif: source (presets are ONVIF)")
        for index, stop in enumerate(self.patrol):
            for position, zone in enumerate(stop.zones):
                if zone not in zone_ids:
                    yield _located(f"patrol[{index}].zones[{position}]", f"unknown zone {zone!r}", zone_ids)

    def _polygon_problems(self) -> Iterator[LocatedValueError]:
        shapes: list[tuple[str, list[Point]]] = [
            (f"zones[{i}].polygon", zone.polygon) for i, zone in enumerate(self.zones)
        ] + [(f"masks[{i}].polygon", mask.polygon) for i, mask in enumerate(self.masks)]
        if self.calibration:
            shapes.append(("calibration.image_points", self.calibration.image_points))
        if self.coordinates == "normalized":
            width, height = 1.0, 1.0
        elif self.resolution is not None:
            width, height = self.resolution
        elif shapes:
            yield _located(
                shapes[0][0],
                "pixel coordinates need the camera's resolution: [width, height] "
                "(or set coordinates: normalized)",
            )
            return
        else:
            return
        for where, points in shapes:
            for index, (x, y) in enumerate(points):
                if not (0 <= x <= width and 0 <= y <= height):
                    yield _located(
                        f"{where}[{index}]",
                        f"point [{x:g}, {y:g}] lies outside the frame {width:g}x{height:g}"
                        + (" (normalized coordinates are 0..1)" if self.coordinates == "normalized" else ""),
                    )


SENSOR_TYPES = ("smoke", "door", "water_leak", "sos", "pir", "tamper", "generic")
SensorType = Literal["smoke", "door", "water_leak", "sos", "pir", "tamper", "generic"]
SENSOR_SEVERITY = {"smoke": 4, "sos": 4, "water_leak": 3, "tamper": 3, "door": 2, "pir": 2, "generic": 2}
"""Default alert severity per sensor type: life-safety first (fire, a call for help)."""
ScalarValue = Union[bool, int, float, str]


class SensorLink(StrictModel):
    """Video evidence for a sensor: the cameras that see the place, and where to point a PTZ."""

    cameras: list[Ident] = Field(default_factory=list, description="Camera ids; the first one's snapshot "
                                 "is the alert's snapshot.")
    preset: str | None = Field(default=None, description="PTZ preset the first camera moves to on a trigger.")
    pre_s: float = Field(default=0, ge=0, le=300, description="Evidence from up to this long before the trigger.")
    post_s: float = Field(default=0, ge=0, le=300, description="One more snapshot this long after the trigger.")


class CameraAlarm(StrictModel):
    """A camera's own alarm used as a sensor: its ONVIF events of one kind (and input)."""

    camera: Ident = Field(description="Id of an ONVIF camera (source: onvif).")
    event: Literal["digital_input", "motion", "tamper"] = "digital_input"
    input: str | None = Field(default=None, description="InputToken of a digital input; default: any.")


class Sensor(StrictModel):
    """An IoT sensor publishing over MQTT on a site broker (`sensor_brokers`), or a camera's own
    alarm input (`onvif:`): both share the same state, health, debounce, linkage and conditions.

    `format` says how the payload is read: `zigbee2mqtt` (JSON; the field defaults by type),
    `tasmota` (plain `ON`/`OFF` on stat/<name>/POWER, or a JSON field such as `Switch1` on
    tele/<name>/SENSOR), `json` (any JSON object; `field` required) or `plain` (the payload is
    the value). `sos` sensors are buttons: a press counts as active for `momentary_s`.
    """

    id: Ident
    name: str = ""
    type: SensorType = "generic"
    grid_id: str = ""
    location: Location = Field(default_factory=Location)
    broker: Ident = Field(default="site", description="Key of sensor_brokers this sensor publishes on.")
    topic: str | None = Field(default=None, min_length=1, description="Exact MQTT topic (no + or # wildcards).")
    onvif: CameraAlarm | None = Field(default=None, description="A camera's ONVIF alarm instead of a topic.")
    format: Literal["zigbee2mqtt", "tasmota", "json", "plain"] = "json"
    field: str | None = Field(default=None, description="JSON field holding the state; default by format/type.")
    active_value: ScalarValue | None = Field(
        default=None, description="The value meaning 'active'; default by format/type (true, 'ON', ...).")
    momentary_s: float = Field(default=10, gt=0, le=3600, description="How long a button press counts as active.")
    heartbeat_s: float | None = Field(default=None, gt=0, description="Silent longer than this: offline "
                                      "(battery sensors); omit for no check.")
    min_active_s: float = Field(default=0, ge=0, description="Must stay active this long to alert (debounce).")
    cooldown_s: float = Field(default=0, ge=0, description="After an alert ends, no new one this long.")
    schedule: list[TimeWindow] = Field(
        default_factory=list, description="Armed windows 'HH:MM-HH:MM' (local time); empty = always.")
    severity: int | None = Field(default=None, ge=1, le=4, description="Default by type (smoke/sos 4 ... pir 2).")
    link: SensorLink = Field(default_factory=SensorLink)

    @field_validator("topic")
    @classmethod
    def _exact_topic(cls, value: str | None) -> str | None:
        if value is not None and ("+" in value or "#" in value):
            raise ValueError(f"topic {value!r} must be exact: one sensor, one topic, no + or # wildcards")
        return value

    @model_validator(mode="after")
    def _mapping_complete(self) -> Sensor:
        if (self.topic is None) == (self.onvif is None):
            raise LocatedValueError("topic", "a sensor needs either topic: (MQTT) or onvif: (a camera's alarm)")
        if self.onvif is not None:
            if not self.link.cameras:  # a camera's alarm shows that camera unless told otherwise
                return self.model_copy(update={"link": self.link.model_copy(
                    update={"cameras": [self.onvif.camera]})})
            return self
        if self.format == "json" and self.field is None:
            raise LocatedValueError("field", "a json sensor needs the JSON field that holds its state")
        if self.format == "zigbee2mqtt" and self.field is None and self.type == "generic":
            raise LocatedValueError("field", "a generic zigbee2mqtt sensor needs field (e.g. contact, occupancy)")
        if self.format == "tasmota" and self.field is None and self.topic.endswith("/SENSOR"):
            raise LocatedValueError("field", "a tasmota SENSOR topic needs field (e.g. Switch1)")
        return self

    @property
    def momentary(self) -> bool:
        """Buttons report presses, not a state: active for momentary_s after each press."""
        return self.type == "sos"

    @property
    def alert_severity(self) -> int:
        return self.severity if self.severity is not None else SENSOR_SEVERITY[self.type]

    @property
    def label(self) -> str:
        """Name for logs and titles: the installer's name, else the id."""
        return self.name or self.id


# --------------------------------------------------------------------------- delivery, storage, api


class MqttTls(StrictModel):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(default=False, description="Skip hostname verification (testing only).")


class MqttSection(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    client_id: str | None = Field(default=None, description="Default: gw-<gateway id>.")
    prefix: str = Field(default="gw", pattern=r"^[^#+]+$")
    qos: Literal[0, 1] = 1
    heartbeat_s: float = Field(default=30, gt=0)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"


class SensorBroker(StrictModel):
    """A site MQTT broker that sensors publish on (often a local Mosquitto beside Zigbee2MQTT)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    client_id: str | None = Field(default=None, description="Default: gw-<gateway id>-sensors-<broker name>.")
    keepalive_s: int = Field(default=30, ge=5, le=3600)


class StorageSection(StrictModel):
    outbox_max_mb: float = Field(default=200, gt=0)
    snapshot_max_mb: float = Field(default=500, gt=0)
    snapshot_retention_days: float = Field(default=30, gt=0)


class ApiSection(StrictModel):
    bind: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    token: SecretStr | None = None


class GatewayConfig(StrictModel):
    gateway: GatewaySection
    detector: DetectorSection
    defaults: CameraDefaults = Field(default_factory=CameraDefaults)
    cameras: list[Camera] = Field(default_factory=list)
    sensors: list[Sensor] = Field(default_factory=list)
    sensor_brokers: dict[Ident, SensorBroker] = Field(default_factory=dict)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    api: ApiSection = Field(default_factory=ApiSection)

    @model_validator(mode="wrap")
    @classmethod
    def _unique_ids(cls, data: Any, handler: Any) -> GatewayConfig:
        """Duplicate ids are checked on the raw input so they are reported with every other error.

        An `after` validator would only run once everything else is valid, hiding a duplicate
        camera id until the installer has fixed the rest.
        """
        problems = _raw_duplicate_ids(data)
        try:
            config = handler(data)
        except ValidationError as error:
            if not problems:
                raise
            raise _add_problems(error, problems, data) from None
        problems += list(config._sensor_problems())
        if problems:
            raise LocatedErrors(problems)
        return config

    def _sensor_problems(self) -> Iterator[LocatedValueError]:
        """A sensor's broker and linked cameras, and the sensors rules refer to, must exist
        (checked once the rest is valid)."""
        camera_ids = {camera.id for camera in self.cameras}
        onvif_cameras = {camera.id for camera in self.cameras if isinstance(camera.source, OnvifSource)}
        for index, sensor in enumerate(self.sensors):
            if sensor.onvif is not None:
                if sensor.onvif.camera not in onvif_cameras:
                    yield _located(f"sensors[{index}].onvif.camera",
                                   f"not an ONVIF camera: {sensor.onvif.camera!r}", onvif_cameras)
                continue
            if sensor.broker not in self.sensor_brokers:
                yield _located(f"sensors[{index}].broker", f"unknown sensor broker {sensor.broker!r}",
                               set(self.sensor_brokers))
            for position, camera_id in enumerate(sensor.link.cameras):
                if camera_id not in camera_ids:
                    yield _located(f"sensors[{index}].link.cameras[{position}]",
                                   f"unknown camera {camera_id!r}", camera_ids)
        sensor_ids = {sensor.id for sensor in self.sensors}
        for camera_index, camera in enumerate(self.cameras):
            for rule_index, rule in enumerate(camera.rules):
                where = f"cameras[{camera_index}].rules[{rule_index}]"
                if rule.when_sensor is not None and rule.when_sensor not in sensor_ids:
                    yield _located(f"{where}.when_sensor", f"unknown sensor {rule.when_sensor!r}", sensor_ids)
                if rule.escalate is not None and rule.escalate.sensor not in sensor_ids:
                    yield _located(f"{where}.escalate.sensor", f"unknown sensor {rule.escalate.sensor!r}",
                                   sensor_ids)

    def sensor(self, sensor_id: str) -> Sensor:
        for sensor in self.sensors:
            if sensor.id == sensor_id:
                return sensor
        raise KeyError(f"no sensor {sensor_id!r} in the configuration")

    def camera(self, camera_id: str) -> Camera:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        known = ", ".join(camera.id for camera in self.cameras) or "none"
        raise KeyError(f"no camera {camera_id!r} in the configuration (cameras: {known})")


# --------------------------------------------------------------------------- located errors


class LocatedValueError(ValueError):
    """A cross-field error that knows the key path (relative to the model) it belongs to.

    Pydantic reports model-validator errors at the model itself; the loader appends `subpath`
    so `gateway check` points at the exact line (e.g. `cameras[0].rules[2].zone`).
    """

    def __init__(self, subpath: str, message: str):
        super().__init__(f"@{subpath}: {message}")
        self.subpath = subpath
        self.message = message


class LocatedErrors(ValueError):
    """Several located problems found by one validator: all are reported, not just the first."""

    def __init__(self, errors: list[LocatedValueError]):
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors


def _located(subpath: str, message: str, known: set[str] | None = None) -> LocatedValueError:
    if known is not None:
        message += f" (known: {', '.join(sorted(known)) or 'none'})"
    return LocatedValueError(subpath, message)


def _duplicates(section: str, ids: list[Any]) -> list[LocatedValueError]:
    seen: dict[Any, int] = {}
    problems = []
    for index, ident in enumerate(ids):
        if not isinstance(ident, str):
            continue
        if ident in seen:
            problems.append(
                _located(f"{section}[{index}].id", f"duplicate id {ident!r} (first used at {section}[{seen[ident]}])")
            )
        else:
            seen[ident] = index
    return problems


def _raw_duplicate_ids(data: Any) -> list[LocatedValueError]:
    if not isinstance(data, dict):
        return []
    problems = []
    for section in ("cameras", "sensors"):
        items = data.get(section)
        if isinstance(items, list):
            problems += _duplicates(section, [_item_id(item) for item in items])
    return problems


def _item_id(item: Any) -> Any:
    return item.get("id") if isinstance(item, dict) else getattr(item, "id", None)


def _add_problems(error: ValidationError, problems: list[LocatedValueError], data: Any) -> ValidationError:
    """`error` plus `problems` as one ValidationError (pydantic has no public 'append')."""
    details: list[Any] = [_init_details(item) for item in error.errors()]
    details.append({"type": "value_error", "loc": (), "input": data, "ctx": {"error": LocatedErrors(problems)}})
    return ValidationError.from_exception_data(error.title, details)


def _init_details(item: Any) -> dict[str, Any]:
    known = set(get_args(ErrorType))
    detail: dict[str, Any] = {"loc": item["loc"], "input": item.get("input")}
    if item["type"] in known:
        detail["type"] = item["type"]
        if item.get("ctx"):
            detail["ctx"] = item["ctx"]
    else:
        detail["type"] = PydanticCustomError(item["type"], item["msg"])
    return detail


# --------------------------------------------------------------------------- schema navigation

Key = str | int


@dataclass(frozen=True)
class LocInfo:
    """What a pydantic error location means in terms of the YAML.

    path: the loc without union labels (tags such as 'crowd' or branch names such as 'int').
    owner: the model whose key `path[-1]` is (for 'did you mean' on unknown keys).
    labels: when the loc ends at a tagged union, its valid tags (e.g. the rule types).
    branch: True when a smart-union branch label was stripped (one error per branch).
    """

    path: tuple[Key, ...]
    owner: type[BaseModel] | None
    labels: tuple[str, ...]
    branch: bool


def describe_loc(loc: tuple[Key, ...], root: type[BaseModel] | None = None) -> LocInfo:
    """Strip the labels pydantic inserts into locs for unions, by walking the model types."""
    node: _Node | None = _node(root or GatewayConfig)
    path: list[Key] = []
    owner: type[BaseModel] | None = None
    branch = False
    for element in loc:
        if node is not None and _is_union(node.type):
            member = _members(node).get(str(element))
            branch = branch or node.discriminator is None
            node = _node(member) if member is not None else None
            continue
        owner = node.type if node is not None and _is_model(node.type) else None
        node = _child(node, element) if node is not None else None
        path.append(element)
    labels = tuple(_members(node)) if node is not None and _is_union(node.type) else ()
    return LocInfo(tuple(path), owner, labels, branch)


def model_keys(model: type[BaseModel]) -> list[str]:
    """The keys a model accepts in YAML (aliases where they exist)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def path_values(data: Any, root: type[BaseModel] | None = None) -> Iterator[tuple[tuple[Key, ...], Any]]:
    """(key path, raw value) of every `Path`-typed field present in raw `data`.

    The loader resolves these relative to the file they were written in; deriving them from the
    models means a new `Path` field is resolved without anyone touching the loader.
    """
    yield from _walk_paths(_node(root or GatewayConfig), data, ())


@dataclass(frozen=True)
class _Node:
    type: Any
    discriminator: Any = None


def _node(annotation: Any, discriminator: Any = None) -> _Node:
    """Annotation without Annotated/Optional wrappers, keeping any union discriminator."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *metadata = get_args(annotation)
            for meta in metadata:
                if isinstance(meta, Discriminator):
                    discriminator = meta
                elif isinstance(meta, FieldInfo) and meta.discriminator is not None:
                    discriminator = meta.discriminator
            continue
        if _is_union(annotation):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return _Node(annotation, discriminator)


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _members(node: _Node) -> dict[str, Any]:
    """Tag → member annotation of a tagged union (Tag(...) or a Literal discriminator field)."""
    members: dict[str, Any] = {}
    for member in get_args(node.type):
        if get_origin(member) is Annotated:
            tag = next((meta.tag for meta in get_args(member)[1:] if isinstance(meta, Tag)), None)
            if tag is not None:
                members[tag] = member
                continue
        inner = _node(member).type
        if isinstance(node.discriminator, str) and _is_model(inner):
            field = inner.model_fields.get(node.discriminator)
            if field is not None and get_origin(field.annotation) is Literal:
                for value in get_args(field.annotation):
                    members[str(value)] = member
    return members


def _field(model: type[BaseModel], key: Key) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if key == (field.alias or name) or (key == name and model.model_config.get("populate_by_name")):
            return field
    return None


def _child(node: _Node, key: Key) -> _Node | None:
    if _is_model(node.type):
        field = _field(node.type, key)
        if field is None:
            return None
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        return _node(annotation, field.discriminator)
    origin, args = get_origin(node.type), get_args(node.type)
    if origin is list and args:
        return _node(args[0])
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return _node(args[0])
        return _node(args[key]) if isinstance(key, int) and 0 <= key < len(args) else None
    if origin is dict and len(args) == 2:
        return _node(args[1])
    return None


def _walk_paths(node: _Node | None, value: Any, path: tuple[Key, ...]) -> Iterator[tuple[tuple[Key, ...], Any]]:
    if node is None:
        return
    if _is_union(node.type):
        yield from _walk_paths(_chosen_member(node, value), value, path)
    elif isinstance(node.type, type) and issubclass(node.type, Path):
        yield path, value
    elif _is_model(node.type) and isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_paths(_child(node, key), item, (*path, key))
    elif get_origin(node.type) is list and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_paths(_child(node, index), item, (*path, index))


def _chosen_member(node: _Node, value: Any) -> _Node | None:
    """The union member raw `value` will be validated as, when the union is tagged."""
    if isinstance(node.discriminator, Discriminator) and callable(node.discriminator.discriminator):
        tag = node.discriminator.discriminator(value)
    elif isinstance(node.discriminator, str) and isinstance(value, dict):
        tag = value.get(node.discriminator)
    else:
        return None
    member = _members(node).get(str(tag))
    return _node(member) if member is not None else None
