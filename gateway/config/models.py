"""The configuration file as typed models: every key the gateway reads, validated strictly.

Unknown keys are errors (`extra="forbid"`): a typo such as `threshhold` must fail `gateway check`,
not silently fall back to a default. Cross-field checks (unique ids, zones that rules refer to,
polygons inside the frame) live here too, so one validation pass reports every problem.

Coordinates: polygons are in pixels of the camera's `resolution` (the frame the installer drew
on) unless the camera says `coordinates: normalized`, in which case every point is in 0..1 of the
frame's width and height. At run time pixel polygons are scaled to the actual stream size, so a
zone drawn on the main stream also works on the sub stream.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Ids end up in MQTT topics and URLs: no spaces, slashes, '+' or '#'."""

Ident = Annotated[str, Field(pattern=IDENT_PATTERN)]
Point = tuple[float, float]
TIME_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


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
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)")
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
            raise ValueError(
                f"image_points has {len(self.image_points)} points but ground_points_m has "
                f"{len(self.ground_points_m)}: they must pair up"
            )
        return self


# --------------------------------------------------------------------------- rules


class RuleUpdates(StrictModel):
    """When an open event sends `update` messages."""

    min_change: int = Field(default=2, ge=1, description="count changed by at least this much")
    every_s: float = Field(default=60, gt=0, description="or this long since the last message")


class RuleBase(StrictModel):
    id: Ident | None = Field(default=None, description="Default: '<type>-<zone or frame>'.")
    zone: Ident | None = Field(default=None, description="Zone id; omitted means the whole frame.")
    for_s: float = Field(default=5, ge=0, description="Condition must hold this long to start.")
    clear_s: float = Field(default=5, ge=0, description="Condition must be false this long to end.")
    cooldown_s: float = Field(default=0, ge=0, description="After an end, no new start this long.")
    schedule: list[str] = Field(
        default_factory=list, description="Active windows 'HH:MM-HH:MM' (local time); empty = always."
    )
    severity: int = Field(default=2, ge=1, le=4)
    updates: RuleUpdates = Field(default_factory=RuleUpdates)

    @field_validator("schedule")
    @classmethod
    def _time_windows(cls, windows: list[str]) -> list[str]:
        for window in windows:
            match = TIME_WINDOW.match(window)
            if not match:
                raise ValueError(f"time window {window!r} must look like '22:00-06:00'")
            if match.group(1, 2) == match.group(3, 4):
                raise ValueError(f"time window {window!r} is empty (start equals end)")
        return windows

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
    rtsp: str = Field(description="rtsp://user:pass@host:554/path; put the password in ${ENV}.")
    transport: Literal["tcp", "udp"] = "tcp"

    @field_validator("rtsp")
    @classmethod
    def _rtsp_scheme(cls, value: str) -> str:
        if not value.startswith(("rtsp://", "rtsps://")):
            raise ValueError("must start with rtsp:// or rtsps://")
        return value


class NvrSource(StrictModel):
    """Shorthand for the common NVR/camera URL schemes: vendor + channel + main/sub stream."""

    vendor: Literal["hikvision", "dahua"]
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
    transport: Literal["tcp", "udp"] = "tcp"


class OnvifSource(StrictModel):
    onvif: OnvifSettings


class FileSource(StrictModel):
    """A recorded file, played at its own frame rate (demo, testing); `loop` restarts it at the end."""

    file: Path
    loop: bool = True


CameraSource = Union[RtspSource, NvrSource, OnvifSource, FileSource]


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


class CameraDefaults(StrictModel):
    """Values every camera inherits unless it sets its own."""

    fps: float = Field(default=2, gt=0, le=60, description="Frames analysed per second.")
    resolution: tuple[int, int] | None = Field(
        default=None, description="[width, height] of the frame the pixel polygons were drawn on."
    )
    coordinates: Literal["pixels", "normalized"] = "pixels"
    decode: Literal["auto", "keyframes", "all"] = "auto"
    offline_after_s: float = Field(default=60, gt=0)
    motion: MotionSettings = Field(default_factory=MotionSettings)


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

    @model_validator(mode="after")
    def _consistent(self) -> Camera:
        _check_unique("zones", [zone.id for zone in self.zones])
        _check_unique("rules", [rule.rule_id for rule in self.rules])
        zone_ids = {zone.id for zone in self.zones}
        for index, rule in enumerate(self.rules):
            if rule.zone is not None and rule.zone not in zone_ids:
                raise _located(f"rules[{index}].zone", f"unknown zone {rule.zone!r}", zone_ids)
            if isinstance(rule, CrowdRule) and rule.min_density_per_m2 and not self.calibration:
                raise _located(f"rules[{index}].min_density_per_m2", "needs the camera's calibration")
        for index, stop in enumerate(self.patrol):
            for zone in stop.zones:
                if zone not in zone_ids:
                    raise _located(f"patrol[{index}].zones", f"unknown zone {zone!r}", zone_ids)
        self._check_polygons_in_frame()
        return self

    def _check_polygons_in_frame(self) -> None:
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
            raise _located(
                shapes[0][0],
                "pixel coordinates need the camera's resolution: [width, height] "
                "(or set coordinates: normalized)",
            )
        else:
            return
        for where, points in shapes:
            for x, y in points:
                if not (0 <= x <= width and 0 <= y <= height):
                    raise _located(
                        where, f"point [{x:g}, {y:g}] lies outside the frame {width:g}x{height:g}"
                    )


class Sensor(StrictModel):
    """Placeholder shape for IoT sensors; the sensors issue fills in mappings and linkage."""

    id: Ident
    name: str = ""
    type: Literal["smoke", "door", "water_leak", "sos", "pir", "tamper", "generic"] = "generic"
    topic: str


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
    mqtt: MqttSection = Field(default_factory=MqttSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    api: ApiSection = Field(default_factory=ApiSection)

    @model_validator(mode="after")
    def _unique_ids(self) -> GatewayConfig:
        _check_unique("cameras", [camera.id for camera in self.cameras])
        _check_unique("sensors", [sensor.id for sensor in self.sensors])
        return self

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


def _located(subpath: str, message: str, known: set[str] | None = None) -> LocatedValueError:
    if known is not None:
        message += f" (known: {', '.join(sorted(known)) or 'none'})"
    return LocatedValueError(subpath, message)


def _check_unique(section: str, ids: list[str]) -> None:
    seen: dict[str, int] = {}
    for index, ident in enumerate(ids):
        if ident in seen:
            raise _located(
                f"{section}[{index}].id", f"duplicate id {ident!r} (first used at {section}[{seen[ident]}])"
            )
        seen[ident] = index
