"""`gateway run` with an ONVIF camera: the stream URI comes from the device, the camera's own
tamper alarm becomes a `camera_tamper` alert, and a wrong password is reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest
from mqtt_broker import Mosquitto
from mqtt_broker import mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from onvif_device import FakeOnvifDevice, FakePreset, FakeProfile
from rtsp_fixtures import RtspServer, transcode_h264
from waiting import PATIENCE_S
from test_service import alerts, camera_health, start_gateway, wait_until, write_config  # noqa: F401

from conftest import VTEST
from gateway.events import validate_alert

TAMPER = "tns1:VideoSource/GlobalSceneChange/ImagingService"


def onvif_camera(camera_id: str, device: FakeOnvifDevice, password: str) -> str:
    return f"""\
- id: {camera_id}
  name: 东门{camera_id}
  source: {{onvif: {{host: 127.0.0.1, port: {device.port}, user: admin, password: "{password}"}}}}
  fps: 1
"""


@pytest.fixture(scope="module")
def rtsp_server():
    server = RtspServer({"/sub": transcode_h264(VTEST, fps=10, gop=10, frames=200)}).start()
    yield server
    server.stop()


def test_onvif_camera_streams_and_its_tamper_alarm_becomes_an_alert(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway, rtsp_server) -> None:
    profiles = [FakeProfile("Profile_2", "subStream", 768, 576, path="/sub")]
    with FakeOnvifDevice(password="Secret-1", profiles=profiles, rtsp_port=rtsp_server.port) as device:
        sub = subscriber_factory(mosquitto.port, ["gw/#"])
        config = write_config(tmp_path / "site.yaml", mosquitto.port,
                              onvif_camera("gate", device, "Secret-1"), tmp_path / "data")
        gateway = start_gateway(config)
        wait_until(lambda: (camera_health(sub, "gate") or {}).get("state") == "streaming", 30,
                   "the ONVIF camera streaming", gateway)
        wait_until(lambda: device.live_subscriptions() > 0, PATIENCE_S, "a PullPoint subscription", gateway)

        device.push_event(TAMPER, {"State": "true"}, {"VideoSourceConfigurationToken": "VSC_1"})
        wait_until(lambda: any(a["type"] == "camera_tamper" and a["state"] == "start"
                               for a in alerts(sub, "gate")), PATIENCE_S, "camera_tamper start", gateway)
        device.push_event(TAMPER, {"State": "false"}, {"VideoSourceConfigurationToken": "VSC_1"})
        wait_until(lambda: any(a["type"] == "camera_tamper" and a["state"] == "end"
                               for a in alerts(sub, "gate")), PATIENCE_S, "camera_tamper end", gateway)
        start = next(a for a in alerts(sub, "gate") if a["state"] == "start")
        validate_alert(start)
        assert start["details"]["topic"].endswith("GlobalSceneChange/ImagingService")
        assert start["title_zh"].startswith("摄像机遮挡/破坏：东门gate")
        assert gateway.stop() == 0
        log = gateway.log()
        assert "ONVIF Acme IPC-2000, profile subStream" in log and "Secret-1" not in log


def test_onvif_camera_with_a_wrong_password_is_reported_and_retried(
        tmp_path: Path, mosquitto: Mosquitto, start_gateway) -> None:
    with FakeOnvifDevice(password="Secret-1") as device:
        config = write_config(tmp_path / "site.yaml", mosquitto.port,
                              onvif_camera("gate", device, "wrong-pass"), tmp_path / "data")
        gateway = start_gateway(config)
        wait_until(lambda: gateway.log().count("cannot resolve the stream address") >= 3, PATIENCE_S,
                   "three failed attempts with backoff", gateway)  # (wait_until fails if it exits)
        log = gateway.log()
        assert "NotAuthorized" in log or "credentials" in log or "not authorized" in log.lower()
        assert "wrong-pass" not in log
        assert gateway.stop() == 0


def test_ptz_patrol_moves_between_presets_and_alerts_per_stop(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway, rtsp_server) -> None:
    profiles = [FakeProfile("Profile_2", "subStream", 768, 576, path="/sub", ptz=True)]
    presets = [FakePreset("1", "东门"), FakePreset("2", "广场")]
    with FakeOnvifDevice(profiles=profiles, presets=presets, rtsp_port=rtsp_server.port) as device:
        sub = subscriber_factory(mosquitto.port, ["gw/#"])
        camera = onvif_camera("ptz", device, "Secret-1") + """\
  resolution: [768, 576]
  zones:
    - {id: gate, polygon: [[0, 0], [768, 0], [768, 576], [0, 576]]}
    - {id: square, polygon: [[0, 0], [768, 0], [768, 576], [0, 576]]}
  rules:
    - {type: intrusion, zone: gate, for_s: 0, clear_s: 1}
    - {type: intrusion, zone: square, for_s: 0, clear_s: 1}
  patrol:
    - {preset: 东门, dwell_s: 4, settle_s: 0.5, zones: [gate]}
    - {preset: "2", dwell_s: 4, settle_s: 0.5, zones: [square]}
"""
        gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto.port, camera,
                                             tmp_path / "data"))

        def messages(preset: str, state: str) -> list[dict]:
            return [a for a in alerts(sub, "ptz")
                    if a["state"] == state and (a.get("details") or {}).get("preset") == preset]

        wait_until(lambda: messages("东门", "start"), PATIENCE_S, "an intrusion at the first stop", gateway)
        wait_until(lambda: messages("2", "start"), PATIENCE_S, "an intrusion at the second stop", gateway)
        first = messages("东门", "start")[0]
        assert first["zone_id"] == "gate" and first["type"] == "intrusion"
        assert messages("2", "start")[0]["zone_id"] == "square"
        # The first stop's event ended when the camera left for the second stop.
        ended = [a for a in messages("东门", "end") if a["event_id"] == first["event_id"]]
        assert ended and ended[0]["ended_at"] <= messages("2", "start")[0]["started_at"]
        assert [token for _profile, token in device.goto_calls][:2] == ["1", "2"]
        for payload in alerts(sub, "ptz"):
            validate_alert(payload)
        assert gateway.stop() == 0
