"""systemd integration: READY=1, then WATCHDOG=1 only while every worker thread is alive."""

from __future__ import annotations

import socket
import textwrap
import threading
import time
from pathlib import Path

from conftest import VTEST, YOLOX_NANO
from mqtt_broker import free_port

from gateway.config import load_config
from gateway.sdnotify import SystemdNotifier
from gateway.service import GatewayService


def receive(sock: socket.socket, seconds: float) -> list[str]:
    """Every notification that arrives within `seconds`."""
    deadline = time.monotonic() + seconds
    messages = []
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return messages


def test_notifier_reads_systemd_environment() -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "@gw/notify", "WATCHDOG_USEC": "30000000"})
    assert notifier.enabled and notifier.address == "\0gw/notify"
    assert notifier.watchdog_interval_s == 15
    assert not SystemdNotifier({}).enabled
    SystemdNotifier({}).ready("no systemd: a no-op")


def test_watchdog_stops_being_fed_when_a_camera_reader_dies(tmp_path: Path) -> None:
    config_path = tmp_path / "site.yaml"
    config_path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-watchdog, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{port: {free_port()}}}     # no broker: the gateway must run anyway
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
        healthy = receive(sock, 3)
        assert healthy[0].startswith("READY=1\nSTATUS=")
        assert any(message.startswith("WATCHDOG=1") for message in healthy[1:])

        service.scheduler.workers()[0].reader.stop()  # the reader thread ends: a dead worker
        receive(sock, 1.2)  # a turn already under way may still feed it once
        assert not [m for m in receive(sock, 3) if m.startswith("WATCHDOG=1")]
        assert service.failed_workers() == ["camera cam1: reader thread is dead"]
    finally:
        stop.set()
        supervisor.join(10)
        service.stop()
        sock.close()
    assert not supervisor.is_alive()
