"""Alert delivery against a real Mosquitto broker: outage, kill -9, LWT, TLS, auth, acks, remote look."""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np
import pytest

from gateway.backoff import Backoff
from gateway.config.models import MqttSection, MqttTls
from gateway.delivery.ledger import CaseLedger
from gateway.delivery.outbox import Outbox
from gateway.events import AlertMessage
from gateway.outputs.mqtt.sink import MqttSink

# tests/ is on sys.path (rootdir conftest, no package); importing the fixtures registers them here.
from mqtt_broker import Mosquitto, Received, free_port, make_tls_files, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from waiting import PATIENCE_S, wait_until

GW = "gk"
REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "mqtt_worker.py"
JPEG = bytes(cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1])


def alert(event: str, seq: int, camera: str = "cam1", snapshot_kb: int = 0) -> dict[str, Any]:
    return {
        "schema": "gw.alert/1",
        "event_id": event,
        "seq": seq,
        "state": "start" if seq == 0 else "update",
        "type": "crowd",
        "severity": 2,
        "gateway_id": GW,
        "camera_id": camera,
        "count": 12,
        "title_zh": "人员聚集：东门广场 12人",
        "snapshot": {"mime": "image/jpeg", "encoding": "base64", "data": "Q" * (snapshot_kb * 1024)}
        if snapshot_kb else None,
    }


def keys(messages: list[Received]) -> list[tuple[str, int]]:
    return [(m.json()["event_id"], m.json()["seq"]) for m in messages]


class View:
    """What the MQTT output reads of the live gateway: its health (the heartbeat), remote-look
    pictures, and which cameras exist (None: all of them)."""

    def __init__(self, health: dict | None = None, snapshot: Callable[[str], bytes | None] | None = None,
                 cameras: set[str] | None = None) -> None:
        self._health, self._snapshot, self._cameras = health or {}, snapshot, cameras

    def health(self) -> dict:
        return self._health

    def camera_snapshot(self, camera_id: str) -> bytes | None:
        return self._snapshot(camera_id) if self._snapshot else None

    def has_camera(self, camera_id: str) -> bool:
        return self._cameras is None or camera_id in self._cameras


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[CaseLedger]:
    made = CaseLedger(tmp_path / "ledger")
    yield made
    made.close()


def sent(ledger: CaseLedger, *payloads: dict) -> None:
    """The router notes every alert it queues as sent: acks of it are accepted from then on."""
    ledger.note_events([AlertMessage(payload) for payload in payloads])


@pytest.fixture
def publisher_factory(tmp_path: Path) -> Iterator[Callable[..., MqttSink]]:
    made: list[tuple[MqttSink, Outbox]] = []

    def make(port: int, *, outbox: Outbox | None = None, start: bool = True, **kwargs: Any) -> MqttSink:
        settings_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in MqttSection.model_fields}
        settings = MqttSection(host="127.0.0.1", port=port, keepalive_s=5, **settings_kw)
        box = outbox or Outbox(tmp_path / f"outbox-{len(made)}.sqlite3")
        kwargs.setdefault("backoff", Backoff(0.1, 1.0))
        publisher = MqttSink(settings, GW, box, **kwargs)
        made.append((publisher, box))
        if start:
            publisher.start()
        return publisher

    yield make
    for publisher, box in made:
        publisher.stop(PATIENCE_S)
        box.close()


# --------------------------------------------------------------------------- publish / receive


