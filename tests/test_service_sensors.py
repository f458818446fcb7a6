"""Sensors in `gateway run`: a site broker of their own, alerts with linked-camera evidence at the
centre's broker, and a video rule that is armed only while a door contact is open."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import VTEST, YOLOX_NANO
from gateway.events import validate_alert
from mqtt_broker import Mosquitto, Subscriber, free_port, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from onvif_device import FakeOnvifDevice, FakePreset, FakeProfile
from test_service import alerts, camera_health, start_gateway, wait_until  # noqa: F401
from test_service_onvif import onvif_camera, rtsp_server  # noqa: F401  (fixture)
from waiting import PATIENCE_S


@pytest.fixture
def site(tmp_path: Path):
    """The site's own broker, where the sensors publish (not the centre's)."""
    broker = Mosquitto(tmp_path / "site").start()
    yield broker
    broker.kill()


def write_config(path: Path, centre: Mosquitto, site: Mosquitto, data: Path) -> Path:
    path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-test, timezone: Asia/Shanghai, data_dir: {data}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{host: 127.0.0.1, port: {centre.port}, heartbeat_s: 1}}
        api: {{port: {free_port()}}}
        sensor_brokers:
          site: {{host: 127.0.0.1, port: {site.port}}}
        cameras:
          - id: yard
            name: 设备间院子
            source: {{file: {VTEST}}}
            fps: 2
            decode: all
            rules:
              - {{type: intrusion, for_s: 0, clear_s: 1, when_sensor: yard-door}}
        sensors:
          - {{id: yard-door, name: 设备间门磁, type: door, format: zigbee2mqtt,
              topic: zigbee2mqtt/yard_door, link: {{cameras: [yard], pre_s: 2}}}}
          - {{id: pump-leak, name: 泵房漏水, type: water_leak, format: tasmota,
              topic: stat/pump_leak/POWER}}
        """), encoding="utf-8")
    return path


def test_door_sensor_alert_carries_camera_evidence_and_arms_the_intrusion_rule(
        tmp_path: Path, mosquitto: Mosquitto, site: Mosquitto, subscriber_factory, start_gateway) -> None:
    centre = subscriber_factory(mosquitto.port, ["gw/#"])
    sensors = Subscriber(site.port, ["zigbee2mqtt/#"])
    gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto, site, tmp_path / "data"))
    wait_until(lambda: "yard" in (centre.received("gw/gw-test/status") and
                                  centre.received("gw/gw-test/status")[-1].json().get("cameras", {})),
               PATIENCE_S, "the camera running", gateway)
    # people walk in the yard, but the door is shut: the rule is not armed (for_s 0, 4 frames)
    inferred = (camera_health(centre, "yard") or {}).get("frames_inferred", 0)
    wait_until(lambda: (camera_health(centre, "yard") or {}).get("frames_inferred", 0) >= inferred + 4,
               PATIENCE_S, "four more analysed frames", gateway)
    assert not [a for a in alerts(centre, "yard") if a["type"] == "intrusion"]

    sensors.publish("zigbee2mqtt/yard_door", {"contact": False, "battery": 87})
    wait_until(lambda: any(a["type"] == "sensor" and a["state"] == "start" for a in alerts(centre, "yard")),
               PATIENCE_S, "the door alert", gateway)
    wait_until(lambda: any(a["type"] == "intrusion" and a["state"] == "start"
                           for a in alerts(centre, "yard")), PATIENCE_S, "the intrusion armed by the door", gateway)
    door = next(a for a in alerts(centre, "yard") if a["type"] == "sensor")
    assert door["title_zh"].startswith("传感器告警：设备间门磁")
    assert door["details"]["sensor_id"] == "yard-door" and door["snapshot"]["mime"] == "image/jpeg"
    assert door["details"]["linked"][0]["camera_id"] == "yard"
    # pre_s: 2 -> the picture shows what led up to the door opening, about 2 s before.
    lead = datetime.fromisoformat(door["started_at"]) - datetime.fromisoformat(door["snapshot"]["taken_at"])
    assert timedelta(seconds=1.2) <= lead <= timedelta(seconds=3), lead

    sensors.publish("zigbee2mqtt/yard_door", {"contact": True, "battery": 87})
    wait_until(lambda: any(a["type"] == "intrusion" and a["state"] == "end"
                           for a in alerts(centre, "yard")), PATIENCE_S, "the intrusion to end", gateway)
    wait_until(lambda: any(a["type"] == "sensor" and a["state"] == "end" for a in alerts(centre, "yard")),
               PATIENCE_S, "the door alert to end", gateway)

    sensors.publish("stat/pump_leak/POWER", "ON")
    wait_until(lambda: any(a["state"] == "start" for a in alerts(centre, "sensor-pump-leak")), 15,
               "the leak alert on its own topic (no linked camera)", gateway)
    sensors.publish("zigbee2mqtt/yard_door", "{not json")
    wait_until(lambda: "yard-door" in gateway.log() and "malformed" in gateway.log().lower(), 10,
               "the malformed payload logged with the sensor", gateway)
    for payload in alerts(centre, "yard") + alerts(centre, "sensor-pump-leak"):
        validate_alert(payload)
    assert gateway.stop() == 0
    sensors.close()


