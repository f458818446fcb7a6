"""The GB/T 28181 output against a real third-party SIP peer: SIPp (Debian `sip-tester`) plays
the platform with the scenarios in tests/sipp/, on 127.0.0.1, over UDP and TCP.

What SIPp checks itself (it answers 403/400 instead of 200 when a check fails, so the device
never reaches the state the test waits for): the digest of the REGISTER (<verifyauth>, with
and without qop) and that it answers the nonce SIPp issued; the Alarm body (GB2312
declaration, CmdType, channel, priority, method 5, type code, AlarmTime format); the Catalog
answer (SN of the query, SumNum, the channel IDs). What the test checks in SIPp's message log:
the GB2312 bytes of the Chinese text, the local AlarmTime, the escaping, the unregistration.

Synchronisation is on the device's state (its health), SIPp's exit status and its message log,
never on sleeps; every wait has a generous timeout.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config.gb28181 import Gb28181Output
from gateway.config.models import Camera
from gateway.delivery.sink import DeliveryFailed, Transport
from gateway.events.payload import AlertSource, AlertSubject, Reading, Stamp, build_payload
from gateway.outputs.gb28181 import Gb28181Transport

SCENARIOS = Path(__file__).resolve().parent / "sipp"
HOST = "127.0.0.1"
PASSWORD = "s3cret-Pa55"
DEVICE_ID = "34020000001180000001"
PLATFORM_ID = "34020000002000000001"
CHANNELS = {"east-gate": "34020000001320000001", "west-gate": "34020000001320000002"}
WAIT_S = 30.0
"""Generous: the machine is shared and loaded; the waits end as soon as the state is reached."""


# --------------------------------------------------------------------------- SIPp as the platform


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.fail("sipp is not installed (Debian package sip-tester; .ci/setup installs it)")
    return path


def platform_port() -> int:
    """A free port below the ephemeral range, so that a platform restarted on it finds it free."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(min(20000, low - 2000), low - 1)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
                udp.bind((HOST, port))
                tcp.bind((HOST, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port for the SIPp platform")


def port_bound(port: int, transport: str) -> bool:
    """Whether something listens on 127.0.0.1:port (UDP bound / TCP LISTEN), from /proc/net."""
    table = Path("/proc/net/udp" if transport == "udp" else "/proc/net/tcp").read_text().splitlines()[1:]
    wanted = f"0100007F:{port:04X}"
    return any(fields[1] == wanted and (transport == "udp" or fields[3] == "0A")
               for fields in (line.split() for line in table))


class SippPlatform:
    """One SIPp process running a scenario of tests/sipp/ as the platform, with its logs."""

    def __init__(self, directory: Path, port: int, transport: str, *, scenario: str = "platform.xml",
                 qop: bool = True, granted_expires: int = 3600, name: str = "platform",
                 variables: dict[str, str] | None = None) -> None:
        self.port, self.transport, self.scenario, self.qop = port, transport, scenario, qop
        self.variables = variables or {}
        """Other scenarios' global variables (-set name value)."""
        self.granted_expires = granted_expires
        self.message_file = directory / f"{name}-messages.log"
        self.output_file = directory / f"{name}-screen.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SippPlatform:
        command = [
            sipp_binary(), "-sf", str(SCENARIOS / self.scenario), "-i", HOST, "-p", str(self.port), "-bind_local",
            "-t", "u1" if self.transport == "udp" else "t1", "-nostdin", "-trace_msg",
            "-message_file", str(self.message_file), "-message_overwrite", "false",
        ]
        if self.scenario == "platform.xml":  # its global variables (the silent one has none)
            command += ["-set", "password", PASSWORD, "-set", "granted_expires", str(self.granted_expires),
                        "-set", "challenge_qop", ', qop="auth"' if self.qop else ""]
        elif self.scenario == "queries_platform.xml":
            command += ["-set", "password", PASSWORD]
        for name, value in self.variables.items():
            command += ["-set", name, value]
        with self.output_file.open("ab") as output:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while not port_bound(self.port, self.transport):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"SIPp did not start on {HOST}:{self.port}/{self.transport} "
                            f"(exit {self.process.poll()}): {self.screen()[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> int:
        """SIGUSR1: SIPp's own 'quit once the calls in progress are done'; its exit status then
        says whether every call went as the scenario wants (0)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            try:
                self.process.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"SIPp did not quit on SIGUSR1: {self.screen()[-2000:]}")
        return self.process.returncode

    def kill(self) -> None:
        """The platform dies at once (its registration call is left hanging, as a crash leaves it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT_S)

    def messages(self) -> bytes:
        return self.message_file.read_bytes() if self.message_file.exists() else b""

    def screen(self) -> str:
        return self.output_file.read_bytes().decode("utf-8", errors="replace") if self.output_file.exists() else ""


@pytest.fixture
def platforms(tmp_path: Path) -> Iterator[Callable[..., SippPlatform]]:
    started: list[SippPlatform] = []

    def make(port: int, transport: str, **options: Any) -> SippPlatform:
        platform = SippPlatform(tmp_path, port, transport, **options)
        started.append(platform)
        return platform.start()

    yield make
    for platform in started:
        platform.kill()


@pytest.fixture
def devices() -> Iterator[Callable[..., Gb28181Transport]]:
    opened: list[Gb28181Transport] = []

    def make(port: int, transport: str, **overrides: Any) -> Gb28181Transport:
        settings = Gb28181Output.model_validate({
            "host": HOST, "port": port, "transport": transport, "platform_id": PLATFORM_ID,
            "device_id": DEVICE_ID, "password": PASSWORD, "bind": HOST, "local_port": 0,
            "keepalive_s": 1, "answer_timeout_s": 2, "max_missed_keepalives": 2, "retry_max_s": 2,
            "channels": CHANNELS, **overrides,
        })
        device = Gb28181Transport(settings, cameras=CAMERAS, timezone="Asia/Shanghai", gateway_name="东城网关")
        opened.append(device)
        device.open()
        return device

    yield make
    for device in opened:
        device.close()


CAMERAS = [
    Camera.model_validate({"id": "east-gate", "name": "东门广场", "source": {"rtsp": "rtsp://127.0.0.1/east"},
                           "location": {"address": "东城路 1 号 <北侧> & 堃园", "lat": 31.33, "lon": 118.38}}),
    Camera.model_validate({"id": "west-gate", "name": "西门", "source": {"rtsp": "rtsp://127.0.0.1/west"}}),
    Camera.model_validate({"id": "no-channel", "name": "后院", "source": {"rtsp": "rtsp://127.0.0.1/yard"}}),
]


def wait_for(device: Gb28181Transport, condition: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        health = device.health()
        if condition(health):
            return health
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; device health: {health}")
        time.sleep(0.02)


def catalog_answered(queries: int) -> Callable[[dict[str, Any]], bool]:
    """The platform asked for the catalogue `queries` times and took every answer MESSAGE (SIPp
    says 200 to a Catalog answer only when it lists both channels)."""
    return lambda h: h["queries_answered"] == queries and 0 < h["answers_sent"] == h["answers_acknowledged"]


def alert(state: str = "start", seq: int = 1, title_place: str = "东门广场") -> dict[str, Any]:
    """A real gw.alert/1 payload from the payload builder: a gathering of 12 at the east gate."""
    started = datetime(2026, 11, 21, 20, 26, 29, 95000, tzinfo=UTC)  # 04:26:29 in Shanghai
    return build_payload(
        AlertSource(gateway_id="gw1", camera_id="east-gate", camera_name="东门广场", grid_id="G1",
                    address="东城路 1 号", lat=31.33, lon=118.38),
        AlertSubject(type="gathering", severity=3, place=f"{title_place}<&>"),
        Stamp(event_id="d3c1e830-bf1a-4835-9e02-895ff5270e20", seq=seq, state=state, started_at=started,
              updated_at=started, ended_at=started if state == "end" else None, peak_count=12),
        Reading(count=12),
        None,
    )


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("transport, qop", [("udp", True), ("udp", False), ("tcp", True), ("tcp", False)])
def test_register_catalog_and_alarm_against_sipp(platforms, devices, caplog, transport: str, qop: bool):
    caplog.set_level(logging.DEBUG, logger="gateway.outputs.gb28181")
    port = platform_port()
    platform = platforms(port, transport, qop=qop)
    device = devices(port, transport)
    assert isinstance(device, Transport)
    # SIPp answers 200 only to a REGISTER whose digest it verified, and the Catalog answer only
    # when it lists the two channels: the device counts those 200s.
    health = wait_for(device, lambda h: h["registered"] and h["keepalives_answered"] >= 1 and catalog_answered(1)(h),
                      "registration, an answered keepalive and the answered Catalog query")
    assert health["connected"] and health["registrations"] == 1 and health["registration_failures"] == 0

    device.deliver(alert(), timeout_s=WAIT_S)  # returns: SIPp found the alarm as expected and said 200
    device.deliver(alert(state="update", seq=2), timeout_s=WAIT_S)  # no lifecycle on the platform: not sent
    device.deliver(alert(state="end", seq=3), timeout_s=WAIT_S)
    assert device.health()["alarms_delivered"] == 1

    device.close()  # unregisters: SIPp ends the registration call on Expires: 0
    assert platform.stop() == 0, platform.screen()[-3000:]  # every call went as the scenario wants

    log = platform.messages()
    assert b"SIP/2.0 400" not in log and b"SIP/2.0 403" not in log
    assert log.count(b"<CmdType>Alarm</CmdType>") == 1
    authorization = log[log.index(b"Authorization: Digest"):].split(b"\r\n", 1)[0]
    assert (b"qop=auth" in authorization) is qop and f'username="{DEVICE_ID}"'.encode() in authorization
    alarm = log[log.index(b"<CmdType>Alarm</CmdType>"):]
    alarm = alarm[:alarm.index(b"</Notify>")]
    assert "人员聚集：东门广场&lt;&amp;&gt; 12人".encode("gb2312") in alarm  # GB2312 bytes, escaped
    assert "人员聚集".encode() not in log
    assert b"<AlarmTime>2026-11-22T04:26:29</AlarmTime>" in alarm  # UTC 20:26 is 04:26 in Shanghai
    assert b"<Longitude>118.380000</Longitude>" in alarm and b"<Latitude>31.330000</Latitude>" in alarm
    catalog = log[log.index(b"<CmdType>Catalog</CmdType>\r\n<SN>17430</SN>\r\n<DeviceID>" + DEVICE_ID.encode()):]
    assert "<Name>东门广场</Name>".encode("gb2312") in catalog
    address = "<Address>东城路 1 号 &lt;北侧&gt; &amp; 堃园</Address>".replace("堃", "&#22531;")
    assert address.encode("gb2312") in catalog
    assert b"34020000001320000002" in catalog and "后院".encode("gb2312") not in catalog
    assert b"Expires: 0\r\n" in log  # the goodbye REGISTER
    assert caplog.records and not [r for r in caplog.records if PASSWORD in r.getMessage()]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_registration_is_refreshed_before_it_expires(platforms, devices, transport: str):
    port = platform_port()
    platform = platforms(port, transport, granted_expires=4)  # SIPp grants 4 s of the 3600 asked
    device = devices(port, transport)
    health = wait_for(device, lambda h: h["refreshes"] >= 2 and catalog_answered(1)(h),
                      "two refreshes of the registration (each verified by SIPp)")
    assert health["registrations"] == 1 and health["registration_failures"] == 0 and health["registered"]
    device.close()
    assert platform.stop() == 0, platform.screen()[-3000:]
    log = platform.messages()
    assert b"nc=00000002" in log and b"nc=00000003" in log  # the same nonce, counted on
    call_ids = re.findall(rb"\nREGISTER sip:[^\r]*\r\n(?:[^\r]+\r\n)*?Call-ID: ([^\r]+)\r\n", log)
    assert len(call_ids) >= 4 and len(set(call_ids)) == 1  # refreshes keep the registration's Call-ID


def test_wrong_password_is_refused_by_sipp_and_reported(platforms, devices):
    port = platform_port()
    platform = platforms(port, "udp")
    device = devices(port, "udp", password="not-the-password")
    health = wait_for(device, lambda h: h["registration_failures"] >= 1, "a failed registration")
    assert not health["registered"]
    assert "refused the registration: 403 Forbidden" in health["last_error"]
    with pytest.raises(DeliveryFailed, match="not registered .*403 Forbidden"):
        device.deliver(alert(), timeout_s=0.5)
    assert b"SIP/2.0 403 Forbidden" in platform.messages()
    assert "not-the-password" not in str(health) and "not-the-password" not in platform.screen()


def test_datagrams_from_other_addresses_are_dropped_unanswered_counted_and_logged_sparingly(
        platforms, devices, caplog):
    """A host other than the platform (here: another port on the same address) gets nothing:
    no answer (no reflection), no catalogue pushed to the platform, a few log lines, a count."""
    caplog.set_level(logging.WARNING, logger="gateway.outputs.gb28181")
    port = platform_port()
    platform = platforms(port, "udp")
    device = devices(port, "udp")
    health = wait_for(device, lambda h: h["registered"] and catalog_answered(1)(h), "registration")
    local_host, local_port = health["local"].rsplit(":", 1)
    forged = (
        f"MESSAGE sip:{DEVICE_ID}@{health['local']} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:9;branch=z9hG4bKforged\r\n"
        f"From: <sip:{PLATFORM_ID}@3402000000>;tag=x\r\nTo: <sip:{DEVICE_ID}@3402000000>\r\n"
        "Call-ID: forged@x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 59\r\n\r\n"
        "<Query><CmdType>Catalog</CmdType><SN>1</SN></Query>\r\n\r\n\r\n\r\n"
    ).encode()
    garbage = [b"", b"\x00\xff" * 300, b"SIP/2.0 200 OK\r\n\r\n", b"REGISTER sip:x SIP/2.0\r\nVia: x\r\n\r\n",
               b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 99999\r\n\r\n", b"INVITE \xe4\xb8\xad SIP/2.0\r\n\r\n"]
    datagrams = garbage + [forged] * 200
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        attacker.bind((HOST, 0))
        for start in range(0, len(datagrams), 10):  # in tens: a burst beyond the socket buffer is lost
            for datagram in datagrams[start:start + 10]:
                attacker.sendto(datagram, (local_host, int(local_port)))
            sent = min(start + 10, len(datagrams))
            health = wait_for(device, lambda h, sent=sent: h["foreign_datagrams"] == sent,
                              f"{sent} foreign datagrams counted")
        attacker.setblocking(False)
        with pytest.raises(BlockingIOError):
            attacker.recv(65535)  # nothing was answered
    assert health["alive"] and health["registered"] and health["queries_answered"] == 1  # only SIPp's query
    dropped = [r for r in caplog.records if "not the platform's address" in r.getMessage()]
    assert 1 <= len(dropped) <= 15  # 5 a minute per source (not 206), the next one says how many were held back
    assert all(len(r.getMessage()) < 400 for r in dropped)  # a short prefix of the datagram, never all of it
    device.deliver(alert(), timeout_s=WAIT_S)  # still serving
    device.close()
    assert platform.stop() == 0, platform.screen()[-3000:]
    assert b"<SN>1</SN>" not in platform.messages()  # no catalogue was pushed for the forged query


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_platform_outage_alarm_fails_then_is_delivered_after_re_registration(platforms, devices, transport: str):
    port = platform_port()
    first = platforms(port, transport, name="first")
    device = devices(port, transport)
    wait_for(device, lambda h: h["registered"] and catalog_answered(1)(h), "registration and the catalogue")
    device.deliver(alert(title_place="东门一"), timeout_s=WAIT_S)

    # The platform goes silent: SIPp still receives, but answers nothing.
    first.kill()
    silent = platforms(port, transport, scenario="silent_platform.xml", name="silent")
    with pytest.raises(DeliveryFailed, match="no answer|not registered|connection lost"):
        device.deliver(alert(title_place="东门二"), timeout_s=10)
    health = wait_for(device, lambda h: not h["registered"] and h["registration_failures"] >= 1,
                      "the device to notice the silence and fail to register again")
    assert health["last_error"]
    if transport == "udp":  # the silent platform saw the device try to register again
        deadline = time.monotonic() + WAIT_S
        while silent.messages().count(b"REGISTER sip:") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert silent.messages().count(b"REGISTER sip:") >= 1
    silent.kill()

    # The platform answers again: the device registers anew and the alarm, sent again, arrives.
    again = platforms(port, transport, name="again")
    wait_for(device, lambda h: h["registered"] and h["registrations"] >= 2, "registration with the returned platform")
    device.deliver(alert(title_place="东门二"), timeout_s=WAIT_S)
    wait_for(device, catalog_answered(2), "the returned platform's catalogue query answered")
    device.close()
    assert again.stop() == 0, again.screen()[-3000:]
    assert "东门二".encode("gb2312") in again.messages()
    assert "东门一".encode("gb2312") not in again.messages()


def test_a_local_port_in_use_is_reported_not_shared(devices):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((HOST, 0))
        taken = squatter.getsockname()[1]
        device = devices(platform_port(), "udp", local_port=taken)
        health = wait_for(device, lambda h: h["last_error"] is not None, "the bind failure")
        assert f"cannot bind the local SIP port {HOST}:{taken}/udp" in health["last_error"]
        assert "in use" in health["last_error"] and health["alive"] and not health["registered"]
        with pytest.raises(DeliveryFailed, match="not registered"):
            device.deliver(alert(), timeout_s=0.2)
    device.close()
    with pytest.raises(DeliveryFailed, match="not running"):
        device.deliver(alert(), timeout_s=0.2)
