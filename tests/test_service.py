"""`gateway run` end to end, as a real process: real model, real video/RTSP, real Mosquitto.

Each test starts `gateway run -c <generated config>` and watches it from the outside, the way
the township centre does: through MQTT topics (alerts, retained status, heartbeats) and its
exit code and logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, VTEST, YOLOX_NANO
from gateway.events import validate_alert
from mqtt_broker import Mosquitto, Subscriber, free_port, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from rtsp_fixtures import RtspServer, transcode_h264
from waiting import PATIENCE_S

GATEWAY = [sys.executable, "-m", "gateway"]


def write_config(path: Path, broker_port: int, cameras: str, data_dir: Path, api_port: int | None = None) -> Path:
    """A site file; its API on a free port (8080, the default, is the demo's)."""
    path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-test, name: 测试网关, timezone: Asia/Shanghai, data_dir: {data_dir}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{host: 127.0.0.1, port: {broker_port}, heartbeat_s: 1}}
        api: {{port: {api_port or free_port()}}}
        cameras:
        """) + textwrap.indent(cameras, "  "), encoding="utf-8")
    return path


def file_camera(camera_id: str, **rules: str) -> str:
    """The sample video as a live camera (real time, looped), with a crowd rule that fires fast."""
    return textwrap.dedent(f"""\
        - id: {camera_id}
          name: 广场{camera_id}
          grid_id: G-{camera_id}
          location: {{address: 测试路1号, lat: 30.1, lon: 120.2}}
          source: {{file: {VTEST}}}
          fps: 2
          decode: all
          offline_after_s: 3
          rules:
            - {{type: crowd, min_people: 3, for_s: 1, clear_s: 1, severity: 3}}
        """)


def rtsp_camera(camera_id: str, url: str) -> str:
    return textwrap.dedent(f"""\
        - id: {camera_id}
          name: 路口{camera_id}
          source: {{rtsp: "{url}"}}
          fps: 1
          offline_after_s: 2
        """)


class GatewayProcess:
    """`gateway run` in a child process; its log is kept for assertions."""

    def __init__(self, config: Path, log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen([*GATEWAY, "run", "-c", str(config)], cwd=REPO,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 2 * PATIENCE_S) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(PATIENCE_S)
        self._log.close()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator:
    started: list[GatewayProcess] = []

    def start(config: Path) -> GatewayProcess:
        process = GatewayProcess(config, tmp_path / f"gateway-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def alerts(sub: Subscriber, camera_id: str) -> list[dict]:
    return [m.json() for m in sub.received(f"gw/gw-test/events/{camera_id}")]


def heartbeats(sub: Subscriber) -> list[dict]:
    return [m.json() for m in sub.received("gw/gw-test/status") if m.json().get("state") == "online"]


def camera_health(sub: Subscriber, camera_id: str) -> dict | None:
    beats = [beat for beat in heartbeats(sub) if camera_id in beat.get("cameras", {})]
    return beats[-1]["cameras"][camera_id] if beats else None


def wait_until(predicate, timeout: float, what: str, process: GatewayProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.process.poll() is not None:
            pytest.fail(f"gateway exited ({process.process.returncode}) waiting for {what}:\n{process.log()}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; gateway log:\n{process.log()[-3000:]}")


def test_run_publishes_schema_valid_alerts_and_stops_cleanly_on_sigterm(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway) -> None:
    sub = subscriber_factory(mosquitto.port, ["gw/#"])
    config = write_config(tmp_path / "site.yaml", mosquitto.port, file_camera("cam1"), tmp_path / "data")
    gateway = start_gateway(config)

    wait_until(lambda: any(a["state"] == "start" for a in alerts(sub, "cam1")), 2 * PATIENCE_S,
               "the crowd alert to start", gateway)
    start = next(a for a in alerts(sub, "cam1") if a["state"] == "start")
    validate_alert(start)
    assert (start["type"], start["gateway_id"], start["camera_id"], start["grid_id"]) == \
        ("crowd", "gw-test", "cam1", "G-cam1")
    assert start["count"] >= 3 and start["snapshot"]["mime"] == "image/jpeg"
    assert start["title_zh"].startswith("人数超限：广场cam1")
    wait_until(lambda: camera_health(sub, "cam1") is not None, PATIENCE_S, "a heartbeat with camera health",
               gateway)
    late = subscriber_factory(mosquitto.port, ["gw/gw-test/cameras/+/state", "gw/gw-test/status"])
    assert late.wait_for(lambda messages: {m.topic for m in messages if m.retain} == {
        "gw/gw-test/cameras/cam1/state", "gw/gw-test/status"}, 5), "camera state and status not retained"

    assert gateway.stop() == 0, gateway.log()
    log = gateway.log()
    assert "stopped cleanly" in log
    # The open event was ended on the way out, and the broker saw a clean 'offline'.
    assert sub.wait_for(lambda _m: any(a["event_id"] == start["event_id"] and a["state"] == "end"
                                       for a in alerts(sub, "cam1")), 5)
    assert sub.wait_for(lambda _m: any(m.json().get("state") == "offline"
                                       for m in sub.received("gw/gw-test/status")), 5)
    for payload in alerts(sub, "cam1"):
        validate_alert(payload)
    seqs = [a["seq"] for a in alerts(sub, "cam1") if a["event_id"] == start["event_id"]]
    assert seqs == sorted(seqs) and seqs[0] == 1


def test_a_clean_stop_leaves_each_camera_retained_as_stopped(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway) -> None:
    """After SIGTERM the retained camera state still said "streaming": a centre reading it (or an
    NVR dashboard subscribing later) took a stopped gateway's cameras for live ones."""
    sub = subscriber_factory(mosquitto.port, ["gw/gw-test/cameras/+/state", "gw/gw-test/status"])
    config = write_config(tmp_path / "site.yaml", mosquitto.port, file_camera("cam1") + file_camera("cam2"),
                          tmp_path / "data")
    gateway = start_gateway(config)

    def states(messages) -> dict[str, str]:
        return {m.topic.split("/")[3]: m.json()["state"] for m in messages if m.topic.endswith("/state")}

    wait_until(lambda: states(sub.received()) == {"cam1": "streaming", "cam2": "streaming"}, PATIENCE_S,
               "both cameras streaming (retained state)", gateway)
    assert gateway.stop() == 0
    late = subscriber_factory(mosquitto.port, ["gw/gw-test/cameras/+/state", "gw/gw-test/status"])
    assert late.wait_for(lambda messages: len(messages) == 3, PATIENCE_S), "retained state and status"
    assert all(m.retain for m in late.received())
    assert states(late.received()) == {"cam1": "stopped", "cam2": "stopped"}
    final = next(m.json() for m in late.received() if m.topic.endswith("/cam1/state"))
    assert final["camera_id"] == "cam1" and final["frames_decoded"] > 0  # its last figures, kept
    assert late.received("gw/gw-test/status")[0].json()["state"] == "offline"


