"""Sensors, pure: payload mapping presets, the state machine (debounce, cooldown, schedule,
buttons, heartbeat) and sensor alerts with linked-camera evidence."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import YOLOX_NANO as YOLOX
from gateway.config.models import Camera, GatewaySection, Sensor
from gateway.events import Snapshot, validate_alert
from gateway.sensors import (
    LinkedEvidence,
    SensorAlerts,
    SensorPayloadError,
    SensorReading,
    SensorState,
    parse_payload,
)

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=TZ)


def sensor(**overrides) -> Sensor:
    base = dict(id="door-1", name="东门门磁", type="door", topic="zigbee2mqtt/door_1", format="zigbee2mqtt")
    return Sensor(**{**base, **overrides})


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize("kind, payload, active", [
    ("door", b'{"contact": false, "battery": 90}', True),
    ("door", b'{"contact": true}', False),
    ("smoke", b'{"smoke": true}', True),
    ("water_leak", b'{"water_leak": false}', False),
    ("pir", b'{"occupancy": true}', True),
    ("tamper", b'{"tamper": true}', True),
    ("sos", b'{"action": "single"}', True),
    ("sos", b'{"action": ""}', None),
    ("sos", b'{"battery": 80}', None),
])
def test_zigbee2mqtt_presets(kind, payload, active):
    reading = parse_payload(sensor(type=kind), payload)
    assert reading.active is active


def test_zigbee_reading_keeps_battery_linkquality_and_fields():
    reading = parse_payload(sensor(), b'{"contact": false, "battery": 87, "linkquality": 120, "voltage": 3000}')
    assert (reading.battery, reading.linkquality, reading.value) == (87.0, 120, False)
    assert reading.fields["voltage"] == 3000


def test_tasmota_presets():
    power = sensor(type="generic", topic="stat/pump/POWER", format="tasmota")
    assert parse_payload(power, b"ON").active is True
    assert parse_payload(power, b"OFF").active is False
    assert parse_payload(power, b'{"POWER": "ON"}').active is True
    switch = sensor(type="generic", topic="tele/pump/SENSOR", format="tasmota", field="Switch1")
    assert parse_payload(switch, b'{"Time": "2026-11-21T12:00:00", "Switch1": "ON"}').active is True
    assert parse_payload(switch, b'{"Switch1": "OFF"}').active is False


def test_json_and_plain_formats():
    js = sensor(type="smoke", format="json", field="state", active_value="alarm", topic="x/smoke")
    assert parse_payload(js, b'{"state": "ALARM"}').active is True
    assert parse_payload(js, b'{"state": "normal"}').active is False
    plain = sensor(type="generic", format="plain", topic="x/in")
    assert [parse_payload(plain, p).active for p in (b"1", b"0", b"true", b"off")] == [True, False, True, False]


@pytest.mark.parametrize("payload, reason", [
    (b"", "payload is empty"),
    (b"\xff\xfe", "payload is not UTF-8 text"),
    (b"{not json", "payload is not JSON (Expecting property name enclosed in double quotes at char 1)"),
    (b"[1, 2]", "payload is a JSON list, expected an object"),
    (b'{"battery": 80}', "field 'contact' is missing (fields: battery)"),
    (b'{"contact": "maybe"}', "field 'contact' has unexpected value 'maybe' (expected true/false, 1/0 or ON/OFF)"),
])
def test_malformed_payloads_say_why(payload, reason):
    with pytest.raises(SensorPayloadError) as caught:
        parse_payload(sensor(), payload)
    assert caught.value.reason == reason


def test_plain_unexpected_word_is_an_error():
    with pytest.raises(SensorPayloadError, match="payload has unexpected value 'banana'"):
        parse_payload(sensor(type="generic", format="plain", topic="x"), b"banana")


# --------------------------------------------------------------------------- state


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Clock:
    """Drives a SensorState with messages and one-second ticks; collects change kinds."""

    def __init__(self, s: Sensor, start: datetime = T0):
        self.start = start
        self.state = SensorState(s, TZ, 0.0, start)
        self.kinds: list[tuple[float, str]] = []

    def now(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def send(self, t: float, active: bool | None, value=None) -> None:
        changes = self.state.on_reading(SensorReading(active, value), t, self.now(t))
        self.kinds += [(t, c.kind) for c in changes]

    def run_to(self, t_end: float, t_from: float = 0.0) -> None:
        t = t_from
        while t <= t_end:
            self.kinds += [(t, c.kind) for c in self.state.tick(t, self.now(t))]
            t += 1.0


def test_debounce_needs_min_active_s():
    clock = Clock(sensor(min_active_s=3))
    clock.send(0.5, True)
    clock.send(1.5, False)  # a 1 s blip: no alert
    clock.send(2.0, True)
    clock.run_to(6, t_from=2)
    assert clock.kinds == [(5, "active")]
    clock.send(7.0, False)
    assert clock.kinds[-1] == (7.0, "inactive")


def test_cooldown_suppresses_a_new_start():
    clock = Clock(sensor(cooldown_s=30))
    clock.send(1, True)
    clock.send(2, False)
    clock.send(10, True)  # within cooldown: no start
    clock.run_to(33, t_from=10)  # the door stayed open: starts when the cooldown is over
    assert clock.kinds == [(1, "active"), (2, "inactive"), (32.0, "active")]


def test_schedule_across_midnight():
    night = sensor(schedule=["22:00-06:00"])
    evening = datetime(2026, 11, 21, 21, 59, 30, tzinfo=TZ)
    clock = Clock(night, start=evening)
    clock.send(0, True)  # 21:59:30, not armed
    assert clock.kinds == []
    clock.run_to(40)  # 22:00:00 arms it while the door is still open
    assert clock.kinds == [(30, "active")]
    morning = Clock(night, start=datetime(2026, 11, 22, 5, 59, 58, tzinfo=TZ))
    morning.send(0, True)
    morning.run_to(3)
    assert morning.kinds == [(0, "active"), (2, "inactive")]  # 06:00 disarms


def test_sos_press_is_momentary():
    clock = Clock(sensor(id="sos-1", type="sos", topic="zigbee2mqtt/sos", momentary_s=10))
    clock.send(1, True, "single")
    clock.send(2, None)  # the empty action Zigbee2MQTT sends after a press
    clock.run_to(15)
    assert clock.kinds == [(1, "active"), (11, "inactive")]
    assert clock.state.health(15)["state"] == "idle"


def test_offline_once_then_back_online():
    clock = Clock(sensor(heartbeat_s=60))
    clock.send(0, False)
    clock.run_to(200)
    assert clock.kinds == [(61, "offline")]
    clock.send(201, False)
    assert clock.kinds[-1] == (201, "online")
    assert clock.state.health(201)["online"] is True


def test_errors_count_in_health_and_keep_the_sensor_alive():
    state = SensorState(sensor(heartbeat_s=60), TZ, 0.0, T0)
    state.on_error("payload is empty", 50, at(50))
    assert state.tick(100, at(100)) == []
    health = state.health(100)
    assert (health["errors"], health["last_error"], health["state"]) == (1, "payload is empty", "unknown")


# --------------------------------------------------------------------------- alerts

GATEWAY = GatewaySection(id="gw1")
CAMERAS = [Camera(id=f"cam{i}", name=f"摄像机{i}", grid_id="G-1", source={"rtsp": "rtsp://h/s"}) for i in (1, 2)]


def snap(tag: bytes) -> Snapshot:
    return Snapshot(jpeg=b"\xff\xd8" + tag + b"\xff\xd9", width=64, height=48, taken_at=at(5))


def linked_sensor(**overrides) -> Sensor:
    return sensor(link={"cameras": ["cam1", "cam2"], "preset": "3", "pre_s": 2, "post_s": 5},
                  location={"address": "东门"},
                  severity=3, **overrides)


class Cameras:
    """The linked cameras as the live view shows them: `found` for every request, or `error`."""

    def __init__(self, found: list[LinkedEvidence] | None = None, error: Exception | None = None) -> None:
        self.found, self.error = found or [], error
        self.calls: list[tuple[list[str], float]] = []

    def linked_evidence(self, camera_ids: list[str], before_s: float = 0.0) -> list[LinkedEvidence]:
        self.calls.append((camera_ids, before_s))
        if self.error is not None:
            raise self.error
        return self.found


class Alerts:
    """Where the hub sends its alerts (the router in the gateway)."""

    def __init__(self) -> None:
        self.sent: list = []

    def route(self, messages) -> None:
        self.sent.extend(messages)


def test_sensor_alert_lifecycle_with_linked_evidence():
    cameras = Cameras([LinkedEvidence("cam2", 4, snap(b"2")), LinkedEvidence("cam1", 1, snap(b"1"))])
    calls = cameras.calls
    s = linked_sensor()
    state, alerts = SensorState(s, TZ, 0.0, T0), SensorAlerts(s, GATEWAY, CAMERAS, cameras)
    start = alerts.handle(state.on_reading(parse_payload(s, b'{"contact": false}'), 5, at(5)), 5, at(5))
    assert len(start) == 1 and calls == [(["cam1", "cam2"], 2.0)]  # the picture from pre_s before
    payload = start[0].payload
    validate_alert(payload)
    assert (payload["type"], payload["state"], payload["severity"]) == ("sensor", "start", 3)
    assert payload["title_zh"] == "传感器告警：东门门磁"
    assert (payload["camera_id"], payload["camera_name"], payload["grid_id"]) == ("cam1", "摄像机1", "G-1")
    assert payload["location"]["address"] == "东门"
    assert start[0].snapshot_jpeg == b"\xff\xd8" + b"1" + b"\xff\xd9"
    details = payload["details"]
    assert {k: details[k] for k in ("kind", "sensor_id", "sensor_type", "topic", "value", "preset")} == \
        {"kind": "trigger", "sensor_id": "door-1", "sensor_type": "door", "topic": "zigbee2mqtt/door_1",
         "value": False, "preset": "3"}
    first, second = details["linked"]
    assert (first["camera_id"], first["count"], "snapshot" in first) == ("cam1", 1, False)
    assert (second["camera_id"], second["count"], second["snapshot"]["mime"]) == ("cam2", 4, "image/jpeg")
    assert second["snapshot_taken_at"] == second["snapshot"]["taken_at"]

    post = alerts.handle(state.tick(10, at(10)), 10, at(10))
    assert calls[-1] == (["cam1", "cam2"], 0.0)  # post_s: the latest pictures
    assert [m.state for m in post] == ["update"] and post[0].payload["details"]["evidence"] == "post"
    assert all("snapshot" in entry for entry in post[0].payload["details"]["linked"])
    validate_alert(post[0].payload)

    end = alerts.handle(state.on_reading(parse_payload(s, b'{"contact": true}'), 20, at(20)), 20, at(20))
    assert [m.state for m in end] == ["end"]
    validate_alert(end[0].payload)
    assert end[0].event_id == start[0].event_id and end[0].seq == 3
    assert "snapshot" not in end[0].payload["details"]["linked"][1]


def test_offline_alert_starts_once_and_ends_when_heard():
    s = sensor(heartbeat_s=60)
    state, alerts = SensorState(s, TZ, 0.0, T0), SensorAlerts(s, GATEWAY, CAMERAS, Cameras())
    state.on_reading(SensorReading(False), 1, at(1))
    messages = []
    for t in range(2, 130):
        messages += alerts.handle(state.tick(t, at(t)), t, at(t))
    assert [m.state for m in messages] == ["start"]
    offline = messages[0].payload
    validate_alert(offline)
    assert offline["details"]["kind"] == "offline" and offline["camera_id"] is None
    assert offline["started_at"] == at(1).isoformat(timespec="milliseconds")
    back = alerts.handle(state.on_reading(SensorReading(None), 130, at(130)), 130, at(130))
    assert [m.state for m in back] == ["end"] and back[0].event_id == messages[0].event_id
    validate_alert(back[0].payload)


def test_failing_evidence_still_alerts():
    s = linked_sensor()
    alerts = SensorAlerts(s, GATEWAY, CAMERAS, Cameras(error=RuntimeError("camera gone")))
    state = SensorState(s, TZ, 0.0, T0)
    start = alerts.handle(state.on_reading(SensorReading(True, False), 1, at(1)), 1, at(1))
    validate_alert(start[0].payload)
    assert start[0].payload["snapshot"] is None
    assert [e["count"] for e in start[0].payload["details"]["linked"]] == [None, None]


# --------------------------------------------------------------------------- config cross-checks


def check(tmp_path, sensors_yaml: str, brokers_yaml: str = ""):
    from gateway.config import check_config

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    (tmp_path / "site.yaml").write_text(
        f"gateway: {{id: gw1}}\ndetector: {{model: {model}}}\n"
        "cameras:\n  - {id: cam1, source: {rtsp: 'rtsp://h/s'}}\n"
        + brokers_yaml + "sensors:\n" + sensors_yaml, encoding="utf-8")
    config, issues = check_config(tmp_path / "site.yaml", env={})
    return config, [(issue.line, issue.path, issue.message) for issue in issues]


def test_config_rejects_unknown_broker_and_linked_camera(tmp_path):
    _, issues = check(tmp_path, "  - id: d1\n    topic: z/d1\n    format: zigbee2mqtt\n    type: door\n"
                                "    broker: nope\n    link: {cameras: [cam1, ghost]}\n",
                      "sensor_brokers:\n  site: {host: 127.0.0.1}\n")
    assert issues == [
        (12, "sensors[0].broker", "unknown sensor broker 'nope' (known: site)"),
        (13, "sensors[0].link.cameras[1]", "unknown camera 'ghost' (known: cam1)"),
    ]


def test_config_mapping_errors_point_at_the_sensor(tmp_path):
    _, issues = check(tmp_path, "  - {id: d1, topic: z/d1, format: json}\n"
                                "  - {id: d2, topic: 'z/+', format: plain}\n"
                                "  - {id: d3, topic: tele/x/SENSOR, format: tasmota}\n")
    assert [(path, message) for _, path, message in issues] == [
        ("sensors[0].field", "a json sensor needs the JSON field that holds its state"),
        ("sensors[1].topic", "topic 'z/+' must be exact: one sensor, one topic, no + or # wildcards"),
        ("sensors[2].field", "a tasmota SENSOR topic needs field (e.g. Switch1)"),
    ]


def test_config_valid_sensor_defaults(tmp_path):
    config, issues = check(tmp_path, "  - {id: s1, name: 烟感, type: smoke, topic: zigbee2mqtt/s1, "
                                     "format: zigbee2mqtt}\n",
                           "sensor_brokers:\n  site: {port: 1884, password: pw}\n")
    assert issues == []
    s1 = config.sensor("s1")
    assert (s1.broker, s1.alert_severity, s1.momentary_s, s1.heartbeat_s) == ("site", 4, 10, None)
    assert config.sensor_brokers["site"].password.get_secret_value() == "pw"


def test_hub_ticks_a_button_press_to_its_end_and_counts_bad_payloads():
    from gateway.config.models import GatewayConfig
    from gateway.sensors import SensorHub

    config = GatewayConfig(
        gateway={"id": "gw1"}, detector={"model": "m.onnx"}, sensor_brokers={"site": {}},
        sensors=[{"id": "sos-1", "name": "一键报警", "type": "sos", "topic": "zigbee2mqtt/sos",
                  "format": "zigbee2mqtt", "momentary_s": 5}],
    )
    clock = [0.0]
    routed = Alerts()
    sent = routed.sent
    hub = SensorHub(config, Cameras(), routed, clock=lambda: clock[0], wall=lambda: at(clock[0]))
    hub.dispatch("sos-1", b'{"action": "single"}', at(0))
    with pytest.raises(SensorPayloadError, match="not JSON"):
        hub.dispatch("sos-1", b"{", at(1))
    for clock[0] in (1.0, 4.0, 6.0):
        hub.tick()
    assert [(m.state, m.payload["severity"]) for m in sent] == [("start", 4), ("end", 4)]
    assert hub.health()["sos-1"]["errors"] == 1
    hub.close()
    assert len(sent) == 2


def test_camera_alarm_sensors_are_checked_at_their_lines(tmp_path):
    from gateway.config import check_config

    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw}}
        detector: {{model: {YOLOX}}}
        cameras:
          - {{id: plain, source: {{rtsp: "rtsp://127.0.0.1/x"}}}}
        sensors:
          - {{id: a, onvif: {{camera: plain}}}}
          - {{id: b, name: no source}}
        """))
    config, issues = check_config(path)
    assert config is None
    assert [str(issue) for issue in issues] == [
        f"{path}:7: sensors[1].topic: a sensor needs either topic: (MQTT) or onvif: (a camera's alarm)",
    ]
    path.write_text(path.read_text().replace("  - {id: b, name: no source}\n", ""))
    config, issues = check_config(path)
    assert [str(issue) for issue in issues] == [
        f"{path}:6: sensors[0].onvif.camera: not an ONVIF camera: 'plain' (known: none)"]