def test_publish_receive_presence_and_camera_state(mosquitto: Mosquitto, subscriber_factory, publisher_factory):
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/#"])
    health = {"cameras": {"cam1": {"state": "online", "fps": 2.0}}, "detector_ms": 31.5}
    pub = publisher_factory(mosquitto.port, view=View(health))
    assert pub.wait_connected(PATIENCE_S)
    sent = [alert("ev-a", 0, snapshot_kb=40), alert("ev-a", 1), alert("ev-b", 0, camera="cam2"), alert("ev-a", 2)]
    for payload in sent:
        pub.submit([payload])
    pub.set_camera_state("cam1", {"state": "online", "fps": 2.0})
    assert pub.flush(PATIENCE_S)
    assert centre.wait_for(lambda ms: sum("/events/" in m.topic for m in ms) == 4, PATIENCE_S)

    events = centre.received(f"gw/{GW}/events/")
    assert [m.json() for m in events] == sent  # exact payloads, in order
    assert [m.topic for m in events] == [f"gw/{GW}/events/{p['camera_id']}" for p in sent]
    assert not any(m.retain for m in events)
    status = centre.received(f"gw/{GW}/status")[0].json()
    assert status["state"] == "online" and status["gateway_id"] == GW
    assert status["cameras"] == health["cameras"] and status["detector_ms"] == 31.5
    assert {"uptime_s", "outbox_depth", "oldest_undelivered_age_s", "mqtt"} <= status.keys()
    assert centre.wait_for(lambda ms: any(m.topic.endswith("cameras/cam1/state") for m in ms), PATIENCE_S)

    h = pub.health()
    assert h["connected"] and h["protocol"] == "5" and h["published"] == 4 and h["outbox_depth"] == 0
    assert h["publish_latency"]["n"] == 4 and h["client_id"] == f"gw-{GW}"

    pub.stop()  # clean stop: offline status, no LWT needed
    assert centre.wait_for(lambda ms: ms[-1].topic.endswith("/status") and ms[-1].json()["state"] == "offline", PATIENCE_S)
    assert centre.received(f"gw/{GW}/status")[-1].json()["reason"] == "shutdown"

    late = subscriber_factory(mosquitto.port, [f"gw/{GW}/status", f"gw/{GW}/cameras/+/state"], persistent=False)
    assert late.wait_for(lambda ms: len(ms) == 2, PATIENCE_S)  # both retained
    assert all(m.retain for m in late.received())


def test_camera_states_set_as_the_output_stops_go_out_before_offline(mosquitto: Mosquitto, subscriber_factory,
                                                                     publisher_factory):
    """The service sets each camera's final state ("stopped") just before it stops the output:
    the output sends what is still unsent, then `offline`, then disconnects."""
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/#"])
    pub = publisher_factory(mosquitto.port, view=View({}))
    assert pub.wait_connected(PATIENCE_S)
    pub.set_camera_state("cam1", {"state": "streaming"})
    assert centre.wait_for(lambda ms: any(m.topic.endswith("cameras/cam1/state") for m in ms), PATIENCE_S)
    for camera in ("cam1", "cam2", "cam3"):
        pub.set_camera_state(camera, {"state": "stopped"})
    pub.stop()
    late = subscriber_factory(mosquitto.port, [f"gw/{GW}/status", f"gw/{GW}/cameras/+/state"], persistent=False)
    assert late.wait_for(lambda ms: len(ms) == 4, PATIENCE_S)  # all retained
    assert {m.topic.split("/")[3]: m.json()["state"] for m in late.received(f"gw/{GW}/cameras/")} == {
        "cam1": "stopped", "cam2": "stopped", "cam3": "stopped"}
    def offline(message) -> bool:
        return message.topic == f"gw/{GW}/status" and message.json()["state"] == "offline"

    assert centre.wait_for(lambda ms: any(offline(m) for m in ms), PATIENCE_S)
    order = [m.topic.split("/")[-2] if m.topic.endswith("/state") else "offline" for m in centre.received()
             if m.topic.endswith("/state") or offline(m)]
    assert order[0] == "cam1" and sorted(order[1:-1]) == ["cam1", "cam2", "cam3"] and order[-1] == "offline"


# --------------------------------------------------------------------------- outage


