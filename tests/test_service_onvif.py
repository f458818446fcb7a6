"""`gateway run` with an ONVIF camera: the stream URI comes from the device, the camera's own
tamper alarm becomes a `camera_tamper` alert, a wrong password is reported, not fatal, and a PTZ
patrol never stops silently (refused credentials, a head that does not move, a camera outage)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from conftest import VTEST
from gateway.config import load_config
from gateway.events import validate_alert
from gateway.runtime.service import GatewayService
from mqtt_broker import Mosquitto, free_port, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from onvif_device import FakeOnvifDevice, FakePreset, FakeProfile
from rtsp_fixtures import RtspServer, transcode_h264
from test_service import alerts, camera_health, start_gateway, wait_until, write_config  # noqa: F401
from waiting import PATIENCE_S

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
        assert start["title_zh"] == "摄像机遮挡/破坏：东门gate"  # no "0人": nobody is counted here
        assert start["snapshot"] is not None and start["snapshot"]["width"] == 768  # what it saw then
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
        wait_until(lambda: messages("广场", "start"), PATIENCE_S, "an intrusion at the second stop", gateway)
        first = messages("东门", "start")[0]
        assert first["zone_id"] == "gate" and first["type"] == "intrusion"
        # `preset: "2"` in the config is the camera's preset 广场 (token 2): the alert says so.
        second = messages("广场", "start")[0]
        assert second["zone_id"] == "square"
        assert (second["details"]["preset_token"], second["details"]["patrol_stop"]) == ("2", 1)
        assert (first["details"]["preset_token"], first["details"]["patrol_stop"]) == ("1", 0)
        # The first stop's event ended when the camera left for the second stop.
        ended = [a for a in messages("东门", "end") if a["event_id"] == first["event_id"]]
        assert ended and ended[0]["ended_at"] <= second["started_at"]
        assert [token for _profile, token in device.goto_calls][:2] == ["1", "2"]
        for payload in alerts(sub, "ptz"):
            validate_alert(payload)
        assert gateway.stop() == 0


# --------------------------------------------------------------------------- PTZ patrol faults

NUMBERED = [FakePreset(f"PresetToken_{n}", f"Preset {n}", 0.2 * n, -0.1 * n, 0.1 * n) for n in (1, 2)]
"""A camera whose tokens are PresetToken_N (what `preset: 1` must find)."""


def patrol_camera(device: FakeOnvifDevice, stops: str, clear_s: float = 1, offline_after_s: float = 600,
                  **extra: float) -> str:
    """The ONVIF PTZ camera `ptz` with two full-frame zones, an instant intrusion rule per zone,
    and the given patrol."""
    keys = "".join(f"  {key}: {value}\n" for key, value in extra.items())
    return onvif_camera("ptz", device, "Secret-1") + f"""\
  resolution: [768, 576]
  offline_after_s: {offline_after_s}
{keys}  zones:
    - {{id: gate, polygon: [[0, 0], [768, 0], [768, 576], [0, 576]]}}
    - {{id: square, polygon: [[0, 0], [768, 0], [768, 576], [0, 576]]}}
  rules:
    - {{type: intrusion, zone: gate, for_s: 0, clear_s: {clear_s}}}
    - {{type: intrusion, zone: square, for_s: 0, clear_s: {clear_s}}}
  patrol:
{stops}"""


def ptz_device(rtsp_port: int, **knobs) -> FakeOnvifDevice:
    profiles = [FakeProfile("Profile_2", "subStream", 768, 576, path="/sub", ptz=True)]
    return FakeOnvifDevice(profiles=profiles, presets=NUMBERED, rtsp_port=rtsp_port, **knobs)


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


def api_patrol(port: int) -> dict | None:
    cameras = {camera["id"]: camera for camera in json.loads(http_get(port, "/api/cameras"))}
    return cameras["ptz"]["patrol"]


def metric(port: int, name: str, camera: str) -> float | None:
    match = re.search(rf'^{name}{{camera="{camera}"}} (\S+)$', http_get(port, "/metrics"), re.MULTILINE)
    return float(match.group(1)) if match else None


def of_type(sub, kind: str, state: str) -> list[dict]:
    return [a for a in alerts(sub, "ptz") if a["type"] == kind and a["state"] == state]


def with_preset(sub) -> list[dict]:
    return [a for a in alerts(sub, "ptz") if "preset" in (a.get("details") or {})]


def test_patrol_with_refused_credentials_raises_patrol_fault_then_recovers(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway, rtsp_server) -> None:
    """The field case: the camera's password was wrong at start. The patrol task used to die (an
    AssertionError, seen only at shutdown) and later stops were analysed as if the camera had
    moved; the numbered presets of a PresetToken_N camera were not found."""
    with ptz_device(rtsp_server.port, refuse_credentials=True, move_s=0.5) as device:
        sub = subscriber_factory(mosquitto.port, ["gw/#"])
        api_port = free_port()
        camera = patrol_camera(device, """\
    - {preset: 1, dwell_s: 4, settle_s: 0.5, zones: [gate]}
    - {preset: "2", dwell_s: 4, settle_s: 0.5, zones: [square]}
