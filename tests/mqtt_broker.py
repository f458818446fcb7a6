"""A real Mosquitto broker for tests and benchmarks, on a free 127.0.0.1 port, plus helpers.

Use from a test module (tests/ is on sys.path through the rootdir conftest, tests/ has no
__init__.py, so the module is `mqtt_broker`, not `tests.mqtt_broker`):

    from mqtt_broker import Mosquitto, Subscriber, make_tls_files
    from mqtt_broker import mosquitto, subscriber_factory  # noqa: F401  (registers the fixtures)

(`pytest_plugins = ["mqtt_broker"]` also works when the module does not import it directly; doing
both makes pytest warn that it cannot rewrite asserts in an already imported module.)

Fixtures: `mosquitto` (a started broker in tmp_path, killed at teardown) and `subscriber_factory`
(paho subscribers that are closed at teardown). Outside pytest (bench/) use the classes directly.

The broker is configured from a generated file: listener(s) bound to 127.0.0.1 only, persistence
on (so sessions and queued messages survive `stop()`/`start()`, as a production broker's do),
generous queue limits, optional TLS listener (test CA made with `openssl`) and password file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from waiting import PATIENCE_S

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if path is None:
        raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto; .ci/setup installs it)")
    return path


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def make_tls_files(directory: Path, name: str = "test") -> TlsFiles:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = f"{name}-ca.key", f"{name}-ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
             "-keyout", ca_key, "-out", ca_cert, cwd=d)
    (d / f"{name}-server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / f"{name}-client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for role in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}-{role}",
                 "-keyout", f"{name}-{role}.key", "-out", f"{name}-{role}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}-{role}.csr", "-CA", ca_cert, "-CAkey", ca_key,
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}-{role}.ext",
                 "-out", f"{name}-{role}.pem", cwd=d)
    return TlsFiles(d / ca_cert, d / f"{name}-server.pem", d / f"{name}-server.key",
                    d / f"{name}-client.pem", d / f"{name}-client.key")


# --------------------------------------------------------------------------- the broker


class Mosquitto:
    """One mosquitto process; `stop()`/`start()` keep the port, the config and the persisted state."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        tls: TlsFiles | None = None,
        require_client_cert: bool = False,
        users: dict[str, str] | None = None,
        persistence: bool = True,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self._proc: subprocess.Popen | None = None
        self.conf_path.write_text(self._config(tls, require_client_cert, users, persistence))

    def _config(self, tls: TlsFiles | None, require_cert: bool, users: dict[str, str] | None,
                persistence: bool) -> str:
        lines = [
            "per_listener_settings false",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            "max_queued_messages 100000",
            "max_inflight_messages 20",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to 'mosquitto' and cannot use workdir
        if users:
            password_file = self.workdir / "passwords"
            password_file.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(password_file), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        lines.append(f"listener {self.port} {HOST}")
        if tls:
            lines += [
                f"listener {self.tls_port} {HOST}",
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                f"require_certificate {'true' if require_cert else 'false'}",
            ]
        return "\n".join(lines) + "\n"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = PATIENCE_S) -> Mosquitto:
        if self.running:
            return self
        self._proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {err}\n{self.log_tail()}")
            if all(_accepting(port) for port in ports):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {ports} within {timeout} s\n{self.log_tail()}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM): mosquitto saves sessions and queued messages, like a service stop."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._close()

    def kill(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._close()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no mosquitto log)"

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- a real subscriber


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.time() on receipt

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho MQTT 5 client on its own thread that records every message it receives.

    `persistent=True` (default) uses a session that outlives broker restarts and disconnects, as
    the centre's consumer would, so nothing published while it is away is lost.
    """

    def __init__(self, port: int, topics: list[str], *, host: str = HOST, client_id: str | None = None,
                 persistent: bool = True, qos: int = 1, **tls: Any) -> None:
        self.topics = topics
        self.qos = qos
        self._cond = threading.Condition()
        self.messages: list[Received] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"sub-{uuid.uuid4().hex[:8]}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent else 0
        self.client.connect(host, port, keepalive=10, clean_start=not persistent, properties=props)
        self.client.loop_start()
        if not self.subscribed.wait(PATIENCE_S):
            raise RuntimeError(f"subscriber could not subscribe to {topics} on {host}:{port}")

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, self.qos) for topic in self.topics])

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain), time.time()))
            self._cond.notify_all()

    def received(self, topic_prefix: str = "") -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic.startswith(topic_prefix)]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = PATIENCE_S) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def publish(self, topic: str, payload: bytes | str | dict, retain: bool = False) -> None:
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        self.client.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- fixtures

try:  # bench/ uses this module without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]


def _fixture(function: Callable) -> Callable:
    return pytest.fixture(function) if pytest is not None else function


@_fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started broker on a free port in tmp_path; killed at teardown."""
    try:
        broker = Mosquitto(tmp_path / "broker")
        broker.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield broker
    broker.kill()


@_fixture
def subscriber_factory() -> Iterator[Callable[..., Subscriber]]:
    """`subscriber_factory(port, ["gw/#"])` → a connected Subscriber, closed at teardown."""
    made: list[Subscriber] = []

    def make(port: int, topics: list[str], **kwargs: Any) -> Subscriber:
        sub = Subscriber(port, topics, **kwargs)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        try:
            sub.close()
        except Exception:
            pass
