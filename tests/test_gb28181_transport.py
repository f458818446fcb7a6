"""The GB/T 28181 output's catalogue and alarm channels from a real configuration (cameras,
sensors, the gateway's own alarms), without sockets: what a platform is told and where each
alert's alarm is raised."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.config.gb28181 import Gb28181Output
from gateway.config.models import Camera
from gateway.config.sensors import Sensor
from gateway.events.payload import AlertSource, AlertSubject, Reading, Stamp, build_payload
from gateway.outputs.gb28181.transport import Gb28181Transport, alarm_channel

SETTINGS = Gb28181Output.model_validate({
    "host": "127.0.0.1", "platform_id": "34020000002000000001", "device_id": "34020000001180000001",
    "password": "s3cret", "channels": {"gate": "34020000001320000001", "smoke-1": "34020000001340000007"}})
CAMERAS = [Camera.model_validate({"id": "gate", "name": "东门", "source": {"rtsp": "rtsp://127.0.0.1/gate"}}),
           Camera.model_validate({"id": "yard", "name": "后院", "source": {"rtsp": "rtsp://127.0.0.1/yard"}})]
SENSORS = [Sensor.model_validate({"id": "smoke-1", "name": "配电房烟感", "type": "smoke", "topic": "z2m/smoke1",
                                  "format": "zigbee2mqtt",
                                  "location": {"address": "东城路 1 号配电房", "lat": 31.3, "lon": 118.4}}),
           Sensor.model_validate({"id": "door-1", "type": "door", "topic": "z2m/door1", "format": "zigbee2mqtt",
                                  "link": {"cameras": ["gate"]}})]


def payload(alert_type: str, camera_id: str | None, details: dict | None = None) -> dict:
    moment = datetime(2026, 11, 21, 20, 26, 29, tzinfo=UTC)
    return build_payload(
        AlertSource(gateway_id="gw1", camera_id=camera_id, camera_name="", grid_id=""),
        AlertSubject(type=alert_type, severity=3, place="东门", details=details),
        Stamp(event_id="e1", seq=1, state="start", started_at=moment, updated_at=moment, ended_at=None,
              peak_count=None),
        Reading(count=None), None)


def test_the_catalogue_lists_cameras_sensors_as_alarm_inputs_and_the_alarm_channel():
    transport = Gb28181Transport(SETTINGS, cameras=CAMERAS, sensors=SENSORS, gateway_name="东城网关",
                                 camera_online=lambda camera_id: False)
    gate, smoke, own = transport.catalogue()
    assert (gate.channel_id, gate.name, gate.camera_id, gate.online) == ("34020000001320000001", "东门", "gate", False)
    assert (smoke.channel_id, smoke.name, smoke.camera_id) == ("34020000001340000007", "配电房烟感", None)
    assert (smoke.address, smoke.latitude, smoke.longitude, smoke.model) == ("东城路 1 号配电房", 31.3, 118.4,
                                                                           "smoke sensor")
    assert (own.channel_id, own.name, own.camera_id) == ("34020000001340000001", "东城网关 告警", None)
    transport.close()


def test_each_alert_is_raised_on_a_catalogue_channel():
    assert alarm_channel(SETTINGS, payload("gathering", "gate")) == "34020000001320000001"
    assert alarm_channel(SETTINGS, payload("gathering", "yard")) == "34020000001340000001"  # no channel: the alarm one
    assert alarm_channel(SETTINGS, payload("disk_full", None)) == "34020000001340000001"
    assert alarm_channel(SETTINGS, payload("sensor", None, {"sensor_id": "smoke-1"})) == "34020000001340000007"
    assert alarm_channel(SETTINGS, payload("sensor", "gate", {"sensor_id": "door-1"})) == "34020000001320000001"
    assert alarm_channel(SETTINGS, payload("sensor", None, {"sensor_id": "pir-9"})) == "34020000001340000001"