""", patrol_fault_after_s=2)
        config = write_config(tmp_path / "site.yaml", mosquitto.port, camera, tmp_path / "data", api_port)
        gateway = start_gateway(config)

        wait_until(lambda: of_type(sub, "patrol_fault", "start"), 40, "a patrol_fault alert", gateway)
        fault = of_type(sub, "patrol_fault", "start")[0]
        validate_alert(fault)
        assert fault["title_zh"] == "巡逻中断：东门ptz" and fault["count"] is None
        assert fault["details"]["target_preset"] in ("1", "2") and "preset" not in fault["details"]
        assert "not authorized" in fault["details"]["error"]
        wait_until(lambda: ((camera_health(sub, "ptz") or {}).get("patrol") or {}).get("fault"), 20,
                   "the fault in the heartbeat", gateway)
        assert camera_health(sub, "ptz")["patrol"]["state"] == "failing"
        wait_until(lambda: (api_patrol(api_port) or {}).get("fault"), PATIENCE_S, "the fault in /api/cameras", gateway)
        assert api_patrol(api_port)["state"] == "failing" and api_patrol(api_port)["move_failures"] >= 1
        assert metric(api_port, "gateway_camera_patrol_fault", "ptz") == 1.0
        assert metric(api_port, "gateway_camera_patrol_moves_total", "ptz") == 0.0
        # /healthz (no token): degraded, with a count and nothing else (no address, no error).
        health = http_get(api_port, "/healthz")
        assert json.loads(health)["status"] == "degraded" and json.loads(health)["patrols_failing"] == 1
        assert "127.0.0.1" not in health and "authorized" not in health and "ptz" not in health
        log = gateway.log()
        assert re.search(r"camera ptz: patrol\[\d\] \(preset \d\): cannot move the camera: 127\.0\.0\.1:\d+: "
                         r"not authorized.*; retrying in", log)
        assert not with_preset(sub) and device.goto_calls == []

        device.refuse_credentials = False  # the installer fixed the password
        wait_until(lambda: of_type(sub, "patrol_fault", "end"), 90, "the patrol_fault end", gateway)
        assert of_type(sub, "patrol_fault", "end")[0]["event_id"] == fault["event_id"]
        wait_until(lambda: {a["details"]["preset"] for a in with_preset(sub)} >= {"Preset 1", "Preset 2"}, 150,
                   "intrusion alerts at both numbered presets", gateway)
        assert {token for _profile, token in device.goto_calls} == {"PresetToken_1", "PresetToken_2"}
        wait_until(lambda: (metric(api_port, "gateway_camera_patrol_moves_total", "ptz") or 0) >= 2, 20,
                   "confirmed moves in /metrics", gateway)
        assert metric(api_port, "gateway_camera_patrol_fault", "ptz") == 0.0
        assert json.loads(http_get(api_port, "/healthz")) == {**json.loads(http_get(api_port, "/healthz")),
                                                              "status": "ok", "patrols_failing": 0}
        patrol = api_patrol(api_port)
        assert patrol["confirmed_by"] == "status" and patrol["last_move_s"] >= 0.5 and not patrol["fault"]
        for payload in alerts(sub, "ptz"):
            validate_alert(payload)
        assert gateway.stop() == 0
        log = gateway.log()
        assert "Task exception was never retrieved" not in log and "Traceback" not in log
        assert "PTZ patrol moving again" in log and "Secret-1" not in log


def test_a_ptz_head_that_does_not_move_gets_no_zones_until_it_does(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway, rtsp_server) -> None:
    """GotoPreset accepted but the head stays where it is: frames flow, yet no stop's zones may
    apply (that raised alerts with details.preset for presets the camera never showed)."""
    with ptz_device(rtsp_server.port, ptz_stuck=True) as device:
        sub = subscriber_factory(mosquitto.port, ["gw/#"])
        camera = patrol_camera(device, """\
    - {preset: Preset 1, dwell_s: 4, settle_s: 0.5, zones: [gate]}
    - {preset: Preset 2, dwell_s: 4, settle_s: 0.5, zones: [square]}
