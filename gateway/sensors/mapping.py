"""Raw sensor payloads → `SensorReading`, or a `SensorPayloadError` that says why not.

Ready-made mappings spare installers from knowing each ecosystem's payloads:
- Zigbee2MQTT publishes the device state as one JSON object on `zigbee2mqtt/<name>`; the field
  depends on the type (door → `contact`, which is *false* when the door is open; sos → `action`,
  where any non-empty action is a press).
- Tasmota publishes plain `ON`/`OFF` on `stat/<name>/POWER`, JSON such as `{"POWER": "ON"}` on
  stat/<name>/RESULT and `{"Switch1": "ON", ...}` on `tele/<name>/SENSOR`.
- `json`: any JSON object, with the configured field; `plain`: the payload is the value.
Pure: bytes in, a reading out; the caller logs the error with the sensor's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gateway.config.models import Sensor
from gateway.logs import clip, quoted
from gateway.untrusted import PayloadError, json_object

ZIGBEE_FIELDS = {"door": "contact", "smoke": "smoke", "water_leak": "water_leak", "pir": "occupancy",
                 "sos": "action", "tamper": "tamper"}
ZIGBEE_ACTIVE = {"door": False}
"""Zigbee2MQTT values meaning 'active' where it is not `true`: a contact is false when open."""
TRUE_WORDS = frozenset({"1", "on", "true", "active", "alarm", "open", "yes"})
FALSE_WORDS = frozenset({"0", "off", "false", "inactive", "normal", "closed", "no"})
MAX_PAYLOAD = 64 * 1024
PRESS = object()
"""`active_value` of momentary sensors without one: any non-empty value is a press."""


class SensorPayloadError(ValueError):
    """A payload that cannot be read; `reason` is the operator-facing explanation."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SensorReading:
    """What one message says. active=None: no state in it (a heartbeat, an empty action)."""

    active: bool | None
    value: Any = None
    battery: float | None = None
    linkquality: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mapping:
    """The effective mapping after defaults: field None means the payload itself is the value."""

    field: str | None
    active_value: Any


def resolved_mapping(sensor: Sensor) -> Mapping:
    """Apply the format's and type's defaults to what the installer wrote."""
    active: object = sensor.active_value  # a scalar, or the PRESS sentinel
    if sensor.format == "zigbee2mqtt":
        if active is None:
            active = PRESS if sensor.momentary else ZIGBEE_ACTIVE.get(sensor.type, True)
        return Mapping(sensor.field or ZIGBEE_FIELDS[sensor.type], active)
    if sensor.format == "tasmota":
        power_topic = sensor.topic is not None and sensor.topic.endswith("/POWER")
        return Mapping(sensor.field or (None if power_topic else "POWER"), "ON" if active is None else active)
    if sensor.format == "json":
        return Mapping(sensor.field, PRESS if active is None and sensor.momentary else active)
    return Mapping(None, PRESS if active is None and sensor.momentary else active)


def parse_payload(sensor: Sensor, payload: bytes) -> SensorReading:
    """One MQTT payload → reading; raises SensorPayloadError with the reason."""
    mapping = resolved_mapping(sensor)
    text = _text(payload)
    name = mapping.field
    if name is None and sensor.format == "tasmota" and text.lstrip().startswith("{"):
        name = "POWER"  # stat/<name>/RESULT style {"POWER": "ON"} on a POWER-configured input
    if name is None:
        return SensorReading(_active(text.strip(), mapping.active_value), text.strip())
    fields = _json_object(text)
    if name not in fields:
        if sensor.momentary:
            return _reading(None, None, fields)  # a button's status report without a press
        raise SensorPayloadError(f"field {name!r} is missing (fields: {clip(', '.join(sorted(fields))) or 'none'})")
    value = fields[name]
    return _reading(_active(value, mapping.active_value, name), value, fields)


def _text(payload: bytes) -> str:
    if not payload.strip():
        raise SensorPayloadError("payload is empty")
    if len(payload) > MAX_PAYLOAD:
        raise SensorPayloadError(f"payload is {len(payload)} bytes (limit {MAX_PAYLOAD})")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise SensorPayloadError("payload is not UTF-8 text") from None


def _json_object(text: str) -> dict[str, Any]:
    try:
        return json_object(text, MAX_PAYLOAD)
    except PayloadError as error:
        raise SensorPayloadError(str(error)) from None


def _reading(active: bool | None, value: Any, fields: dict[str, Any]) -> SensorReading:
    return SensorReading(active, value, _number(fields.get("battery")), _int(fields.get("linkquality")), fields)


def _active(value: Any, active_value: Any, name: str | None = None) -> bool | None:
    """Compare with the value meaning active; without one, read booleans and ON/OFF words."""
    where = f"field {name!r}" if name else "payload"
    if active_value is PRESS:
        if value is None or value == "":
            return None
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return True
        raise SensorPayloadError(f"{where} has unexpected value {quoted(value)} (expected a button action)")
    if isinstance(active_value, bool):
        return _active(value, None, name) == active_value  # e.g. a Zigbee contact: false = open
    if active_value is not None:
        if isinstance(value, (dict, list)) or value is None:
            raise SensorPayloadError(f"{where} has unexpected value {quoted(value)} (expected a scalar)")
        return _same(value, active_value)
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SensorPayloadError(f"{where} has unexpected value {quoted(value)} (expected true/false, 1/0 or ON/OFF)")


def _same(value: Any, active_value: Any) -> bool:
    """'ON' matches 'on', 1 matches '1': payloads and YAML rarely agree on case or type."""
    return str(value).strip().lower() == str(active_value).strip().lower()


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None
