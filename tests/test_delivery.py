"""The delivery package: the outputs configuration, the router's pure parts (reactions, the
disk_full alert, case messages), and the case loop over a real Mosquitto — the page's
acknowledgement reaches the centre on `acks`, the centre's case progress comes back on `cases`."""

from __future__ import annotations

import json
import logging
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import YOLOX_NANO
from delivery_support import TZ, alerts, delivery_config, make_router, sink
from mqtt_broker import Mosquitto
from mqtt_broker import mosquitto, subscriber_factory  # noqa: F401  (fixtures)

from gateway.config import check_config
from gateway.config.models import GatewaySection
from gateway.config.outputs import MqttOutput, WebhookOutput
from gateway.delivery.diskwatch import DiskFullWatch
from gateway.delivery.mqtt.messages import InvalidMessage, parse_case
from gateway.delivery.mqtt.topics import Topics
from gateway.delivery.outbox import UnknownEventError
from gateway.delivery.reactions import PtzLinkage
from gateway.events import AlertMessage, validate_alert


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


# --------------------------------------------------------------------------- pure parts


def test_ptz_linkage_turns_the_first_linked_camera_on_a_sensor_start_only() -> None:
    turned = []
    linkage = PtzLinkage(lambda camera_id, preset: turned.append((camera_id, preset)))
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
                                    "extra": 1}).encode(), 0.0)
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


def test_page_ack_goes_to_the_centre_and_case_progress_comes_back(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, caplog) -> None:
    caplog.set_level(logging.INFO)
    centre = subscriber_factory(mosquitto.port, ["gw/gw-delivery/acks", "gw/gw-delivery/events/#"])
    router = make_router(delivery_config(tmp_path / "data", mqtt_port=mosquitto.port))
    mqtt_out = sink(router, "mqtt")
    try:
        assert mqtt_out.wait_connected(15)
        message = alerts(1)[0]
        router.route([message])
        assert centre.wait_for(lambda m: any(x.topic.endswith("/events/gate") for x in m), 15)

        result = router.acknowledge(message.event_id, "", "王值班", "已通知网格员")
        assert result.new and result.record.ack.by == "王值班"
        assert centre.wait_for(lambda m: any(x.topic == "gw/gw-delivery/acks" for x in m), 15)
        [ack] = [x.json() for x in centre.received("gw/gw-delivery/acks")]
        assert ack["event_id"] == message.event_id and ack["by"] == "王值班" and ack["note"] == "已通知网格员"
        assert ack["source"] == "page" and ack["gateway_id"] == "gw-delivery"
        assert datetime.fromisoformat(ack["at"]).utcoffset() == timedelta(hours=8)
        assert not router.acknowledge(message.event_id, "", "王值班").new  # a repeat is not sent again

        steps = [("dispatched", "2024-05-01T09:30:00+08:00"), ("accepted", "2024-05-01T09:31:00+08:00"),
                 ("handled", "2024-05-01T09:50:00+08:00")]
        for status, at in reversed(steps):  # out of order: the latest by time wins
            centre.publish("gw/gw-delivery/cases", {"event_id": message.event_id, "case_id": "GD-0031",
                                                    "status": status, "by": "综治中心", "at": at,
                                                    "note": "<b>到场</b>"})
        wait_until(lambda: mqtt_out.health()["cases_recorded"] == 3, 15, "three case steps")
        record = router.history.get(message.event_id)
        assert (record.case.status, record.case.case_id, record.case.note) == ("handled", "GD-0031", "<b>到场</b>")
        assert [step.status for step in router.history.cases(message.event_id)] == ["dispatched", "accepted", "handled"]

        ignored_before = mqtt_out.health()["cases_ignored"]
        centre.publish("gw/gw-delivery/cases", b"{not json")
        centre.publish("gw/gw-delivery/cases", {"event_id": message.event_id, "case_id": "C", "status": "closed"})
        centre.publish("gw/gw-delivery/cases", {"event_id": "5d0f1a52-3a87-4b49-9d5e-0c1e7b1f7a01",
                                                "case_id": "C", "status": "accepted"})
        wait_until(lambda: mqtt_out.health()["cases_ignored"] == ignored_before + 3, 15, "three ignored messages")
        assert router.history.get(message.event_id).case.status == "handled"
    finally:
        router.stop()
    lines = [r for r in caplog.records if "case update" in r.getMessage()]
    assert len(lines) == 3 and all("\n" not in r.getMessage() for r in lines), [r.getMessage() for r in lines]
    assert any("unknown event 5d0f1a52" in r.getMessage() for r in lines)


def test_a_page_ack_made_while_the_broker_is_down_reaches_the_centre_later(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory) -> None:
    centre = subscriber_factory(mosquitto.port, ["gw/gw-delivery/acks"])
    router = make_router(delivery_config(tmp_path / "data", mqtt_port=mosquitto.port))
    try:
        assert sink(router, "mqtt").wait_connected(15)
        message = alerts(1)[0]
        router.route([message])
        mosquitto.stop()
        router.acknowledge(message.event_id, "GD-7", "王值班")
        router.acknowledge(message.event_id, "GD-7", "李值班")  # the later one replaces the queued one
        mosquitto.start()
        assert centre.wait_for(lambda m: len(m) >= 1, 30)
        assert sink(router, "mqtt").flush(15), "the ack notice stayed queued"
    finally:
        router.stop()
    [notice] = [m.json() for m in centre.received("gw/gw-delivery/acks")]
    assert (notice["event_id"], notice["by"], notice["case_id"]) == (message.event_id, "李值班", "GD-7")


def test_an_ack_for_an_event_this_gateway_never_sent_is_refused(tmp_path: Path) -> None:
    router = make_router(delivery_config(tmp_path / "data", webhook_url="http://127.0.0.1:9/never"))
    try:
        with pytest.raises(UnknownEventError):
            router.acknowledge("5d0f1a52-3a87-4b49-9d5e-0c1e7b1f7a01", "", "王值班")
    finally:
        router.stop()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