""", patrol_move_timeout_s=1, patrol_fault_after_s=600)
        gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto.port, camera, tmp_path / "data"))
        wait_until(lambda: (camera_health(sub, "ptz") or {}).get("state") == "streaming", 30,
                   "the camera streaming", gateway)
        wait_until(lambda: gateway.log().count("did not reach preset") >= 3, 90,
                   "three moves that never arrived", gateway)
        assert (camera_health(sub, "ptz")["patrol"] or {})["state"] == "failing"
        assert "(it reports: idle, pan 0.000, tilt 0.000, zoom 0.000)" in gateway.log()
        assert not with_preset(sub)  # frames came all along: before, every stop raised an intrusion

        device.ptz_stuck = False
        wait_until(lambda: with_preset(sub), 90, "an intrusion once the camera really moved", gateway)
        assert gateway.stop() == 0


def test_open_events_end_at_a_stop_change_while_the_camera_sends_no_frames(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway) -> None:
    """A crowd event stayed open through a camera outage and three stop changes: the view change
    was handled only when a frame arrived."""
    stream = RtspServer({"/sub": transcode_h264(VTEST, fps=10, gop=10, frames=200)}).start()
    try:
        with ptz_device(stream.port) as device:
            sub = subscriber_factory(mosquitto.port, ["gw/#"])
            api_port = free_port()
            camera = patrol_camera(device, """\
    - {preset: "1", dwell_s: 25, settle_s: 0.5, zones: [gate]}
    - {preset: "2", dwell_s: 25, settle_s: 0.5, zones: [square]}
