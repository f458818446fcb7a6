"""Sensor input against a real Mosquitto as the site broker: delivery, bad payloads, outages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from gateway.backoff import Backoff
from gateway.config.models import Sensor, SensorBroker
from gateway.sensors import SensorReading, parse_payload
from gateway.sensors.input import SensorInput
from mqtt_broker import mosquitto, subscriber_factory  # noqa: F401
from waiting import PATIENCE_S, wait_until

SENSORS = [
    Sensor(id="door-1", name="东门门磁", type="door", topic="zigbee2mqtt/door_1", format="zigbee2mqtt"),
    Sensor(id="pump-1", name="泵房水浸", type="water_leak", topic="stat/pump/POWER", format="tasmota"),
    Sensor(id="sos-1", name="一键报警", type="sos", topic="zigbee2mqtt/sos_1", format="zigbee2mqtt"),
]


class Collector:
    """The service's role: parse in the dispatch callback (raising on bad payloads), record."""

    def __init__(self, block: str | None = None):
        self.readings: list[tuple[str, SensorReading]] = []
        self.cond = threading.Condition()
        self.block = block
        self.release = threading.Event()

    def __call__(self, sensor_id: str, payload: bytes, received_at: datetime) -> None:
        assert received_at.tzinfo is not None
        sensor = next(s for s in SENSORS if s.id == sensor_id)
        reading = parse_payload(sensor, payload)
        with self.cond:
            self.readings.append((sensor_id, reading))
            self.cond.notify_all()

    def wait(self, predicate: Callable[[list[tuple[str, SensorReading]]], bool], timeout: float = PATIENCE_S) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.readings), timeout)


def fast_backoff() -> Backoff:
    return Backoff(min_s=0.1, max_s=0.5)


@pytest.fixture
def site(mosquitto):  # noqa: F811
    collector = Collector()
    brokers = {"site": SensorBroker(host=mosquitto.host, port=mosquitto.port)}
    sensor_input = SensorInput(brokers, SENSORS, collector, gateway_id="gw1", backoff=fast_backoff)
    sensor_input.start()
    wait_until(lambda: sensor_input.health()["site"]["connected"], what="the site broker connected")
    yield sensor_input, collector
    sensor_input.stop()


def test_zigbee_and_tasmota_payloads_reach_the_callback(site, mosquitto, subscriber_factory):  # noqa: F811
    sensor_input, collector = site
    device = subscriber_factory(mosquitto.port, ["unused/#"])
    device.publish("zigbee2mqtt/door_1", {"contact": False, "battery": 87, "linkquality": 120})
    device.publish("stat/pump/POWER", "ON")
    device.publish("zigbee2mqtt/sos_1", {"action": "single", "battery": 55})
    assert collector.wait(lambda r: len(r) == 3), collector.readings
    got = dict(collector.readings)
    assert got["door-1"].active is True and got["door-1"].battery == 87 and got["door-1"].linkquality == 120
    assert got["pump-1"].active is True and got["pump-1"].value == "ON"
    assert got["sos-1"].active is True and got["sos-1"].value == "single"
    health = sensor_input.health()["site"]
    assert health["messages"] == 3 and health["errors"] == 0


def test_malformed_payload_is_counted_and_the_next_good_one_arrives(site, mosquitto, subscriber_factory,  # noqa: F811
                                                                   caplog):
    sensor_input, collector = site
    device = subscriber_factory(mosquitto.port, ["unused/#"])
    with caplog.at_level("WARNING", logger="gateway.sensors.input"):
        device.publish("zigbee2mqtt/door_1", b"{not json")
        device.publish("zigbee2mqtt/door_1", {"contact": True})
        assert collector.wait(lambda r: len(r) == 1)
    assert collector.readings[0] == ("door-1", collector.readings[0][1]) and collector.readings[0][1].active is False
    door = sensor_input.health()["site"]["sensors"]["door-1"]
    assert door["errors"] == 1 and door["messages"] == 2
    assert door["last_error"].startswith("malformed payload: payload is not JSON")
    assert any("东门门磁" in r.getMessage() and "not JSON" in r.getMessage() for r in caplog.records)


def test_a_flood_of_deeply_nested_payloads_is_counted_in_one_log_line(site, mosquitto, subscriber_factory,  # noqa: F811
                                                                      caplog):
    sensor_input, collector = site
    device = subscriber_factory(mosquitto.port, ["unused/#"])
    with caplog.at_level("DEBUG", logger="gateway.sensors.input"):
        for _ in range(300):
            device.publish("zigbee2mqtt/door_1", b"[" * 5000 + b"]" * 5000)
        device.publish("zigbee2mqtt/door_1", {"contact": True})
        assert collector.wait(lambda r: len(r) == 1)
    door = sensor_input.health()["site"]["sensors"]["door-1"]
    assert door["errors"] == 300 and door["last_error"] == "malformed payload: payload is JSON nested too deeply"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and not any(r.exc_info for r in caplog.records)


def test_broker_restart_reconnects_and_receives_again(site, mosquitto, subscriber_factory, caplog):  # noqa: F811
    sensor_input, collector = site
    with caplog.at_level("INFO", logger="gateway.sensors.input"):
        mosquitto.stop()
        wait_until(lambda: sensor_input.health()["site"]["state"] == "down", what="the link down")
        # several failed attempts: logged once, not per attempt
        wait_until(lambda: sensor_input.health()["site"]["failures"] >= 3, what="three failed reconnects")
        health = sensor_input.health()["site"]
        assert health["connected"] is False and health["last_error"]
        mosquitto.start()
        wait_until(lambda: sensor_input.health()["site"]["connected"])
    down_lines = [r for r in caplog.records if r.levelname == "WARNING" and "sensor broker site" in r.getMessage()]
    assert 1 <= len(down_lines) <= 2, [r.getMessage() for r in down_lines]
    assert "retrying in" in down_lines[0].getMessage()
    device = subscriber_factory(mosquitto.port, ["unused/#"])
    device.publish("stat/pump/POWER", "OFF")
    assert collector.wait(lambda r: ("pump-1", SensorReading(False, "OFF")) in r)