def test_broker_down_30s_loses_nothing(mosquitto: Mosquitto, subscriber_factory, publisher_factory, caplog):
    caplog.set_level(logging.INFO, logger="gateway.outputs.mqtt.sink")
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/events/#"])
    pub = publisher_factory(mosquitto.port, backoff=Backoff(0.2, 2.0))
    assert pub.wait_connected(PATIENCE_S)
    produced: list[tuple[str, int]] = []

    def produce(count: int, spacing: float) -> float:
        slowest = 0.0
        for _ in range(count):
            index = len(produced)
            key = (f"ev-{index // 10}", index % 10)
            started = time.monotonic()
            pub.submit([alert(*key, snapshot_kb=4 if index % 7 == 0 else 0)])
            slowest = max(slowest, time.monotonic() - started)
            produced.append(key)
            time.sleep(spacing)
        return slowest

    produce(10, 0.0)
    assert centre.wait_for(lambda ms: len(ms) >= 10, PATIENCE_S)

    mosquitto.stop()
    outage_started = time.monotonic()
    slowest = produce(150, 0.195)  # ~30 s of alerts with no broker
    assert time.monotonic() - outage_started >= 29.0
    assert slowest < 5.0, "queueing an alert must not wait for the broker (10 s connect timeout)"
    assert not pub.connected and pub.outbox.depth() >= 150
    mosquitto.start()
    produce(10, 0.0)

    everything = set(produced)
    assert centre.wait_for(lambda ms: set(keys(ms)) >= everything, 30), \
        f"missing: {sorted(everything - set(keys(centre.received())))[:10]}"
    assert pub.flush(PATIENCE_S)
    got = keys(centre.received())
    assert set(got) == everything and len(produced) == 170
    by_key: dict[tuple[str, int], bytes] = {}
    for message in centre.received():  # duplicates (QoS 1) are byte-identical, so event_id+seq identifies them
        key = (message.json()["event_id"], message.json()["seq"])
        assert by_key.setdefault(key, message.payload) == message.payload
    first_seen: dict[str, list[int]] = {}
    for event, seq in dict.fromkeys(got):
        first_seen.setdefault(event, []).append(seq)
    assert all(seqs == sorted(seqs) for seqs in first_seen.values()), "per-event order kept"
    assert "lost connection to MQTT broker" in caplog.text
    assert caplog.text.count("unreachable (Connection refused)") == 1, "a persisting failure is logged once"
    assert " offline; " in caplog.text  # the reconnect line says how long the outage was


# --------------------------------------------------------------------------- kill -9 and the Last Will