def test_bad_config_exits_2_with_located_errors(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(f"gateway: {{id: gw}}\ndetector: {{model: {YOLOX_NANO}, threshhold: 2}}\n")
    result = subprocess.run([*GATEWAY, "run", "-c", str(config)], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert f"{config}:2: detector.threshhold: unknown key 'threshhold'" in result.stderr


@pytest.fixture(scope="module")
def rtsp_clip() -> Path:
    return transcode_h264(VTEST, fps=10, gop=10, frames=200)


def test_rtsp_camera_outage_raises_and_ends_camera_offline_while_other_camera_runs(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway, rtsp_clip: Path) -> None:
    flaky = RtspServer({"/cam": rtsp_clip}).start()
    steady = RtspServer({"/cam": rtsp_clip}).start()
    try:
        sub = subscriber_factory(mosquitto.port, ["gw/#"])
        cameras = rtsp_camera("flaky", flaky.url("/cam", "admin:s3cret-pw")) + \
            rtsp_camera("steady", steady.url("/cam"))
        config = write_config(tmp_path / "site.yaml", mosquitto.port, cameras, tmp_path / "data")
        gateway = start_gateway(config)

        def streaming(camera_id: str) -> bool:
            health = camera_health(sub, camera_id)
            return health is not None and health["state"] == "streaming"

        wait_until(lambda: streaming("flaky") and streaming("steady"), PATIENCE_S, "both cameras streaming",
                   gateway)
        flaky.kill()
        wait_until(lambda: any(a["type"] == "camera_offline" and a["state"] == "start"
                               for a in alerts(sub, "flaky")), PATIENCE_S, "camera_offline start", gateway)
        decoded_during_outage = camera_health(sub, "steady")["frames_decoded"]
        wait_until(lambda: camera_health(sub, "steady")["frames_decoded"] > decoded_during_outage + 3,
                   PATIENCE_S, "the steady camera to keep decoding during the outage", gateway)
        flaky.start()
        wait_until(lambda: any(a["type"] == "camera_offline" and a["state"] == "end"
                               for a in alerts(sub, "flaky")), 2 * PATIENCE_S, "camera_offline end", gateway)
        assert camera_health(sub, "flaky")["reconnects"] >= 1
        assert not alerts(sub, "steady"), "the steady camera raised alerts"
        for payload in alerts(sub, "flaky"):
            validate_alert(payload)
        assert gateway.stop() == 0
        everything = gateway.log() + "".join(m.payload.decode() for m in sub.received())
        assert "s3cret-pw" not in everything
        assert "admin:***@" in gateway.log()
    finally:
        flaky.stop()
        steady.stop()


def test_sighup_adds_and_removes_a_camera_and_rejects_a_bad_file(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway) -> None:
    sub = subscriber_factory(mosquitto.port, ["gw/gw-test/status"])
    path = tmp_path / "site.yaml"
    data = tmp_path / "data"
    api_port = free_port()
    write_config(path, mosquitto.port, file_camera("cam1"), data, api_port)
    gateway = start_gateway(path)
    wait_until(lambda: (camera_health(sub, "cam1") or {}).get("frames_decoded", 0) > 0, 30,
               "cam1 decoding", gateway)

    write_config(path, mosquitto.port, file_camera("cam1") + file_camera("cam2"), data, api_port)
    before = camera_health(sub, "cam1")
    gateway.signal(signal.SIGHUP)
    wait_until(lambda: (camera_health(sub, "cam2") or {}).get("frames_decoded", 0) > 0, 30,
               "cam2 added by reload", gateway)
    after = camera_health(sub, "cam1")
    assert after["frames_decoded"] > before["frames_decoded"]
    assert after["reconnects"] == before["reconnects"] == 0, "cam1 was restarted by the reload"

    write_config(path, mosquitto.port, file_camera("cam1"), data, api_port)
    gateway.signal(signal.SIGHUP)
    wait_until(lambda: "cam2" not in heartbeats(sub)[-1].get("cameras", {}), PATIENCE_S, "cam2 removed", gateway)

    good = path.read_text()
    hostile = [good.replace("fps: 2", "fps: fast"),                         # a plain mistake
               good.replace("fps: 2", "fps: " + "7" * 5000),                # a number Python will not parse
               good + "defaults: " + "[" * 3000 + "]" * 3000 + "\n"]        # deeper than the parser goes
    for number, text in enumerate(hostile, 1):
        path.write_text(text)
        gateway.signal(signal.SIGHUP)
        wait_until(lambda: gateway.log().count("reload rejected: ") >= 2 * number, PATIENCE_S,
                   f"bad file {number} to be rejected", gateway)
    log = gateway.log()
    assert f"{path}:" in log and "cameras[0].fps" in log and "nested too deeply" in log and "Traceback" not in log
    running = camera_health(sub, "cam1")["frames_decoded"]
    wait_until(lambda: camera_health(sub, "cam1")["frames_decoded"] > running, PATIENCE_S,
               "cam1 still running on the old config", gateway)
    assert gateway.stop() == 0


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The shipped unit, with ExecStart pointing at this venv's real `gateway` executable."""
    executable = Path(sys.executable).parent / "gateway"
    assert executable.exists(), "the gateway console script is not installed in this venv"
    unit = (REPO / "systemd" / "gateway.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    staged = tmp_path / "gateway.service"
    staged.write_text(unit.replace("/opt/gateway/venv/bin/gateway", str(executable)))
    result = subprocess.run(["systemd-analyze", "verify", str(staged)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr

