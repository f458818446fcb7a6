"""The configuration file as typed models: `GatewayConfig`, the root, and every section model.

Each section lives in its own module (gateway/config/<section>.py); this module assembles them,
runs the checks that span sections (unique ids, sensors' brokers and cameras, the sensors rules
refer to) and re-exports every model, so `from gateway.config.models import Camera` keeps
working wherever it is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ErrorType

from gateway.config.api import ApiSection, is_loopback
from gateway.config.base import (
    IDENT_PATTERN,
    Ident,
    LocatedErrors,
    LocatedValueError,
    OneLine,
    Point,
    Secret,
    StrictModel,
    duplicates,
    located,
)
from gateway.config.camera import Camera, CameraDefaults, MotionSettings, PatrolStop
from gateway.config.detector import DetectorSection
from gateway.config.geometry import Calibration, Location, Mask, Polygon, Zone
from gateway.config.mqtt import MqttSection, MqttTls
from gateway.config.outputs import Output, output_problems, resolve_outputs
from gateway.config.rules import (
    CrowdRule,
    Escalation,
    GatheringRule,
    GrowthRule,
    IntrusionRule,
    LoiteringRule,
    Rule,
    RuleBase,
    RuleUpdates,
    TimeWindow,
)
from gateway.config.sensors import SENSOR_SEVERITY, SENSOR_TYPES, CameraAlarm, Sensor, SensorBroker, SensorLink
from gateway.config.site import GatewaySection, StorageSection
from gateway.config.sources import (
    SOURCE_KINDS,
    CameraSource,
    FileSource,
    NvrSource,
    OnvifSettings,
    OnvifSource,
    RtspSource,
)

__all__ = [
    "IDENT_PATTERN", "SENSOR_SEVERITY", "SENSOR_TYPES", "SOURCE_KINDS", "ApiSection", "Calibration", "Camera",
    "CameraAlarm", "CameraDefaults", "CameraSource", "CrowdRule", "DetectorSection", "Escalation", "FileSource",
    "GatewayConfig", "GatewaySection", "GatheringRule", "GrowthRule", "Ident", "IntrusionRule", "Location",
    "LocatedErrors", "LocatedValueError", "LoiteringRule", "Mask", "MotionSettings", "MqttSection", "MqttTls",
    "NvrSource", "OneLine", "OnvifSettings", "OnvifSource", "PatrolStop", "Point", "Polygon", "RtspSource",
    "Rule", "RuleBase", "RuleUpdates", "Secret", "Sensor", "SensorBroker", "SensorLink", "StorageSection",
    "StrictModel", "TimeWindow", "Zone", "is_loopback",
]


class GatewayConfig(StrictModel):
    gateway: GatewaySection
    detector: DetectorSection
    defaults: CameraDefaults = Field(default_factory=CameraDefaults)
    cameras: list[Camera] = Field(default_factory=list)
    sensors: list[Sensor] = Field(default_factory=list)
    sensor_brokers: dict[Ident, SensorBroker] = Field(default_factory=dict)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    outputs: list[Output] = Field(default_factory=list)
    """Where alerts go (gateway.config.outputs); the top-level `mqtt:` is the first output."""
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
        problems += list(output_problems("mqtt" in config.model_fields_set, config.outputs,
                                         {camera.id for camera in config.cameras},
                                         {sensor.id for sensor in config.sensors}))
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
                    yield located(f"sensors[{index}].onvif.camera",
                                   f"not an ONVIF camera: {sensor.onvif.camera!r}", onvif_cameras)
                continue
            if sensor.broker not in self.sensor_brokers:
                yield located(f"sensors[{index}].broker", f"unknown sensor broker {sensor.broker!r}",
                               set(self.sensor_brokers))
            for position, camera_id in enumerate(sensor.link.cameras):
                if camera_id not in camera_ids:
                    yield located(f"sensors[{index}].link.cameras[{position}]",
                                   f"unknown camera {camera_id!r}", camera_ids)
        sensor_ids = {sensor.id for sensor in self.sensors}
        for camera_index, camera in enumerate(self.cameras):
            for rule_index, rule in enumerate(camera.rules):
                where = f"cameras[{camera_index}].rules[{rule_index}]"
                if rule.when_sensor is not None and rule.when_sensor not in sensor_ids:
                    yield located(f"{where}.when_sensor", f"unknown sensor {rule.when_sensor!r}", sensor_ids)
                if rule.escalate is not None and rule.escalate.sensor not in sensor_ids:
                    yield located(f"{where}.escalate.sensor", f"unknown sensor {rule.escalate.sensor!r}",
                                   sensor_ids)

    @property
    def delivery_outputs(self) -> list[Output]:
        """Every output in use, in order (the top-level `mqtt:` section first, when given)."""
        return resolve_outputs(self.mqtt, "mqtt" in self.model_fields_set, self.outputs)

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



def _raw_duplicate_ids(data: Any) -> list[LocatedValueError]:
    if not isinstance(data, dict):
        return []
    problems = []
    for section in ("cameras", "sensors"):
        items = data.get(section)
        if isinstance(items, list):
            problems += duplicates(section, [_item_id(item) for item in items])
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
