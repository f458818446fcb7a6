"""The delivery package: the outputs configuration, the router's pure parts (reactions, the
disk_full alert, case messages), and the case loop over a real Mosquitto — the page's
acknowledgement reaches the centre on `acks`, the centre's case progress comes back on `cases`."""

from __future__ import annotations

import json
import logging
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from conftest import YOLOX_NANO
from delivery_support import TZ, delivery_config, make_router, sink
from gateway.config import check_config
from gateway.config.models import GatewaySection
from gateway.config.outputs import MqttOutput, WebhookOutput
from gateway.delivery.diskwatch import DiskFullWatch
from gateway.delivery.reactions import PtzLinkage
from gateway.events import AlertMessage, validate_alert
from gateway.outputs.mqtt.messages import InvalidMessage, parse_case
from gateway.outputs.mqtt.topics import Topics
from mqtt_broker import Mosquitto, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from waiting import PATIENCE_S, wait_until
from web_support import GATEWAY_ID as WEB_GATEWAY
from web_support import TOKEN, serve


def check(tmp_path: Path, text: str):
    path = tmp_path / "site.yaml"
    path.write_text(f"gateway: {{id: gw1, data_dir: {tmp_path}/data}}\ndetector: {{model: {YOLOX_NANO}}}\n"
                    + textwrap.dedent(text), encoding="utf-8")
    return check_config(path, env={"HOOK_SECRET": "s3cr3t-hook-key"})


# --------------------------------------------------------------------------- configuration


def test_a_file_without_outputs_keeps_mqtt_as_its_only_output(tmp_path: Path) -> None:
    config, issues = check(tmp_path, "mqtt: {host: 10.0.0.5, port: 1884}\n")
    assert not issues
    [only] = config.delivery_outputs
    assert isinstance(only, MqttOutput) and (only.host, only.port, only.sink_name) == ("10.0.0.5", 1884, "mqtt")
    config, issues = check(tmp_path, "")
    assert [output.sink_name for output in config.delivery_outputs] == ["mqtt"]  # the default broker, as before


def test_top_level_mqtt_is_the_first_output_and_outputs_follow(tmp_path: Path) -> None:
    config, issues = check(tmp_path, """\
        mqtt: {host: 10.0.0.5}
        outputs:
          - {type: webhook, id: cases, url: "https://cases.example.cn/hook", secret: "${HOOK_SECRET}"}
        """)
    assert not issues
    mqtt, webhook = config.delivery_outputs
    assert isinstance(mqtt, MqttOutput) and mqtt.host == "10.0.0.5"
    assert isinstance(webhook, WebhookOutput) and webhook.sink_name == "webhook:cases"
    assert webhook.secret.get_secret_value() == "s3cr3t-hook-key" and webhook.verify_tls
    config, issues = check(tmp_path, """\
        outputs:
          - {type: webhook, url: "http://127.0.0.1:9000/hook"}
        """)
    assert [output.sink_name for output in config.delivery_outputs] == ["webhook:webhook"]


def test_output_mistakes_name_file_line_and_key(tmp_path: Path) -> None:
    _, issues = check(tmp_path, """\
        mqtt: {host: 10.0.0.5}
        outputs:
          - type: webhook
            url: ftp://cases.example.cn/hook
          - type: mqtt
            host: 10.0.0.6
          - type: webhok
        """)
    found = [(issue.line, issue.path, issue.message) for issue in issues]
    assert (6, "outputs[0].url", "must be an http:// or https:// URL with a host") in found
    assert any(line == 9 and path == "outputs[2].type" and "did you mean 'webhook'" in message
               for line, path, message in found)
    _, issues = check(tmp_path, """\
        mqtt: {host: 10.0.0.5}
        outputs:
          - type: webhook
            url: https://a.example.cn/hook
          - type: mqtt
            host: 10.0.0.6
          - type: webhook
            url: https://b.example.cn/hook
            ca_file: missing-ca.pem
        """)
    located = {(issue.line, issue.path): issue.message for issue in issues}
    assert "no such file" in located[(11, "outputs[2].ca_file")]
    _, issues = check(tmp_path, """\
        mqtt: {host: 10.0.0.5}
        outputs:
          - type: webhook
            url: https://a.example.cn/hook
          - type: mqtt
            host: 10.0.0.6
          - type: webhook
            url: https://b.example.cn/hook
        """)
    located = {(issue.line, issue.path): issue.message for issue in issues}
    assert "a second MQTT output" in located[(7, "outputs[1].type")]
    assert "duplicate output 'webhook:webhook' (first at outputs[0])" in located[(9, "outputs[2].id")]
    assert str(tmp_path) in issues[0].file and "s3cr3t" not in " ".join(map(str, issues))