""", clear_s=600)  # only a view change (or the stop) can end an event here
            gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto.port, camera,
                                                 tmp_path / "data", api_port))

            def first_stop_starts() -> list[dict]:
                return [a for a in with_preset(sub) if a["state"] == "start" and a["details"]["patrol_stop"] == 0]

            for attempt in range(3):
                wait_until(lambda: len(first_stop_starts()) > attempt, 90, "an intrusion at the first stop",
                           gateway)
                start = first_stop_starts()[attempt]
                stream.kill()  # the outage: no frame arrives from here on
                outage_at = datetime.now().astimezone()
                patrol = api_patrol(api_port)
                if (patrol["stop"], patrol["state"]) == (0, "watching"):
                    break  # the view has not changed yet: it changes during the outage
                stream.restart()  # the machine was slow and the stop already changed: next round
            else:
                pytest.fail("the stream was never cut while the first stop was watched")
            wait_until(lambda: [a for a in alerts(sub, "ptz") if a["event_id"] == start["event_id"]
                                and a["state"] == "end"], 60, "the event's end at the stop change", gateway)
            end = [a for a in alerts(sub, "ptz") if a["event_id"] == start["event_id"] and a["state"] == "end"][0]
            assert datetime.fromisoformat(end["ended_at"]) >= outage_at  # ended by the view change
            wait_until(lambda: (api_patrol(api_port) or {}).get("stop") == 1, 30, "the second stop", gateway)
            assert gateway.stop() == 0
    finally:
        stream.stop()


def test_a_preset_the_camera_does_not_have_raises_patrol_fault_after_patrol_fault_after_s(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway, rtsp_server) -> None:
    """A typo in one stop's preset only warned every round: the other stop's arrival restarted the
    fault timer. Now the stop's own failures add up to 巡逻中断, and the other stop goes on."""
    with ptz_device(rtsp_server.port) as device:
        sub = subscriber_factory(mosquitto.port, ["gw/#"])
        camera = patrol_camera(device, """\
    - {preset: "1", dwell_s: 2, settle_s: 0, zones: [gate]}
    - {preset: Roof, dwell_s: 1, settle_s: 0, zones: [square]}
""", patrol_move_s=1, patrol_fault_after_s=5)  # Roof is retried 2 s per round: only rounds add up to 5 s
        gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto.port, camera, tmp_path / "data"))
        wait_until(lambda: of_type(sub, "patrol_fault", "start"), PATIENCE_S, "a patrol_fault alert", gateway)
        fault = of_type(sub, "patrol_fault", "start")[0]
        validate_alert(fault)
        details = fault["details"]
        assert (details["patrol_stop"], details["target_preset"]) == (1, "Roof")
        assert "no PTZ preset 'Roof' (presets: Preset 1 (PresetToken_1), Preset 2 (PresetToken_2))" in details["error"]
        failed_for = datetime.fromisoformat(fault["updated_at"]) - datetime.fromisoformat(fault["started_at"])
        assert failed_for.total_seconds() >= 5  # raised once the stop had failed for patrol_fault_after_s
        wait_until(lambda: any(a["details"]["preset"] == "Preset 1" for a in with_preset(sub)), PATIENCE_S,
                   "the good stop still watched", gateway)
        assert gateway.stop() == 0
        log = gateway.log()
        assert "patrol[1] (preset Roof): cannot move the camera: " in log and "fix patrol[1].preset" in log
        assert re.search(r"camera ptz: PTZ patrol cannot reach patrol\[1\] \(preset Roof\) for \d+ s "
                         r"\(patrol_fault_after_s 5\): .*no PTZ preset 'Roof'.*; raising a patrol_fault alert", log)


def test_a_camera_alarm_while_the_patrol_moves_carries_the_last_analysed_picture(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway, rtsp_server) -> None:
    """A tamper alarm raised while the head was on its way to the next stop came without a
    picture although the camera had been analysed a moment before: the view change had dropped
    what draws it. The picture is the last one analysed, dated when it was taken."""
    with ptz_device(rtsp_server.port) as device:
        sub = subscriber_factory(mosquitto.port, ["gw/#"])
        api_port = free_port()
        camera = patrol_camera(device, """\
    - {preset: "1", dwell_s: 3, settle_s: 0, zones: [gate]}
    - {preset: Nowhere, dwell_s: 600, settle_s: 0, zones: [square]}
""", patrol_fault_after_s=600)  # the camera never gets to the second stop: it stays on its way
        gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto.port, camera, tmp_path / "data",
                                             api_port))
        wait_until(lambda: with_preset(sub), PATIENCE_S, "the first stop analysed", gateway)
        wait_until(lambda: (api_patrol(api_port) or {}).get("stop") == 1, PATIENCE_S, "on the way to stop 1", gateway)
        assert api_patrol(api_port)["state"] in ("moving", "failing")
        wait_until(lambda: device.live_subscriptions() > 0, PATIENCE_S, "a PullPoint subscription", gateway)
        device.push_event(TAMPER, {"State": "true"}, {"VideoSourceConfigurationToken": "VSC_1"})
        wait_until(lambda: of_type(sub, "camera_tamper", "start"), PATIENCE_S, "camera_tamper start", gateway)
        tamper = of_type(sub, "camera_tamper", "start")[0]
        validate_alert(tamper)
        snapshot = tamper["snapshot"]
        assert snapshot is not None and (snapshot["width"], snapshot["height"]) == (768, 576)
        assert snapshot["taken_at"] <= tamper["started_at"]  # the stop's picture, not a new one
        assert api_patrol(api_port)["stop"] == 1  # still on its way: no frame analysed since
        assert gateway.stop() == 0


