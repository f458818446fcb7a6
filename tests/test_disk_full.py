"""A full data disk must not silence the gateway — tested on a real full file system (a 2 MB
tmpfs in a private mount namespace, tests/small_disk.py) with a real Mosquitto.

The policy under test: analysis and routing never fail; evidence pictures are deleted before an
alert has to wait; alerts the disk cannot take are held in memory (bounded, the newest kept),
still delivered, and written when space returns; `disk_full` is reported in health, in the MQTT
status and as an alert; the gateway starts on a full disk (history kept in memory).
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, VTEST, YOLOX_NANO
from gateway.delivery.storage import space_floor, wal_limit
from gateway.events import validate_alert
from mqtt_broker import Mosquitto, free_port, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from small_disk import SmallDisk

WORKER = str(REPO / "tests" / "disk_worker.py")
GW = "gw-delivery"


class Worker:
    """tests/disk_worker.py in its own small disk; `ask` sends a command and returns the reply."""

    def __init__(self, disk: SmallDisk, mqtt_port: int, log_path: Path, **options: float) -> None:
        argv = [sys.executable, WORKER, "--data-dir", disk.inside("data"), "--mqtt-port", str(mqtt_port)]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = disk.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                  text=True, cwd=REPO)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._reply(60) == {"ready": True}

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)

    def _reply(self, timeout: float) -> dict:
        try:
            return json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            pytest.fail(f"the worker did not answer within {timeout} s:\n{self.log()[-3000:]}")

    def ask(self, command: str, timeout: float = 60) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply(timeout)

    def until(self, predicate, timeout: float, what: str) -> dict:
        """Tick once a supervision turn until the state satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.ask("tick")
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}; last state {state}\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.ask("stop", 30)
                self.process.wait(30)
            except Exception:  # noqa: BLE001
                self.process.kill()
                self.process.wait(10)
        self._log.close()


@pytest.fixture
def disk(tmp_path: Path):
    made = SmallDisk(tmp_path / "disk", size_kb=2048).start()
    yield made
    made.stop()


def alerts_on(sub, topic: str = "") -> list[dict]:
    """Alerts the centre received: all of them, or those on `events/<topic>` ("gate", "gateway"),
    each once. Delivery is at least once (QoS 1 on both legs: the broker resends what a subscriber
    had not acknowledged when it stopped), so the centre dedupes by (event_id, seq), as a real one
    does (README "Alerts over MQTT")."""
    unique: dict[tuple[str, int], dict] = {}
    for message in sub.received(f"gw/{GW}/events/"):
        if not topic or message.topic == f"gw/{GW}/events/{topic}":
            alert = message.json()
            unique.setdefault((alert["event_id"], alert["seq"]), alert)
    return list(unique.values())


def delivered(state: dict) -> bool:
    """Every alert sent so far has been acknowledged and deleted from the outbox. Until then a
    late delete could hand the WAL's space back to a disk the test has just filled (the
    outbox's Transaction does so on a nearly full disk), and the room would come from there."""
    return state["connected"] and state["queued"] == 0


def test_a_full_disk_gives_up_evidence_pictures_before_alerts(
        tmp_path: Path, disk: SmallDisk, mosquitto: Mosquitto, subscriber_factory) -> None:
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/events/#"])
    worker = Worker(disk, mosquitto.port, tmp_path / "worker.log")
    try:
        worker.until(lambda s: s["connected"], 30, "the MQTT output to connect")
        early = worker.ask("emit 4 picture")["event_ids"]
        assert centre.wait_for(lambda m: len(m) >= 4, 30)
        before = worker.until(delivered, 30, "the delivered alerts to leave the outbox")
        assert len(before["pictures"]) == 4

        mosquitto.stop()  # the new alerts stay queued: where they are queued is what this test checks
        disk.fill()
        late = worker.ask("emit 2 picture")["event_ids"]
        after = worker.ask("state")
        mosquitto.start()
        assert centre.wait_for(lambda m: {a["event_id"] for a in alerts_on(centre)} >= set(late), 60)
    finally:
        worker.stop()
    # The alerts went to the outbox file, not to memory: the old events' pictures made the room,
    # and those events themselves are kept (snapshot_evicted).
    assert after["held"] == 0 and set(late) <= set(after["pending"]), after
    assert "wrote the 2 alert messages held in memory" in worker.log()
    assert any(after["evicted"][event_id] for event_id in early), after
    assert not {f"{event_id}.jpg" for event_id in early if after["evicted"][event_id]} & set(after["pictures"])
    assert "deleted the evidence pictures of the oldest events" in worker.log()


