"""IoT sensors over MQTT: payload mapping, per-sensor state, and sensor alerts with linked video.

Pure logic only; the site-broker client lives in gateway.sensors.input. Data flows
payload bytes → `parse_payload` → `SensorState` (debounce, presses, cooldown, schedule,
heartbeat) → `SensorAlerts` (lifecycle messages carrying the linked cameras' evidence);
`SensorHub` holds one of each per configured sensor and is what the service wires in.
"""

from gateway.sensors.alerts import LinkedCameras, LinkedEvidence, SensorAlerts
from gateway.sensors.hub import SensorHub
from gateway.sensors.mapping import SensorPayloadError, SensorReading, parse_payload, resolved_mapping
from gateway.sensors.state import SensorChange, SensorState

__all__ = [
    "LinkedCameras",
    "LinkedEvidence",
    "SensorAlerts",
    "SensorChange",
    "SensorHub",
    "SensorPayloadError",
    "SensorReading",
    "SensorState",
    "parse_payload",
    "resolved_mapping",
]