def test_sos_press_turns_the_linked_ptz_camera_to_its_preset(
        tmp_path: Path, mosquitto: Mosquitto, site: Mosquitto, subscriber_factory, start_gateway,
        rtsp_server) -> None:
    profiles = [FakeProfile("Profile_2", "subStream", 768, 576, path="/sub", ptz=True)]
    presets = [FakePreset("1", "东门"), FakePreset("2", "广场")]
    with FakeOnvifDevice(profiles=profiles, presets=presets, rtsp_port=rtsp_server.port) as device:
        centre = subscriber_factory(mosquitto.port, ["gw/#"])
        config = tmp_path / "site.yaml"
        config.write_text(textwrap.dedent(f"""\
            gateway: {{id: gw-test, data_dir: {tmp_path / 'data'}}}
            detector: {{model: {YOLOX_NANO}, threads: 1}}
            mqtt: {{port: {mosquitto.port}, heartbeat_s: 1}}
            sensor_brokers: {{site: {{port: {site.port}}}}}
            cameras:
            """) + textwrap.indent(onvif_camera("ptz", device, "Secret-1"), "  ") + textwrap.dedent("""\
            sensors:
              - {id: sos-1, name: 一键报警, type: sos, topic: zigbee2mqtt/sos_1, format: zigbee2mqtt,
                 link: {cameras: [ptz], preset: 广场}}
            """), encoding="utf-8")
        gateway = start_gateway(config)
        wait_until(lambda: (camera_health(centre, "ptz") or {}).get("state") == "streaming", 30,
                   "the PTZ camera streaming", gateway)
        button = Subscriber(site.port, ["zigbee2mqtt/#"])
        button.publish("zigbee2mqtt/sos_1", {"action": "single"})
        wait_until(lambda: [token for _profile, token in device.goto_calls] == ["2"], 15,
                   "GotoPreset to 广场 (token 2)", gateway)
        alert = next(a for a in alerts(centre, "ptz") if a["type"] == "sensor")
        assert alert["details"]["preset"] == "广场" and alert["severity"] == 4
        wait_until(lambda: "turned to preset 广场 for a linked sensor" in gateway.log(), 10,
                   "the move logged", gateway)
        assert gateway.stop() == 0
        button.close()


def test_a_cameras_alarm_input_is_a_sensor_like_any_other(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway, rtsp_server) -> None:
    """`sensors[].onvif`: the camera's digital input gets sensor state, a sensor alert with the
    camera's picture, and can arm a video rule (`when_sensor`)."""
    profiles = [FakeProfile("Profile_2", "subStream", 768, 576, path="/sub")]
    with FakeOnvifDevice(profiles=profiles, rtsp_port=rtsp_server.port) as device:
        centre = subscriber_factory(mosquitto.port, ["gw/#"])
        config = tmp_path / "site.yaml"
        config.write_text(textwrap.dedent(f"""\
            gateway: {{id: gw-test, data_dir: {tmp_path / 'data'}}}
            detector: {{model: {YOLOX_NANO}, threads: 1}}
            mqtt: {{port: {mosquitto.port}, heartbeat_s: 1}}
            cameras:
            """) + textwrap.indent(onvif_camera("gate", device, "Secret-1")
                                   + "  rules:\n    - {type: intrusion, for_s: 0, clear_s: 1, when_sensor: gate-alarm}\n",
                                   "  ") + textwrap.dedent("""\
            sensors:
              - {id: gate-alarm, name: 东门报警输入, onvif: {camera: gate, event: digital_input, input: DI_1}}
            """), encoding="utf-8")
        gateway = start_gateway(config)
        wait_until(lambda: (camera_health(centre, "gate") or {}).get("state") == "streaming", 30,
                   "the camera streaming", gateway)
        wait_until(lambda: device.live_subscriptions() > 0, PATIENCE_S, "a PullPoint subscription", gateway)
        inferred = camera_health(centre, "gate")["frames_inferred"]
        wait_until(lambda: camera_health(centre, "gate")["frames_inferred"] >= inferred + 3, PATIENCE_S,
                   "three more analysed frames with the input idle", gateway)
        assert not alerts(centre, "gate"), "the intrusion rule fired while the alarm input was idle"

        device.push_event("tns1:Device/Trigger/DigitalInput", {"LogicalState": "true"}, {"InputToken": "DI_1"})
        wait_until(lambda: any(a["type"] == "sensor" and a["state"] == "start" for a in alerts(centre, "gate")),
                   PATIENCE_S, "the alarm input's sensor alert", gateway)
        wait_until(lambda: any(a["type"] == "intrusion" and a["state"] == "start" for a in alerts(centre, "gate")),
                   PATIENCE_S, "the intrusion armed by the alarm input", gateway)
        alarm = next(a for a in alerts(centre, "gate") if a["type"] == "sensor")
        assert alarm["details"]["topic"] == "onvif:gate/digital_input/DI_1"
        assert alarm["details"]["linked"][0]["camera_id"] == "gate" and alarm["snapshot"] is not None
        beat = centre.received("gw/gw-test/status")[-1].json()
        assert beat["sensors"]["gate-alarm"]["state"] == "active"

        device.push_event("tns1:Device/Trigger/DigitalInput", {"LogicalState": "false"}, {"InputToken": "DI_1"})
        wait_until(lambda: any(a["type"] == "sensor" and a["state"] == "end" for a in alerts(centre, "gate")),
                   PATIENCE_S, "the alarm input's alert to end", gateway)
        assert not any(a["type"] == "camera_tamper" for a in alerts(centre, "gate"))
        for payload in alerts(centre, "gate"):
            validate_alert(payload)
        assert gateway.stop() == 0
