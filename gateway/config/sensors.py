"""IoT sensors (`sensors[]`) and the site brokers they publish on (`sensor_brokers:`)."""

from __future__ import annotations

from typing import Literal, Union, get_args

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Ident, LocatedValueError, OneLine, Secret, StrictModel
from gateway.config.geometry import Location
from gateway.config.mqtt import MqttTls
from gateway.config.rules import TimeWindow


SensorType = Literal["smoke", "door", "water_leak", "sos", "pir", "tamper", "generic"]
SENSOR_TYPES: tuple[str, ...] = get_args(SensorType)
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
    name: OneLine = ""
    type: SensorType = "generic"
    grid_id: OneLine = ""
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


class SensorBroker(StrictModel):
    """A site MQTT broker that sensors publish on (often a local Mosquitto beside Zigbee2MQTT)."""

    host: OneLine = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: OneLine | None = None
    password: Secret | None = None
    tls: MqttTls | None = None
    client_id: OneLine | None = Field(default=None, description="Default: gw-<gateway id>-sensors-<broker name>.")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