def test_a_full_disk_gives_up_evidence_clips_first_then_pictures(
        tmp_path: Path, disk: SmallDisk, mosquitto: Mosquitto, subscriber_factory) -> None:
    """The full-disk order of `gateway run`: the oldest clips go first, then the oldest pictures,
    before an alert has to wait in memory."""
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/events/#"])
    worker = Worker(disk, mosquitto.port, tmp_path / "worker.log", clips=1)
    try:
        worker.until(lambda s: s["connected"], 30, "the MQTT output to connect")
        worker.ask("emit 4 picture")
        assert centre.wait_for(lambda m: len(alerts_on(centre)) >= 4, 30)
        before = worker.until(delivered, 30, "the delivered alerts to leave the outbox")
        mosquitto.stop()  # the new alerts must be written, not just sent: that is what needs room
        disk.fill()
        late = worker.ask("emit 2 picture")["event_ids"]
        after = worker.until(lambda s: s["held"] == 0, 30, "the alerts to be written")
        mosquitto.start()
        assert centre.wait_for(lambda m: {a["event_id"] for a in alerts_on(centre)} >= set(late), 60)
    finally:
        worker.stop()
    assert len(before["clips"]) == 1 and len(before["pictures"]) == 4 and not before["disk_full"], before
    assert after["clips"] == [], after  # the clip went first ...
    log = worker.log()
    clips_at = log.index("deleted the oldest evidence clips")
    assert clips_at < log.find("deleted the evidence pictures") or "deleted the evidence pictures" not in log
    assert set(late) <= {a["event_id"] for a in alerts_on(centre)}


def test_the_gateway_never_fills_a_small_disk_by_itself(
        tmp_path: Path, disk: SmallDisk, mosquitto: Mosquitto, subscriber_factory) -> None:
    """Many alerts, one at a time, all delivered: the files' WALs are checkpointed and kept small,
    and the disk keeps its floor of free space, so `disk_full` is never raised by the gateway's
    own files (a 2 MB disk was once filled by the outbox's WAL alone). Then a ballast fills the
    disk and is removed: disk_full ends, and more alerts do not bring it back."""
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/events/#"])
    worker = Worker(disk, mosquitto.port, tmp_path / "worker.log", clear_s=1)
    floor = space_floor(2048 * 1024)
    wal_peaks: list[int] = []

    def emit_and_watch(rounds: int) -> list[dict]:
        states = []
        for _ in range(rounds):
            worker.ask("emit 40 apart")
            states.append(worker.ask("tick"))
            wal_peaks.append(max((path.stat().st_size for path in disk.outside("data").glob("*-wal")), default=0))
            assert disk.free_bytes() >= floor - 64 * 1024, f"{disk.free_bytes()} bytes free"
        return states

    try:
        worker.until(lambda s: s["connected"], 30, "the MQTT output to connect")
        states = emit_and_watch(8)
        assert centre.wait_for(lambda _m: len(alerts_on(centre, "gate")) == 320, 60)
        disk.fill()
        worker.ask("emit 2")
        worker.until(lambda s: s["disk_alert"], 30, "the disk_full alert")
        disk.free()
        worker.until(lambda s: not s["disk_alert"] and s["held"] == 0, 30, "the disk_full alert to end")
        after = emit_and_watch(4)
        assert centre.wait_for(lambda _m: len(alerts_on(centre, "gate")) == 482, 60)
    finally:
        worker.stop()
    assert not any(state["disk_full"] for state in states + after), [s["problem"] for s in states + after]
    assert max(wal_peaks) <= 2 * wal_limit(2048 * 1024), wal_peaks


