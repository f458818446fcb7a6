"""All configured sensors behind one small API: the glue the service wires to SensorInput.

`dispatch` is SensorInput's callback (it runs in a site broker's network thread): it parses the
payload, steps the sensor's state and emits any alert at once, so a door opening reaches the
outbox without waiting for the next tick. `tick` (once a second, service thread) advances
debounce, button timeouts, schedules, heartbeats and follow-up evidence. One lock per sensor:
two brokers' threads never wait for each other, and the service's tick waits only briefly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config.models import GatewayConfig, Sensor
from gateway.events import AlertPath
from gateway.sensors.alerts import LinkedCameras, SensorAlerts
from gateway.sensors.mapping import SensorPayloadError, SensorReading, parse_payload
from gateway.sensors.state import SensorChange, SensorState


class _Unit:
    def __init__(self, sensor: Sensor, state: SensorState, alerts: SensorAlerts):
        self.sensor, self.state, self.alerts = sensor, state, alerts
        self.lock = threading.Lock()


class SensorHub:
    def __init__(self, config: GatewayConfig, cameras: LinkedCameras, alerts: AlertPath,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] | None = None):
        """`cameras`: the linked cameras' evidence (the live view). `alerts`: where the alerts go
        (must be thread-safe; called from broker threads and the tick). `clock`: monotonic
        seconds; `wall`: aware now (gateway time zone)."""
        zone = ZoneInfo(config.gateway.timezone)
        self.clock = clock
        self.wall = wall or (lambda: datetime.now(zone))
        self.alerts = alerts
        t, now = self.clock(), self.wall()
        self.units = {
            sensor.id: _Unit(sensor, SensorState(sensor, zone, t, now),
                             SensorAlerts(sensor, config.gateway, config.cameras, cameras))
            for sensor in config.sensors
        }

    def dispatch(self, sensor_id: str, payload: bytes, received_at: datetime) -> None:
        """SensorInput's callback. A bad payload is counted here and re-raised (SensorPayloadError,
        a ValueError) so the input logs it with the sensor's name and counts it per broker."""
        unit = self.units.get(sensor_id)
        if unit is None:
            return
        with unit.lock:
            t, now = self.clock(), self.wall()
            try:
                reading = parse_payload(unit.sensor, payload)
            except SensorPayloadError as error:
                self._emit(unit, unit.state.on_error(error.reason, t, now), t, now)
                raise
            self._emit(unit, unit.state.on_reading(reading, t, now), t, now)

    def observe(self, sensor_id: str, active: bool, value: object = None) -> None:
        """A camera's own alarm (an ONVIF event) for a sensor declared with `onvif:`: the same
        state, debounce, health and alerts as an MQTT sensor, without a payload to parse."""
        unit = self.units.get(sensor_id)
        if unit is None:
            return
        with unit.lock:
            t, now = self.clock(), self.wall()
            reading = SensorReading(active=active, value=value)
            self._emit(unit, unit.state.on_reading(reading, t, now), t, now)

    def tick(self) -> None:
        """Time passing for every sensor; call about once a second."""
        for unit in self.units.values():
            with unit.lock:
                t, now = self.clock(), self.wall()
                self._emit(unit, unit.state.tick(t, now), t, now)

    def close(self) -> None:
        """End open sensor alerts (service shutdown); the messages go to `emit` as usual."""
        for unit in self.units.values():
            with unit.lock:
                t, now = self.clock(), self.wall()
                self.alerts.route(unit.alerts.close_all(t, now))

    def health(self) -> dict[str, dict[str, Any]]:
        t = self.clock()
        result = {}
        for sensor_id, unit in self.units.items():
            with unit.lock:
                result[sensor_id] = unit.state.health(t)
        return result

    def active_states(self) -> dict[str, bool]:
        """Sensor id -> reporting active right now, for video rules conditioned on a sensor."""
        return {sensor_id: health["state"] == "active" for sensor_id, health in self.health().items()}

    def _emit(self, unit: _Unit, changes: list[SensorChange], t: float, now: datetime) -> None:
        self.alerts.route(unit.alerts.handle(changes, t, now))