class Worker:
    """tests/mqtt_worker.py in a subprocess, with line-wise JSON output."""

    def __init__(self, db: Path, port: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "--db", str(db), "--port", str(port), "--gateway-id", GW],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def expect(self, key: str, timeout: float = PATIENCE_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if key in line:
                return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def test_kill_9_with_undelivered_alerts_then_restart(mosquitto: Mosquitto, subscriber_factory, tmp_path: Path):
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/#"])
    db = tmp_path / "worker-outbox.sqlite3"
    first = Worker(db, mosquitto.port)
    try:
        first.expect("connected")
        first.send("put 5 warmup")
        first.expect("queued")
        assert centre.wait_for(lambda ms: sum("/events/" in m.topic for m in ms) == 5, PATIENCE_S)

        mosquitto.stop()
        first.send("put 30 queued")
        assert first.expect("queued")["depth"] >= 30  # ≥ 20 undelivered when it dies
        first.kill9()
    finally:
        first.proc.kill()

    mosquitto.start()
    second = Worker(db, mosquitto.port)
    try:
        assert second.expect("ready")["depth"] >= 30
        second.expect("connected")
        wanted = {(f"queued-{i // 5}", i % 5) for i in range(30)}
        assert centre.wait_for(lambda ms: set(keys([m for m in ms if "/events/" in m.topic])) >= wanted, PATIENCE_S)

        # Abrupt death while connected: the broker publishes the Last Will (retained "offline").
        assert centre.wait_for(lambda ms: any(m.topic.endswith("/status") and m.json()["state"] == "online"
                                              for m in ms), PATIENCE_S)
        centre.messages.clear()
        second.kill9()
        assert centre.wait_for(lambda ms: any(m.topic.endswith("/status") for m in ms), PATIENCE_S)
        will = [m for m in centre.received() if m.topic.endswith("/status")][-1].json()
        assert will == {"state": "offline", "gateway_id": GW, "reason": "connection lost"}
    finally:
        second.proc.kill()


# --------------------------------------------------------------------------- TLS and credentials


def test_tls_with_client_certificate_and_wrong_ca(tmp_path: Path, subscriber_factory, publisher_factory, caplog):
    good = make_tls_files(tmp_path / "pki", "good")
    wrong = make_tls_files(tmp_path / "pki-wrong", "wrong")
    with Mosquitto(tmp_path / "tls-broker", tls=good, require_client_cert=True) as broker:
        centre = subscriber_factory(broker.port, [f"gw/{GW}/events/#"])
        tls = MqttTls(ca_file=good.ca_cert, cert_file=good.client_cert, key_file=good.client_key)
        pub = publisher_factory(broker.tls_port, tls=tls)
        assert pub.wait_connected(PATIENCE_S), pub.health()["last_error"]
        pub.submit([alert("tls-1", 0)])
        assert centre.wait_for(lambda ms: len(ms) == 1, PATIENCE_S)

        caplog.set_level(logging.WARNING, logger="gateway.outputs.mqtt.sink")
        bad_tls = MqttTls(ca_file=wrong.ca_cert, cert_file=good.client_cert, key_file=good.client_key)
        bad = publisher_factory(broker.tls_port, tls=bad_tls, client_id="gw-bad", backoff=Backoff(0.1, 0.2))
        bad.submit([alert("tls-2", 0)])
        wait_until(lambda: bad.health()["connect_failures"] >= 3, what="three failed TLS connections")
        assert not bad.connected  # keeps retrying
        assert bad.outbox.depth() == 1
        line = next(r.getMessage() for r in caplog.records if "TLS" in r.getMessage())
        assert str(wrong.ca_cert) in line and f"127.0.0.1:{broker.tls_port}" in line
        assert "not signed by the CA" in line and "retrying in" in line


def test_username_password(tmp_path: Path, subscriber_factory, publisher_factory, caplog):
    with Mosquitto(tmp_path / "auth-broker", users={"gw": "s3cret-pw", "centre": "c-pw"}) as broker:
        pub = publisher_factory(broker.port, username="gw", password="s3cret-pw")
        assert pub.wait_connected(PATIENCE_S)
        caplog.set_level(logging.DEBUG, logger="gateway")
        bad = publisher_factory(broker.port, username="gw", password="wrong-pw", client_id="gw-bad")
        wait_until(lambda: "refused" in caplog.text, what="the broker's refusal in the log")
        assert "refused the connection" in caplog.text and "check mqtt.username and mqtt.password" in caplog.text
        assert not bad.connected
        assert "wrong-pw" not in caplog.text and "s3cret-pw" not in caplog.text
        assert "wrong-pw" not in json.dumps(bad.health())


# --------------------------------------------------------------------------- acks


def test_acks_recorded_and_malformed_ones_ignored(mosquitto: Mosquitto, subscriber_factory, publisher_factory,
                                                  ledger, caplog):
    caplog.set_level(logging.INFO, logger="gateway")
    pub = publisher_factory(mosquitto.port, ledger=ledger)
    assert pub.wait_connected(PATIENCE_S)
    sent(ledger, alert("ev-ack", 0))
    pub.submit([alert("ev-ack", 0)])
    assert pub.flush(PATIENCE_S)
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/replies/#"])
    ack_topic = f"gw/{GW}/ack"
    bad = [
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected an object"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (json.dumps({"event_id": "ev-ack", "by": "duty"}).encode(), "missing 'case_id'"),
        (json.dumps({"event_id": "ev-ack", "case_id": 5, "by": "duty"}).encode(), "'case_id' must be"),
        (json.dumps({"event_id": "never-sent", "case_id": "C-9", "by": "duty"}).encode(), "unknown event never-sent"),
    ]
    for payload, _ in bad:
        centre.publish(ack_topic, payload)
    centre.publish(ack_topic, {"event_id": "ev-ack", "case_id": "C-1", "by": "duty-1", "note": "extra keys ok"})
    # the output counts an ack once the ledger recorded (and logged) it: wait on that, not on the row
    wait_until(lambda: pub.health()["acks_recorded"] == 1, what="the good ack")
    record = ledger.ack_for("ev-ack")
    assert record is not None and (record.case_id, record.by) == ("C-1", "duty-1")
    for _, reason in bad:
        assert reason in caplog.text
    assert "acknowledged by duty-1 as case C-1" in caplog.text
    h = pub.health()
    assert h["acks_ignored"] == len(bad) and h["acks_recorded"] == 1 and h["connected"]


# --------------------------------------------------------------------------- remote look


def test_snapshot_requests(mosquitto: Mosquitto, subscriber_factory, publisher_factory, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    asked: list[str] = []

    def provider(camera_id: str) -> bytes | None:
        asked.append(camera_id)
        return JPEG if camera_id == "cam1" else None

    pub = publisher_factory(mosquitto.port, view=View(snapshot=provider))
    assert pub.wait_connected(PATIENCE_S)
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/replies/#", "evil/#"])
    cmd = f"gw/{GW}/cmd/snapshot"
    replies = f"gw/{GW}/replies/"

    def ask(payload: Any, retain: bool = False) -> None:
        centre.publish(cmd, payload if isinstance(payload, (bytes, dict)) else json.dumps(payload), retain=retain)

    def reply(suffix: str) -> dict:
        assert centre.wait_for(lambda ms: any(m.topic == replies + suffix for m in ms), PATIENCE_S), suffix
        return next(m.json() for m in centre.received() if m.topic == replies + suffix)

    ask({"camera_id": "cam1", "reply_to": replies + "r1", "request_id": "q-1"})
    ok = reply("r1")
    assert ok["camera_id"] == "cam1" and ok["request_id"] == "q-1" and ok["taken_at"]
    assert base64.b64decode(ok["snapshot"]["data"]) == JPEG and ok["snapshot"]["mime"] == "image/jpeg"
    assert (ok["snapshot"]["width"], ok["snapshot"]["height"]) == (64, 48)

    ask({"camera_id": "cam1", "reply_to": replies + "r2"})  # within 2 s of the last one
    limited = reply("r2")
    assert limited["error"]["code"] == "rate_limited" and limited["retry_after_s"] > 0

    ask({"camera_id": "cam9", "reply_to": replies + "r3"})
    assert reply("r3")["error"]["code"] == "no_snapshot"
    ask({"camera_id": "../etc", "reply_to": replies + "r4"})
    assert reply("r4")["error"]["code"] == "invalid_request"

    ask({"camera_id": "cam2", "reply_to": "evil/topic"})           # outside the gateway's reply tree
    ask({"camera_id": "cam2", "reply_to": f"gw/{GW}/status"})     # would overwrite our own status
    ask({"camera_id": "cam2", "reply_to": replies + "#"})         # wildcard
    ask({"camera_id": "cam2", "reply_to": "gw/other-gw/replies/x"})
    ask(b"{broken json")
    ask({"camera_id": "cam3", "reply_to": replies + "r6"})  # a later good request still works
    assert reply("r6")["error"]["code"] == "no_snapshot"
    # Requests are handled in order: once r6 is answered, the refused ones before it are done.
    assert not any(m.topic.startswith("evil/") for m in centre.received())
    assert asked == ["cam1", "cam9", "cam3"]
    assert "outside the allowed reply topics" in caplog.text and "wildcards" in caplog.text
    # every refusal is counted; the log keeps 5 lines per kind a minute (a flood must not flood it)
    assert pub.health()["snapshot_refused"] >= 7
    assert pub.connected

    # A retained request would be replayed at every (re)subscription: such replays are refused.
    ask({"camera_id": "cam4", "reply_to": replies + "r7"}, retain=True)  # live copy: served normally
    assert reply("r7")["error"]["code"] == "no_snapshot"
    later = publisher_factory(mosquitto.port, view=View(snapshot=provider), client_id="gw-gk-2")
    assert later.wait_connected(PATIENCE_S)
    wait_until(lambda: "retained snapshot request ignored" in caplog.text, what="the retained request refused")
    assert asked == ["cam1", "cam9", "cam3", "cam4"]
    centre.publish(cmd, b"", retain=True)  # clear it


# --------------------------------------------------------------------------- no broker, fallback


def test_no_broker_queues_without_blocking(publisher_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway.outputs.mqtt.sink")
    pub = publisher_factory(free_port(), backoff=Backoff(0.05, 0.2))
    started = time.monotonic()
    for index in range(50):
        pub.submit([alert(f"nb-{index // 5}", index % 5)])
    assert time.monotonic() - started < PATIENCE_S  # 50 connect timeouts would take minutes
    wait_until(lambda: pub.health()["connect_failures"] >= 4, what="four failed connection attempts")
    h = pub.health()
    assert not h["connected"] and h["outbox_depth"] == 50 and h["oldest_undelivered_age_s"] >= 0
    assert "unreachable" in h["last_error"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "unreachable (Connection refused)" in w]) == 1
    assert "retrying in" in warnings[0] and "alerts queued" in warnings[0]


class _Mqtt311OnlyBroker:
    """Just enough of a 3.1.1-only broker: refuses protocol level 5 (CONNACK rc 1), accepts level 4."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.levels: list[int] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            data = conn.recv(4096)
            level = data[8] if len(data) > 8 else 0  # fixed header (2) + len-prefixed "MQTT" (6)
            self.levels.append(level)
            if level != 4:
                conn.sendall(b"\x20\x02\x00\x01")
                return
            conn.sendall(b"\x20\x02\x00\x00")
            while conn.recv(4096):
                pass

    def close(self) -> None:
        self.server.close()


def test_falls_back_to_mqtt_311(publisher_factory, caplog):
    caplog.set_level(logging.INFO, logger="gateway.outputs.mqtt.sink")
    broker = _Mqtt311OnlyBroker()
    try:
        pub = publisher_factory(broker.port)
        assert pub.wait_connected(PATIENCE_S)
        assert pub.health()["protocol"] == "3.1.1" and broker.levels[:2] == [5, 4]
        assert "does not support MQTT 5; falling back to MQTT 3.1.1" in caplog.text
    finally:
        broker.close()


def test_backoff_grows_with_jitter_and_caps() -> None:
    import random

    backoff = Backoff(1.0, 60.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.75 <= delays[0] <= 1.0 and 1.5 <= delays[1] <= 2.0
    assert all(d <= 60.0 for d in delays) and delays[-1] >= 42.0
    assert len(set(round(d, 3) for d in delays[-4:])) == 4  # jittered, not lock-step
    backoff.reset()
    assert backoff.next_delay() <= 1.0


# --------------------------------------------------------------------------- floods


def test_a_flood_of_deeply_nested_acks_is_counted_in_a_few_log_lines(mosquitto: Mosquitto, subscriber_factory,
                                                                     publisher_factory, ledger, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    pub = publisher_factory(mosquitto.port, ledger=ledger)
    assert pub.wait_connected(PATIENCE_S)
    sent(ledger, alert("ev-flood", 0))
    pub.submit([alert("ev-flood", 0)])
    assert pub.flush(PATIENCE_S)
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/replies/#"])
    nested = b"[" * 5000 + b"]" * 5000  # 10 KB: Python's JSON parser gives up with RecursionError
    for _ in range(500):
        centre.publish(f"gw/{GW}/ack", nested)
    centre.publish(f"gw/{GW}/ack", {"event_id": "ev-flood", "case_id": "C-7", "by": "centre"})
    wait_until(lambda: pub.health()["acks_recorded"] == 1, what="the good ack after the flood")
    assert pub.health()["acks_ignored"] == 500 and pub.connected
    lines = [r for r in caplog.records if "malformed ack" in r.getMessage()]
    assert len(lines) <= 5 and all("nested too deeply" in r.getMessage() for r in lines)
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_requests_for_made_up_cameras_do_not_spend_the_budget_of_real_ones(
        mosquitto: Mosquitto, subscriber_factory, publisher_factory, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    pub = publisher_factory(mosquitto.port, view=View(snapshot=lambda camera_id: JPEG, cameras={"cam1"}))
    assert pub.wait_connected(PATIENCE_S)
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/replies/#"])
    replies = f"gw/{GW}/replies/"
    for index in range(40):
        centre.publish(f"gw/{GW}/cmd/snapshot", {"camera_id": f"ghost{index}", "reply_to": replies + f"g{index}"})
    centre.publish(f"gw/{GW}/cmd/snapshot", {"camera_id": "cam1", "reply_to": replies + "real"})
    assert centre.wait_for(lambda ms: any(m.topic == replies + "real" for m in ms), PATIENCE_S)
    real = next(m.json() for m in centre.received() if m.topic == replies + "real")
    assert "snapshot" in real, real  # served, not rate limited
    ghosts = [m.json() for m in centre.received() if m.topic.startswith(replies + "g")]
    assert ghosts and all(g["error"]["code"] == "no_camera" for g in ghosts)
    assert len([r for r in caplog.records if "snapshot request refused" in r.getMessage()]) <= 5
