"""The webhook output against a real HTTP receiver on 127.0.0.1 (and https with a test CA), and
next to a real Mosquitto: every alert arrives, in order, signed; outages of either output lose
nothing and do not hold the other one back."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, VTEST, YOLOX_NANO
from delivery_support import alerts, delivery_config, make_router, sink, start_alert
from gateway.events import validate_alert
from gateway.outputs.webhook import signature
from http_receiver import Receiver
from mqtt_broker import Mosquitto, free_port, make_tls_files, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from waiting import wait_until

SECRET = "whsec-3f9a7c1e5b2d4086"


@pytest.fixture
def receiver():
    made = Receiver().start()
    yield made
    made.stop()


def ids(requests) -> list[tuple[str, int]]:
    return [(r.json()["event_id"], r.json()["seq"]) for r in requests]


def test_signature_is_hmac_sha256_of_the_body_as_documented() -> None:
    body = b'{"event_id":"x","seq":1}'
    assert signature(b"key", body) == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert signature(b"key", body) != signature(b"other", body)


def test_webhook_posts_each_alert_signed_as_gw_alert_json(tmp_path: Path, receiver: Receiver, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    config = delivery_config(tmp_path / "data", webhook_url=receiver.url("/hooks/gw?tenant=7"), secret=SECRET,
                             token="bearer-9c1d2e")
    router = make_router(config)
    try:
        messages = alerts(3, picture=True)
        router.route(messages)
        assert receiver.wait_for(lambda requests: len(requests) >= 3, 30), receiver.requests
    finally:
        router.stop()
    assert ids(receiver.requests) == [(m.event_id, m.seq) for m in messages]
    for request, message in zip(receiver.requests, messages):
        payload = request.json()
        validate_alert(payload)
        assert payload == message.payload  # exactly the alert, snapshot inline
        assert payload["snapshot"]["data"] and payload["snapshot"]["mime"] == "image/jpeg"
        assert request.path == "/hooks/gw?tenant=7"
        assert request.headers["content-type"] == "application/json; charset=utf-8"
        assert request.headers["x-signature"] == "sha256=" + hmac.new(
            SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-event-id"] == message.event_id
        assert request.headers["x-event-seq"] == str(message.seq)
        assert request.headers["x-gateway-id"] == config.gateway.id
        assert request.headers["authorization"] == "Bearer bearer-9c1d2e"
        assert request.headers["user-agent"].startswith("edge-gateway/")
    assert SECRET not in caplog.text and "bearer-9c1d2e" not in caplog.text
    assert not list((tmp_path / "data").glob("outbox.sqlite3")), "a webhook-only gateway made an MQTT outbox"
    assert (tmp_path / "data" / "outbox-webhook-cases.sqlite3").exists()


def test_snapshots_omit_sends_the_alert_without_its_picture(tmp_path: Path, receiver: Receiver) -> None:
    router = make_router(delivery_config(tmp_path / "data", webhook_url=receiver.url(), snapshots="omit"))
    try:
        message = alerts(1, picture=True)[0]
        router.route([message])
        assert receiver.wait_for(lambda requests: len(requests) == 1, 30)
        # The page's history keeps the picture; only this output leaves it out.
        assert router.history.snapshot(message.event_id) is not None
    finally:
        router.stop()
    payload = receiver.requests[0].json()
    validate_alert(payload)
    assert payload["snapshot"] is None and "x-signature" not in receiver.requests[0].headers
    assert payload == {**message.payload, "snapshot": None}


def test_refusals_and_timeouts_are_retried_in_order_with_the_same_ids(tmp_path: Path, receiver: Receiver) -> None:
    config = delivery_config(tmp_path / "data", webhook_url=receiver.url(), timeout_s=1)
    router = make_router(config)
    webhook = sink(router, "webhook:cases")
    try:
        receiver.status = 503
        messages = alerts(3)
        router.route(messages)
        assert receiver.wait_for(lambda requests: len(requests) >= 3, 30), "no retries after 503"
        # While the first alert is refused nothing overtakes it.
        assert {key for key in ids(receiver.requests)} == {(messages[0].event_id, 1)}
        assert "HTTP 503" in webhook.health()["last_error"]

        receiver.hold()  # the far end accepts the connection but does not answer
        receiver.status = 200
        wait_until(lambda: "no answer" in (webhook.health()["last_error"] or ""), 30, what="a timeout to be reported")
        receiver.release()
        wait_until(lambda: webhook.outbox.depth() == 0, 30, what="the queue to drain")
        health = webhook.health()
    finally:
        router.stop()
    delivered = ids(receiver.delivered())
    first_seen = list(dict.fromkeys(delivered))
    assert first_seen == [(m.event_id, m.seq) for m in messages]
    by_id = {}
    for request in receiver.requests:  # every retry is the same message, byte for byte
        by_id.setdefault(request.headers["x-event-id"], set()).add(request.body)
    assert all(len(bodies) == 1 for bodies in by_id.values())
    assert health["failures"] >= 3 and health["delivered"] >= 3 and health["last_error"] is None


def test_a_30_s_outage_loses_nothing_and_duplicates_repeat_the_ids(tmp_path: Path, receiver: Receiver) -> None:
    router = make_router(delivery_config(tmp_path / "data", webhook_url=receiver.url()))
    webhook = sink(router, "webhook:cases")
    produced = []
    try:
        first = alerts(2)
        router.route(first)
        produced += first
        assert receiver.wait_for(lambda requests: len(requests) >= 2, 30)

        receiver.stop()  # connection refused from now on
        outage_started = time.monotonic()
        stop = threading.Event()
        while time.monotonic() - outage_started < 30:  # alerts keep coming during the outage
            message = start_alert(len(produced))[1]
            router.route([message])
            produced.append(message)
            stop.wait(1.0)
        assert webhook.outbox.depth() >= 25
        assert "cannot reach" in webhook.health()["last_error"]
        receiver.start()
        wait_until(lambda: webhook.outbox.depth() == 0, 60, what="the queued alerts to arrive after the outage")
    finally:
        router.stop()
    delivered = ids(receiver.delivered())
    assert list(dict.fromkeys(delivered)) == [(m.event_id, m.seq) for m in produced]
    bodies = {}
    for request in receiver.delivered():
        bodies.setdefault((request.json()["event_id"], request.json()["seq"]), set()).add(request.body)
    assert all(len(seen) == 1 for seen in bodies.values()), "a duplicate differs from the original"


def test_https_is_verified_and_a_ca_file_makes_a_private_ca_work(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    receiver = Receiver(tls=tls).start()
    try:
        untrusted = make_router(delivery_config(tmp_path / "a", webhook_url=receiver.url()))
        try:
            untrusted.route(alerts(1))
            webhook = sink(untrusted, "webhook:cases")
            wait_until(lambda: webhook.health()["last_error"] is not None, 30, what="the TLS refusal")
            assert "certificate" in webhook.health()["last_error"] and "ca_file" in webhook.health()["last_error"]
            assert not receiver.requests
        finally:
            untrusted.stop()
        trusted = make_router(delivery_config(tmp_path / "b", webhook_url=receiver.url(), ca_file=str(tls.ca_cert)))
        try:
            message = alerts(1)[0]
            trusted.route([message])
            assert receiver.wait_for(lambda requests: len(requests) == 1, 30)
            assert receiver.requests[0].json()["event_id"] == message.event_id
        finally:
            trusted.stop()
    finally:
        receiver.stop()


def test_an_mqtt_outage_does_not_hold_back_the_webhook_and_the_other_way_round(
        tmp_path: Path, receiver: Receiver, mosquitto: Mosquitto, subscriber_factory) -> None:
    centre = subscriber_factory(mosquitto.port, ["gw/+/events/#"])
    router = make_router(delivery_config(tmp_path / "data", mqtt_port=mosquitto.port, webhook_url=receiver.url()))
    mqtt_out, webhook = sink(router, "mqtt"), sink(router, "webhook:cases")

    def on_broker(messages) -> set[str]:
        return {m.json()["event_id"] for m in centre.received()}

    def on_webhook() -> set[str]:
        return {r.json()["event_id"] for r in receiver.delivered()}

    try:
        assert mqtt_out.wait_connected(15)
        both = alerts(1)
        router.route(both)
        assert centre.wait_for(lambda m: both[0].event_id in on_broker(m), 15)
        assert receiver.wait_for(lambda r: len(r) == 1, 15)

        mosquitto.stop()  # the broker is down: the webhook still gets every alert
        during_broker_outage = alerts(3)
        router.route(during_broker_outage)
        assert receiver.wait_for(lambda r: len(r) == 4, 30)
        assert not mosquitto.running and mqtt_out.outbox.depth() == 3
        mosquitto.start()
        assert centre.wait_for(lambda m: {a.event_id for a in during_broker_outage} <= on_broker(m), 60)

        receiver.stop()  # the webhook is down: MQTT still gets every alert
        during_webhook_outage = alerts(3)
        router.route(during_webhook_outage)
        assert centre.wait_for(lambda m: {a.event_id for a in during_webhook_outage} <= on_broker(m), 30)
        assert webhook.outbox.depth() == 3
        receiver.start()
        wait_until(lambda: {a.event_id for a in during_webhook_outage} <= on_webhook(), 60,
                   what="the webhook to catch up")
    finally:
        router.stop()
    everything = {a.event_id for a in both + during_broker_outage + during_webhook_outage}
    assert on_broker(None) == everything and on_webhook() == everything


def test_gateway_run_delivers_each_alert_to_mqtt_and_the_webhook(
        tmp_path: Path, receiver: Receiver, mosquitto: Mosquitto, subscriber_factory) -> None:
    """The service end to end: `outputs:` from the YAML, one crowd alert at the broker and at the
    receiver, both outputs in the heartbeat."""
    centre = subscriber_factory(mosquitto.port, ["gw/gw-hook/#"])
    config = tmp_path / "site.yaml"
    config.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-hook, name: 测试网关, timezone: Asia/Shanghai, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, heartbeat_s: 1}}
        outputs:
          - {{type: webhook, id: cases, url: "{receiver.url()}", secret: "${{HOOK_SECRET}}", snapshots: omit}}
        api: {{port: {free_port()}}}
        cameras:
          - id: cam1
            name: 广场
            source: {{file: {VTEST}}}
            fps: 2
            decode: all
            rules:
              - {{type: crowd, min_people: 3, for_s: 1, clear_s: 1}}
        """), encoding="utf-8")
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)], cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOOK_SECRET": SECRET})
        try:
            assert centre.wait_for(lambda m: any(x.topic == "gw/gw-hook/events/cam1" for x in m), 90), \
                log_path.read_text()[-3000:]
            first = next(x.json() for x in centre.received("gw/gw-hook/events/cam1"))
            assert receiver.wait_for(lambda r: any(x.json()["event_id"] == first["event_id"] for x in r), 60)
            assert centre.wait_for(lambda m: any(set(x.json().get("outputs", {})) == {"mqtt", "webhook:cases"}
                                                 for x in m if x.topic == "gw/gw-hook/status"), 30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0, log_path.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    posted = next(r for r in receiver.requests if r.json()["event_id"] == first["event_id"])
    assert posted.json() == {**first, "snapshot": None}  # the same alert; this output omits the picture
    assert posted.headers["x-signature"] == signature(SECRET.encode(), posted.body)
    assert SECRET not in log_path.read_text()
