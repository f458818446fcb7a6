"""systemd integration: READY=1, then WATCHDOG=1 only while every worker thread is alive."""

from __future__ import annotations

import socket
import textwrap
import threading
from pathlib import Path

from conftest import VTEST, YOLOX_NANO
from gateway.config import load_config
from gateway.runtime.sdnotify import SystemdNotifier
from gateway.runtime.service import GatewayService
from mqtt_broker import free_port
from waiting import PATIENCE_S, wait_until


def receive(sock: socket.socket, want: int) -> list[str]:
    """The next `want` notifications (the supervisor sends one per turn while all is well)."""
    sock.settimeout(PATIENCE_S)
    return [sock.recv(4096).decode() for _ in range(want)]


def drain(sock: socket.socket) -> list[str]:
    """Every notification already waiting on the socket."""
    sock.setblocking(False)
    messages = []
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.setblocking(True)


def test_notifier_reads_systemd_environment() -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "@gw/notify", "WATCHDOG_USEC": "30000000"})
    assert notifier.enabled and notifier.address == "\0gw/notify"
    assert notifier.watchdog_interval_s == 15
    assert not SystemdNotifier({}).enabled
    SystemdNotifier({}).ready("no systemd: a no-op")


def test_watchdog_stops_being_fed_when_a_camera_reader_dies(tmp_path: Path, caplog) -> None:
    config_path = tmp_path / "site.yaml"
    config_path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-watchdog, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{port: {free_port()}}}     # no broker: the gateway must run anyway
        api: {{port: {free_port()}}}
        cameras:
          - {{id: cam1, source: {{file: {VTEST}}}, fps: 2, decode: all}}
        """))
    notify_path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    service = GatewayService(load_config(config_path))
    service.start()
    stop = threading.Event()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "2000000"})
    supervisor = threading.Thread(target=service.run_until, args=(stop, notifier))
    supervisor.start()
    try:
        healthy = receive(sock, 2)
        assert healthy[0].startswith("READY=1\nSTATUS=") and healthy[1].startswith("WATCHDOG=1")

        service.scheduler.workers()[0].reader.stop()  # the reader thread ends: a dead worker
        starving = lambda: caplog.text.count("not feeding the systemd watchdog")  # noqa: E731
        wait_until(lambda: starving() >= 1, what="a supervision turn that sees the dead reader")
        drain(sock)  # fed by the turns before it
        wait_until(lambda: starving() >= 3, what="two more supervision turns")
        assert not [m for m in drain(sock) if m.startswith("WATCHDOG=1")]
        assert service.failed_workers() == ["camera cam1: reader thread is dead"]
    finally:
        stop.set()
        supervisor.join(PATIENCE_S)
        service.stop()
        sock.close()
    assert not supervisor.is_alive()


def test_every_thread_is_supervised_and_a_dead_sensor_input_turns_healthz_failing(tmp_path: Path) -> None:
    """Not only readers: the sensor brokers' input threads, the outputs and the analysis are
    workers too; a dead one stops the watchdog (failed_workers) and /healthz answers 503."""
    import httpx

    api_port = free_port()
    config_path = tmp_path / "site.yaml"
    config_path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-watchdog, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{port: {free_port()}}}
        api: {{port: {api_port}}}
        sensor_brokers: {{site: {{host: 127.0.0.1, port: {free_port()}}}}}
        cameras:
          - {{id: cam1, source: {{file: {VTEST}}}, fps: 2, decode: all}}
        sensors:
          - {{id: door-1, type: door, format: zigbee2mqtt, topic: zigbee2mqtt/door_1}}
        """))
    service = GatewayService(load_config(config_path))
    service.start()
    try:
        assert set(service.workers()) == {"analysis thread", "clip writer thread", "output mqtt: delivery thread",
                                          "sensor broker site: input thread", "camera cam1: reader thread"}
        wait_until(lambda: _healthz(httpx, api_port) is not None, what="the API answering")
        assert service.failed_workers() == []

        service.sensor_input.links["site"].stop()  # the broker's input thread ends: a dead worker
        assert service.failed_workers() == ["sensor broker site: input thread is dead"]
        assert _healthz(httpx, api_port) == (503, "failing")
    finally:
        service.stop()


def _healthz(httpx, port: int) -> tuple[int, str] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=PATIENCE_S)
    except httpx.HTTPError:
        return None
    return response.status_code, response.json()["status"]


def test_a_heartbeat_taken_while_the_gateway_starts_says_starting_not_failed(tmp_path: Path) -> None:
    """The MQTT output connects in the background and sends its first heartbeat at once, which can
    be before the analysis thread is started: that heartbeat must say `starting`, not list the
    analysis as a failed worker (1 start in 2 did, in the field)."""
    config_path = tmp_path / "site.yaml"
    config_path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-watchdog, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{port: {free_port()}}}
        cameras:
          - {{id: cam1, source: {{file: {VTEST}}}, fps: 2, decode: all}}
        """))
    during_start: dict = {}

    class WatchedStart(GatewayService):
        def _start_clips(self, router):  # type: ignore[no-untyped-def]
            # Delivery is up (its heartbeat may go out now); the analysis is not started yet.
            during_start.update(self.live.health())
            return super()._start_clips(router)

    service = WatchedStart(load_config(config_path))
    service.start()
    try:
        assert during_start["starting"] is True and during_start["failed_workers"] == [], during_start
        assert during_start["analysis_alive"] is False
        wait_until(lambda: service.live.health()["analysis_alive"], what="the analysis thread")
        running = service.live.health()
        assert running["starting"] is False and running["failed_workers"] == [], running
    finally:
        service.stop()