def test_alerts_are_held_delivered_and_written_while_the_disk_is_full_and_disk_full_is_an_alert(
        tmp_path: Path, disk: SmallDisk, mosquitto: Mosquitto, subscriber_factory) -> None:
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/events/#"])
    worker = Worker(disk, mosquitto.port, tmp_path / "worker.log", clear_s=1)
    try:
        worker.until(lambda s: s["connected"], 30, "the MQTT output to connect")
        disk.fill()
        delivered_from_memory = worker.ask("emit 2 picture")["event_ids"]  # nothing raised
        assert centre.wait_for(lambda m: {a["event_id"] for a in alerts_on(centre, "gate")} >= set(delivered_from_memory), 30)
        full = worker.until(lambda s: s["disk_full"], 10, "disk_full in health")
        assert "the disk is full" in full["problem"]
        assert centre.wait_for(lambda m: any(a["state"] == "start" for a in alerts_on(centre, "gateway")), 30), \
            "no disk_full alert"

        mosquitto.stop()  # now they cannot leave memory either
        waiting = worker.ask("emit 3 picture")["event_ids"]
        state = worker.ask("state")
        assert set(waiting) <= set(state["pending"]) and state["held"] >= 3 and state["disk_full"]

        disk.free()
        state = worker.until(lambda s: s["held"] == 0 and not s["disk_full"], 30, "the held alerts to be written")
        assert set(waiting) <= set(state["pending"]), "held alerts were not written to the outbox file"
        worker.until(lambda s: not s["disk_alert"], 30, "the disk_full alert to end")
        mosquitto.start()
        assert centre.wait_for(lambda m: {a["event_id"] for a in alerts_on(centre, "gate")} >= set(waiting), 60)
        assert centre.wait_for(lambda m: any(a["state"] == "end" for a in alerts_on(centre, "gateway")), 60), \
            "the disk_full alert did not end"
    finally:
        worker.stop()
    [start] = [a for a in alerts_on(centre, "gateway") if a["state"] == "start"]
    [end] = [a for a in alerts_on(centre, "gateway") if a["state"] == "end"]
    for payload in (start, end):
        validate_alert(payload)
        assert payload["type"] == "disk_full" and payload["title_zh"].startswith("存储空间已满：东门网关")
    assert start["event_id"] == end["event_id"]
    for payload in alerts_on(centre, "gate"):
        validate_alert(payload)


def test_the_delivery_stack_starts_on_a_full_disk_and_opens_its_files_when_space_returns(
        tmp_path: Path, disk: SmallDisk, mosquitto: Mosquitto, subscriber_factory) -> None:
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/events/#"])
    disk.fill()  # before any file exists: neither the outbox nor the history can be opened
    worker = Worker(disk, mosquitto.port, tmp_path / "worker.log")
    try:
        state = worker.until(lambda s: s["connected"], 30, "the MQTT output to connect")
        assert state["disk_full"] and "kept in memory" in state["history"]
        mosquitto.stop()
        queued = worker.ask("emit 2")["event_ids"]
        assert worker.ask("state")["held"] == 2
        disk.free()
        state = worker.until(lambda s: s["held"] == 0 and not s["disk_full"], 30, "the outbox file to open")
        assert state["pending"] == queued and disk.outside("data", "outbox.sqlite3").exists()
        mosquitto.start()
        assert centre.wait_for(lambda m: {a["event_id"] for a in alerts_on(centre, "gate")} == set(queued), 60)
    finally:
        worker.stop()
    assert "opened at last" in worker.log()


def test_memory_for_held_alerts_is_bounded_and_keeps_the_newest(tmp_path: Path, disk: SmallDisk) -> None:
    worker = Worker(disk, free_port(), tmp_path / "worker.log", hold_max_kb=24)  # no broker: nothing leaves
    try:
        disk.fill()
        with_pictures = worker.ask("emit 2 picture")["event_ids"]
        plain = []
        for _ in range(6):
            plain += worker.ask("emit 5")["event_ids"]
        state = worker.ask("state")
        assert state["held"] == len(state["pending"]) < len(with_pictures) + len(plain)
        assert state["pending"] == (with_pictures + plain)[-len(state["pending"]):], "the newest were not kept"
        assert state["evictions"]["snapshot"] >= 2 and state["evictions"]["message"] >= 1
        kept = state["pending"]
        disk.free()
        state = worker.until(lambda s: s["held"] == 0, 30, "the held alerts to be written")
        assert state["pending"] == kept
    finally:
        worker.stop()
    assert "DROPPED" in worker.log() and "storage.hold_max_mb" in worker.log()


# --------------------------------------------------------------------------- `gateway run`