def test_a_gb28181_output_is_checked_with_the_cameras_it_names(tmp_path: Path) -> None:
    _, issues = check(tmp_path, """\
        outputs:
          - type: gb28181
            host: 10.20.0.5
            platform_id: "34020000002000000001"
            device_id: "34020000001180000001"
            password: "${HOOK_SECRET}"
            channels:
              gate: "34020000001320000001"
        """)
    assert [(issue.line, issue.path) for issue in issues] == [(10, "outputs[0].channels.gate")]
    assert "unknown camera or sensor 'gate'" in issues[0].message and "s3cr3t" not in issues[0].message


# --------------------------------------------------------------------------- pure parts


def test_ptz_linkage_turns_the_first_linked_camera_on_a_sensor_start_only() -> None:
    turned = []

    class Cameras:
        def turn_to_preset(self, camera_id: str, preset: str) -> None:
            turned.append((camera_id, preset))

    linkage = PtzLinkage(Cameras())
    sensor = {"type": "sensor", "state": "start", "details": {"preset": "3", "linked": [{"camera_id": "gate"},
                                                                                       {"camera_id": "lane"}]}}
    linkage(AlertMessage(sensor))
    linkage(AlertMessage({**sensor, "state": "update"}))
    linkage(AlertMessage({**sensor, "type": "crowd"}))
    linkage(AlertMessage({**sensor, "details": {"linked": [{"camera_id": "gate"}]}}))
    assert turned == [("gate", "3")]


def test_disk_full_alert_starts_at_once_repeats_and_ends_after_the_disk_recovers(tmp_path: Path) -> None:
    watch = DiskFullWatch(GatewaySection(id="gw1", name="东门网关", data_dir=tmp_path), clear_s=10)
    now = datetime(2024, 5, 1, 9, 0, tzinfo=TZ)
    assert watch.observe(False, 0.0, now) == []
    [start] = watch.observe(True, 1.0, now)
    payload = start.payload
    validate_alert(payload)
    assert (payload["type"], payload["state"], payload["camera_id"], payload["count"]) == ("disk_full", "start", None, None)
    assert payload["title_zh"] == "存储空间已满：东门网关" and payload["details"]["data_dir"] == str(tmp_path)
    assert Topics("gw", "gw1").alert(payload) == "gw/gw1/events/gateway"
    assert watch.observe(True, 2.0, now) == []
    [update] = watch.observe(True, 602.0, now + timedelta(seconds=601))  # still full: a heartbeat
    assert update.payload["state"] == "update"
    assert watch.observe(False, 603.0, now) == []  # free again, but not for long enough yet
    assert watch.observe(True, 604.0, now) == []   # full again: the same event goes on
    assert watch.observe(False, 605.0, now) == [] and watch.observe(False, 614.0, now) == []
    [end] = watch.observe(False, 615.0, now + timedelta(seconds=615))
    validate_alert(end.payload)
    assert end.payload["state"] == "end" and end.payload["event_id"] == payload["event_id"]
    assert end.payload["title_zh"] == "存储空间已满：东门网关（已结束）"