def test_a_patrol_fault_is_logged_when_raised_not_while_the_camera_is_offline(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway) -> None:
    """The driver logged "raising a patrol_fault alert" at ERROR while the camera was offline
    (no alert is sent then: camera_offline says why), with the failing time of that moment. The
    line now comes with the alert, once the camera is back, with how long the patrol had failed."""
    stream = RtspServer({"/sub": transcode_h264(VTEST, fps=10, gop=10, frames=200)}).start()
    stream.pause()  # the camera sends nothing until the stream is back (its port stays taken)
    try:
        with ptz_device(stream.port, ptz_stuck=True) as device:
            sub = subscriber_factory(mosquitto.port, ["gw/#"])
            camera = patrol_camera(device, """\
    - {preset: "1", dwell_s: 600, settle_s: 0, zones: [gate]}
""", offline_after_s=2, patrol_move_timeout_s=1, patrol_fault_after_s=2)
            gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto.port, camera, tmp_path / "data"))
            wait_until(lambda: of_type(sub, "camera_offline", "start"), PATIENCE_S, "camera_offline", gateway)
            wait_until(lambda: ((camera_health(sub, "ptz") or {}).get("patrol") or {}).get("fault"), PATIENCE_S,
                       "the patrol at fault (offline)", gateway)
            fault_seen_at = time.monotonic()
            wait_until(lambda: gateway.log().count("did not reach preset") >= 3, PATIENCE_S,
                       "more failed moves while offline", gateway)
            assert not of_type(sub, "patrol_fault", "start")
            assert "raising a patrol_fault alert" not in gateway.log(), gateway.log()  # no alert, no line
            back_at = time.monotonic()
            stream.resume()
            wait_until(lambda: of_type(sub, "patrol_fault", "start"), PATIENCE_S, "the fault once online", gateway)
            assert of_type(sub, "camera_offline", "end")
            assert gateway.stop() == 0
        raised = re.findall(r"camera ptz: PTZ patrol cannot reach patrol\[0\] \(preset 1\) for (\d+) s "
                            r"\(patrol_fault_after_s 2\): .*did not reach preset.*; raising a patrol_fault alert",
                            gateway.log())
        assert len(raised) == 1
        # failing >= 2 s when the test saw the fault, and for at least as long again until the camera came back
        assert int(raised[0]) + 1 >= 2 + (back_at - fault_seen_at)
    finally:
        stream.stop()


def test_the_watchdog_notices_a_dead_patrol_task(tmp_path: Path, mosquitto: Mosquitto) -> None:
    with ptz_device(554) as device:
        config = write_config(tmp_path / "site.yaml", mosquitto.port, patrol_camera(device, """\
    - {preset: "1", dwell_s: 600, settle_s: 0}
"""), tmp_path / "data")
        service = GatewayService(load_config(config))
        service.start()
        try:
            worker = service.scheduler.workers()[0]
            deadline = time.monotonic() + 30
            while worker.patrol.status().moves < 1:  # at its stop: not stopped mid-request
                assert time.monotonic() < deadline, "the patrol never reached its stop"
                time.sleep(0.05)
            assert worker.patrol.alive and service.failed_workers() == []
            worker.patrol.stop()  # the task ends: a dead worker, like a dead reader thread
            assert service.failed_workers() == ["camera ptz: PTZ patrol task is dead"]
            assert service.health()["cameras"]["ptz"]["patrol"]["state"] == "stopped"
        finally:
            service.stop()