def write_config(path: Path, data_dir: str, broker_port: int) -> Path:
    path.write_text(textwrap.dedent(f"""\
        gateway: {{id: {GW}, name: 东门网关, timezone: Asia/Shanghai, data_dir: {data_dir}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{host: 127.0.0.1, port: {broker_port}, heartbeat_s: 1}}
        api: {{port: {free_port()}}}
        cameras:
          - id: gate
            name: 广场
            source: {{file: {VTEST}}}
            fps: 2
            decode: all
            rules:
              - {{type: crowd, min_people: 3, for_s: 1, clear_s: 1, severity: 3, updates: {{min_change: 1, every_s: 2}}}}
        """), encoding="utf-8")
    return path


class Gateway:
    """`gateway run` inside the small disk's namespace; its output kept in a log file."""

    def __init__(self, disk: SmallDisk, config: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = disk.popen([sys.executable, "-m", "gateway", "run", "-c", str(config)],
                                  stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def test_gateway_keeps_analysing_on_a_full_disk_starts_on_one_and_recovers(
        tmp_path: Path, disk: SmallDisk, mosquitto: Mosquitto, subscriber_factory) -> None:
    centre = subscriber_factory(mosquitto.port, [f"gw/{GW}/#"])
    config = write_config(tmp_path / "site.yaml", disk.inside("data"), mosquitto.port)
    running: list[Gateway] = []

    def start() -> Gateway:
        running.append(Gateway(disk, config, tmp_path / f"gateway-{len(running)}.log"))
        return running[-1]

    def wait(predicate, timeout: float, what: str) -> None:
        if not centre.wait_for(lambda _m: predicate(), timeout):
            gateway = running[-1]
            pytest.fail(f"timed out after {timeout} s waiting for {what} (gateway exit {gateway.process.poll()}):\n"
                        f"{gateway.log()[-4000:]}")

    def heartbeats() -> list[dict]:
        return [m.json() for m in centre.received(f"gw/{GW}/status") if m.json().get("state") == "online"]

    def status(after: int = 0) -> dict:
        beats = heartbeats()[after:]
        return beats[-1] if beats else {}

    def disk_alerts(state: str) -> list[dict]:
        """disk_full messages in `state`, one per event (a duplicate repeats event_id and seq)."""
        unique = {(a["event_id"], a["seq"]): a for a in alerts_on(centre, "gateway") if a["state"] == state}
        return list(unique.values())

    try:
        first = start()
        wait(lambda: status().get("analysis_alive") and status().get("disk_full") is False, 60, "a healthy heartbeat")
        wait(lambda: len(alerts_on(centre, "gate")) >= 1, 90, "a crowd alert")

        disk.fill()  # the disk fills up while the gateway runs: it must go on analysing and alerting
        seen = len(alerts_on(centre, "gate"))
        wait(lambda: status().get("disk_full") is True, 60, "a heartbeat that says disk_full")
        wait(lambda: len(disk_alerts("start")) == 1, 30, "the disk_full alert")
        wait(lambda: len(alerts_on(centre, "gate")) >= seen + 2, 90, "crowd alerts after the disk filled up")
        assert status()["analysis_alive"] and status()["outputs"]["mqtt"]["alive"]
        assert first.stop() == 0, first.log()[-4000:]

        beats_before = len(heartbeats())
        second = start()  # a restart while the disk is still full
        wait(lambda: status(beats_before).get("disk_full") is True and status(beats_before).get("analysis_alive"),
             60, "the restarted gateway's heartbeat, with disk_full")
        seen = len(alerts_on(centre, "gate"))
        wait(lambda: len(alerts_on(centre, "gate")) >= seen + 2, 90, "crowd alerts after a restart on a full disk")
        restarted_event = disk_alerts("start")[-1]["event_id"]

        disk.free()
        wait(lambda: any(a["event_id"] == restarted_event for a in disk_alerts("end")), 60,
             "the disk_full alert to end")
        wait(lambda: status(beats_before).get("disk_full") is False, 30, "a heartbeat without disk_full")
        assert second.stop() == 0, second.log()[-4000:]
    finally:
        for gateway in running:
            gateway.kill()
    for gateway in running:
        assert "Traceback" not in gateway.log(), gateway.log()[-4000:]
    for payload in alerts_on(centre, ""):
        validate_alert(payload)
