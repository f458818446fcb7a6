"""Input from the network in bulk: one line per kind of problem, never a traceback per message."""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime

import pytest

from gateway.config.models import Sensor, SensorBroker
from gateway.untrusted import PayloadError, json_object
from gateway.logs import LogLimiter
from gateway.sensors import parse_payload
from gateway.sensors.input import SensorInput
from mqtt_broker import mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from waiting import wait_until


def test_nested_json_is_a_payload_error_not_a_recursion_error():
    with pytest.raises(PayloadError, match="nested too deeply"):
        json_object(b"[" * 5000 + b"]" * 5000, 16 * 1024)
    with pytest.raises(PayloadError, match="not UTF-8"):
        json_object(b"\xff\xfe", 100)
    with pytest.raises(PayloadError, match="expected an object"):
        json_object(b"[1, 2]", 100)
    with pytest.raises(PayloadError, match="more than the 10 allowed"):
        json_object(b'{"a": "long text"}', 10)
    assert json_object('{"ok": true}', 100) == {"ok": True}


def test_log_limiter_holds_back_a_flood_and_reports_it_later(caplog):
    limiter = LogLimiter(burst=3, window_s=60)
    logger = logging.getLogger("test.flood")
    with caplog.at_level(logging.WARNING, logger="test.flood"):
        for second in range(100):
            limiter.log(logger, logging.WARNING, "ack", "bad ack %d", second, now=float(second) / 10)
        limiter.log(logger, logging.WARNING, "other", "another kind", now=10.0)
        limiter.log(logger, logging.WARNING, "ack", "bad ack again", now=61.0)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[:3] == ["bad ack 0", "bad ack 1", "bad ack 2"]
    assert lines[3] == "another kind"  # kinds are limited apart
    assert lines[4] == "bad ack again (97 more like it held back in the last 60 s)"
    assert len(lines) == 5


def test_log_limiter_quotes_at_most_a_short_prefix_of_each_argument(caplog):
    limiter = LogLimiter(burst=5, window_s=60)
    logger = logging.getLogger("test.flood")
    with caplog.at_level(logging.WARNING, logger="test.flood"):
        limiter.log(logger, logging.WARNING, "sensor:door", "bad payload %s from %s", "x" * 10_000, "door", now=0.0)
    [line] = [record.getMessage() for record in caplog.records]
    assert len(line) < 300 and line.startswith("bad payload xxx") and line.endswith("from door")
    assert "(10000 characters)" in line


def test_a_sensor_flooding_varying_errors_is_limited_by_source_and_never_copied(mosquitto, subscriber_factory,  # noqa: F811
                                                                             caplog):
    """500 payloads of 10 kB whose error text differs every time (the value is echoed in it):
    one short line per sensor per minute, every message still counted."""
    sensor = Sensor(id="door-1", name="东门门磁", type="door", topic="zigbee2mqtt/door_1", format="zigbee2mqtt")
    other = Sensor(id="door-2", name="西门门磁", type="door", topic="zigbee2mqtt/door_2", format="zigbee2mqtt")
    parsed: list[str] = []

    def dispatch(sensor_id: str, payload: bytes, _received_at: datetime) -> None:
        parse_payload(sensor if sensor_id == "door-1" else other, payload)
        parsed.append(sensor_id)

    brokers = {"site": SensorBroker(host=mosquitto.host, port=mosquitto.port)}
    sensor_input = SensorInput(brokers, [sensor, other], dispatch, gateway_id="gw1")
    sensor_input.start()
    try:
        wait_until(lambda: sensor_input.health()["site"]["connected"], what="the site broker connected")
        device = subscriber_factory(mosquitto.port, ["unused/#"])
        began = time.monotonic()
        with caplog.at_level(logging.DEBUG, logger="gateway.sensors.input"):
            for n in range(500):
                device.publish("zigbee2mqtt/door_1", {"contact": f"{n:04d}" + "x" * 10_000})
            device.publish("zigbee2mqtt/door_2", {"contact": "also wrong"})
            device.publish("zigbee2mqtt/door_1", {"contact": True})
            wait_until(lambda: "door-1" in parsed, what="the good message after the flood")
            wait_until(lambda: sensor_input.health()["site"]["sensors"]["door-2"]["errors"] == 1,
                       what="the other sensor's error")
        minutes = (time.monotonic() - began) / 60
    finally:
        sensor_input.stop()
    door = sensor_input.health()["site"]["sensors"]["door-1"]
    assert door["errors"] == 500 and len(door["last_error"]) < 300
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    flood = [line for line in lines if "东门门磁" in line]
    assert 1 <= len(flood) <= 1 + math.ceil(minutes)  # at most one line a minute from this sensor
    assert any("西门门磁" in line for line in lines)    # another sensor is not held back by it
    assert sum(len(r.getMessage()) for r in caplog.records) < 20_000  # not 5 MB: no payload copied