def test_case_messages_are_parsed_strictly() -> None:
    update = parse_case(json.dumps({"event_id": "e1", "case_id": "GD-2024-0031", "status": "dispatched",
                                    "by": "李主任", "at": "2024-05-01T09:30:00+08:00", "note": "请网格员到场",
                                    "extra": 1}).encode(), 1714527000.0)
    assert (update.status, update.by, update.note, update.at_ts) == ("dispatched", "李主任", "请网格员到场", 1714527000.0)
    bare = parse_case(b'{"event_id": "e1", "case_id": "C", "status": "handled"}', 1714527000.0)
    assert bare.by == "" and bare.note is None and bare.at_ts == 1714527000.0 and bare.at.startswith("2024-05-01")
    for bad, reason in [
        (b"not json", "not JSON"),
        (b'{"event_id": "e1", "case_id": "C", "status": "closed"}', "'status' must be one of"),
        (b'{"case_id": "C", "status": "handled"}', "missing 'event_id'"),
        (b'{"event_id": "e1", "case_id": "C", "status": "handled", "at": "yesterday"}', "not an ISO-8601"),
        (b'{"event_id": "e1", "case_id": "C", "status": "handled", "at": "2024-05-01T09:30:00"}', "UTC offset"),
        (b'{"event_id": "e1", "case_id": "C", "status": "handled", "note": 5}', "'note' must be text"),
        (b'[' * 5000 + b']' * 5000, "nested too deeply"),
    ]:
        with pytest.raises(InvalidMessage, match=reason):
            parse_case(bad, 0.0)


# --------------------------------------------------------------------------- the case loop
# The real API (uvicorn, tests/web_support.py) over the real router, with a real Mosquitto as the centre.


@pytest.fixture
def gateway_site(tmp_path: Path, mosquitto: Mosquitto):
    router = make_router(delivery_config(tmp_path / "data", mqtt_port=mosquitto.port, gateway_id=WEB_GATEWAY))
    try:
        with serve(tmp_path / "web", router=router) as site:
            assert sink(router, "mqtt").wait_connected(PATIENCE_S)
            yield site, router
    finally:
        router.stop()


def api(site, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, site.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=PATIENCE_S,
                         **kwargs)


def test_a_page_ack_goes_to_the_centre_and_the_centres_case_progress_comes_back(
        gateway_site, mosquitto: Mosquitto, subscriber_factory, caplog) -> None:
    caplog.set_level(logging.INFO)
    site, router = gateway_site
    mqtt_out = sink(router, "mqtt")
    centre = subscriber_factory(mosquitto.port, [f"gw/{WEB_GATEWAY}/acks", f"gw/{WEB_GATEWAY}/events/#"])
    _, message = site.alerts.start("gate", "gathering", 120)
    assert centre.wait_for(lambda m: any(x.topic.endswith("/events/gate") for x in m), PATIENCE_S)

    reply = api(site, "POST", f"/api/events/{message.event_id}/ack", json={"by": "王值班", "note": "已通知网格员"})
    assert reply.status_code == 200 and reply.json()["new"], reply.text
    assert centre.wait_for(lambda m: any(x.topic.endswith("/acks") for x in m), PATIENCE_S)
    [ack] = [x.json() for x in centre.received(f"gw/{WEB_GATEWAY}/acks")]
    assert (ack["event_id"], ack["by"], ack["note"], ack["source"]) == (message.event_id, "王值班", "已通知网格员", "page")
    assert ack["gateway_id"] == WEB_GATEWAY and ack["case_id"] is None
    assert datetime.fromisoformat(ack["at"]).utcoffset() == timedelta(hours=8)
    assert api(site, "POST", f"/api/events/{message.event_id}/ack", json={"by": "王值班"}).json()["new"] is False

    steps = [("dispatched", "2024-05-01T09:30:00+08:00"), ("accepted", "2024-05-01T09:31:00+08:00"),
             ("handled", "2024-05-01T09:50:00+08:00")]
    for status, at in reversed(steps):  # out of order on purpose: the latest by time is the state
        centre.publish(f"gw/{WEB_GATEWAY}/cases", {"event_id": message.event_id, "case_id": "GD-0031",
                                                   "status": status, "by": "综治中心", "at": at,
                                                   "note": "<b>到场处置</b>"})
    wait_until(lambda: mqtt_out.health()["cases_recorded"] == 3, what="three case steps")
    event = api(site, "GET", f"/api/events/{message.event_id}").json()
    assert event["case"] == {"case_id": "GD-0031", "status": "handled", "by": "综治中心",
                             "at": "2024-05-01T09:50:00+08:00", "note": "<b>到场处置</b>"}
    assert [step["status"] for step in event["cases"]] == ["dispatched", "accepted", "handled"]
    listed = api(site, "GET", "/api/events").json()["items"]
    assert next(item for item in listed if item["event_id"] == message.event_id)["case"]["status"] == "handled"

    ignored = mqtt_out.health()["cases_ignored"]
    centre.publish(f"gw/{WEB_GATEWAY}/cases", b"{not json")
    centre.publish(f"gw/{WEB_GATEWAY}/cases", {"event_id": message.event_id, "case_id": "C", "status": "closed"})
    centre.publish(f"gw/{WEB_GATEWAY}/cases", {"event_id": "5d0f1a52-3a87-4b49-9d5e-0c1e7b1f7a01",
                                               "case_id": "C", "status": "accepted"})
    wait_until(lambda: mqtt_out.health()["cases_ignored"] == ignored + 3, what="three ignored case messages")
    assert api(site, "GET", f"/api/events/{message.event_id}").json()["case"]["status"] == "handled"
    lines = [r.getMessage() for r in caplog.records if "case update" in r.getMessage()]
    assert len(lines) == 3 and all("\n" not in line for line in lines), lines
    assert any("unknown event 5d0f1a52" in line for line in lines)