def test_two_sensors_on_one_broker_and_a_down_broker_do_not_block_each_other(mosquitto, tmp_path, subscriber_factory):  # noqa: F811
    """Two sensors on one broker both arrive; a second broker that is down delays nobody."""
    collector = Collector()
    sensors = SENSORS + [Sensor(id="far-1", name="远端", topic="far/1", format="plain", broker="far")]
    brokers = {"site": SensorBroker(host=mosquitto.host, port=mosquitto.port),
               "far": SensorBroker(host="127.0.0.1", port=1, username="u", password="s3cret-pw")}
    sensor_input = SensorInput(brokers, sensors, collector, gateway_id="gw1", backoff=fast_backoff)
    sensor_input.start()
    try:
        wait_until(lambda: sensor_input.health()["site"]["connected"])
        device = subscriber_factory(mosquitto.port, ["unused/#"])
        for index in range(5):
            device.publish("zigbee2mqtt/door_1", {"contact": index % 2 == 0})
            device.publish("stat/pump/POWER", "ON" if index % 2 else "OFF")
        assert collector.wait(lambda r: len(r) == 10)
        assert [s for s, _ in collector.readings].count("door-1") == 5
        far = sensor_input.health()["far"]
        assert far["connected"] is False and "s3cret" not in str(far)
    finally:
        sensor_input.stop()


def test_hub_turns_a_real_door_message_into_a_sensor_alert(mosquitto, subscriber_factory):  # noqa: F811
    """The service's wiring: SensorInput → SensorHub.dispatch → alert with linked evidence."""
    from gateway.config.models import Camera, GatewayConfig
    from gateway.events import Snapshot, validate_alert
    from gateway.sensors import LinkedEvidence, SensorHub

    config = GatewayConfig(
        gateway={"id": "gw1"}, detector={"model": "m.onnx"},
        cameras=[Camera(id="cam1", name="东门", source={"rtsp": "rtsp://h/s"})],
        sensor_brokers={"site": {"host": mosquitto.host, "port": mosquitto.port}},
        sensors=[{"id": "door-1", "name": "东门门磁", "type": "door", "topic": "zigbee2mqtt/door_1",
                  "format": "zigbee2mqtt", "link": {"cameras": ["cam1"]}}],
    )
    picture = Snapshot(b"\xff\xd8jpeg\xff\xd9", 64, 48, datetime.now().astimezone())
    messages, cond = [], threading.Condition()

    class Cameras:  # the live view's side the sensors read
        def linked_evidence(self, camera_ids, before_s=0.0):
            return [LinkedEvidence(camera_id, 2, picture) for camera_id in camera_ids]

    class Router:  # where the alerts go
        def route(self, routed):
            with cond:
                messages.extend(routed)
                cond.notify_all()

    hub = SensorHub(config, Cameras(), Router())
    sensor_input = SensorInput(config.sensor_brokers, config.sensors, hub.dispatch, "gw1", backoff=fast_backoff)
    sensor_input.start()
    try:
        wait_until(lambda: sensor_input.health()["site"]["connected"])
        device = subscriber_factory(mosquitto.port, ["unused/#"])
        device.publish("zigbee2mqtt/door_1", b"garbage")
        device.publish("zigbee2mqtt/door_1", {"contact": False})
        device.publish("zigbee2mqtt/door_1", {"contact": True})
        with cond:
            assert cond.wait_for(lambda: len(messages) == 2, PATIENCE_S)
        assert [m.state for m in messages] == ["start", "end"]
        for message in messages:
            validate_alert(message.payload)
        assert messages[0].payload["details"]["linked"][0]["count"] == 2
        assert messages[0].snapshot_jpeg == picture.jpeg
        assert hub.health()["door-1"]["errors"] == 1
        assert sensor_input.health()["site"]["sensors"]["door-1"]["errors"] == 1
    finally:
        sensor_input.stop()


def test_refused_credentials_are_reported_without_the_password(tmp_path, caplog):
    from mqtt_broker import Mosquitto

    broker = Mosquitto(tmp_path / "auth", users={"gateway": "right-pw"}).start()
    try:
        brokers = {"site": SensorBroker(host=broker.host, port=broker.port, username="gateway",
                                        password="wrong-pw-123")}
        sensor_input = SensorInput(brokers, SENSORS, Collector(), "gw1", backoff=fast_backoff)
        with caplog.at_level("DEBUG", logger="gateway.sensors.input"):
            sensor_input.start()
            try:
                wait_until(lambda: (sensor_input.health()["site"]["last_error"] or "").startswith(
                    "broker refused"), what="the refusal")
                failures = sensor_input.health()["site"]["failures"]
                wait_until(lambda: sensor_input.health()["site"]["failures"] >= failures + 2,
                           what="two more refused attempts")
            finally:
                sensor_input.stop()
        health = sensor_input.health()["site"]
        assert health["connected"] is False and "refused" in health["last_error"]
        assert "wrong-pw-123" not in caplog.text + str(health)
        assert sum("broker refused" in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 1
    finally:
        broker.kill()