def test_a_page_ack_made_while_the_broker_is_down_reaches_the_centre_later(
        gateway_site, mosquitto: Mosquitto, subscriber_factory) -> None:
    site, router = gateway_site
    centre = subscriber_factory(mosquitto.port, [f"gw/{WEB_GATEWAY}/acks"])
    _, message = site.alerts.start("market", "crowd", 72)
    assert sink(router, "mqtt").flush(PATIENCE_S)
    mosquitto.stop()
    for officer in ("王值班", "李值班"):  # the later one replaces the one still queued
        reply = api(site, "POST", f"/api/events/{message.event_id}/ack", json={"by": officer, "case_id": "GD-7"})
        assert reply.status_code == 200, reply.text
    mosquitto.start()
    assert centre.wait_for(lambda m: len(m) >= 1, PATIENCE_S)
    assert sink(router, "mqtt").flush(PATIENCE_S), "the ack notice stayed queued"
    [notice] = [m.json() for m in centre.received(f"gw/{WEB_GATEWAY}/acks")]
    assert (notice["event_id"], notice["by"], notice["case_id"]) == (message.event_id, "李值班", "GD-7")


def test_healthz_and_metrics_cover_every_output(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = delivery_config(tmp_path / "data", mqtt_port=mosquitto.port, webhook_url="http://127.0.0.1:9/down",
                             gateway_id=WEB_GATEWAY)
    router = make_router(config)
    try:
        with serve(tmp_path / "web", router=router) as site:
            assert sink(router, "mqtt").wait_connected(PATIENCE_S)
            site.alerts.start("gate", "gathering", 120)
            wait_until(lambda: sink(router, "webhook:cases").health()["failures"] >= 1, what="a failed POST")
            assert sink(router, "mqtt").flush(PATIENCE_S)
            health = httpx.get(site.url + "/healthz", timeout=PATIENCE_S)  # no token needed
            assert health.status_code == 200
            assert health.json() == {
                "status": "degraded", "disk_full": False,
                "outputs": {"mqtt": {"alive": True, "connected": True, "queued": 0},
                            "webhook:cases": {"alive": True, "connected": False, "queued": 1}},
            }
            assert "127.0.0.1:9" not in health.text
            metrics = api(site, "GET", "/metrics").text
            assert 'gateway_output_up{output="webhook:cases"} 1.0' in metrics
            assert 'gateway_output_connected{output="webhook:cases"} 0.0' in metrics
            assert 'gateway_output_queued{output="webhook:cases"} 1.0' in metrics
            assert 'gateway_output_up{output="mqtt"} 1.0' in metrics and "gateway_disk_full 0.0" in metrics

            sink(router, "webhook:cases").stop()  # its thread ends: liveness fails, as the watchdog's does
            assert router.failures() == ["output webhook:cases: delivery thread is dead"]
            health = httpx.get(site.url + "/healthz", timeout=PATIENCE_S)
            assert health.status_code == 503 and health.json()["status"] == "failing"
            assert httpx.head(site.url + "/healthz", timeout=PATIENCE_S).status_code == 503
    finally:
        router.stop()
