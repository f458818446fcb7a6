"""The MQTT output (`MqttSink`): delivers its outbox to the township centre's broker, keeps the
gateway's presence there, and is the centre's way back in (acks, case progress, remote look).

One file because it is one class whose thread owns the paho client: delivery, presence and the
centre's messages are handled on that thread and share its in-flight map and connection state
without locks (only snapshot rendering has a helper thread; topics and message parsing are
already topics.py and messages.py).

One thread owns the paho client and runs its network loop itself (paho's external-loop API:
`socket()`, `loop_read()`, `loop_write()`, `loop_misc()` around our own `select`). Every paho
callback therefore runs in that thread, so `publish()` → mid bookkeeping → PUBACK handling needs
no locks and cannot race (paho warns that with `loop_start()` a PUBACK may be handled before
`publish()` has returned its mid). Other threads talk to it only through the outbox, a wake-up
socket, and small locked maps (camera states, snapshot replies).

Delivery (DESIGN §4): alerts are read from the outbox in row order and published QoS 1 with at
most `window` unacknowledged at once (also capped by the broker's MQTT 5 Receive Maximum). A row
is deleted only when its PUBACK arrives with a success reason code. Each connection uses a fresh
paho client, so after any reconnect the outbox — not paho's in-memory queue — is the single source
of what to resend: every row not yet PUBACKed is sent again, in order, with the same
event_id/seq (a duplicate the centre can drop). A PUBACK with a failure reason code (e.g. not
authorised) keeps the row and retries it after `REJECTED_RETRY_S`.

Session: MQTT 5 with `clean_start=False` and a session expiry, or 3.1.1 with `clean_session=False`,
so the broker keeps our `ack`, `cases` and `cmd/snapshot` subscriptions and queues what the centre
sent while the gateway was away.

The case loop: the centre's acks (`ack`) are recorded in the outbox's ack table; its case progress
(`cases`) goes to `on_case` (the router stores it in the history). Malformed messages, and messages
about events this gateway never sent, are logged in one line, counted and ignored. A duty
officer's acknowledgement on the gateway's page is queued here like an alert (`announce_ack`) and
published on `acks`, so it survives a broker outage and a restart. In `protocol: auto` a broker that
answers "unsupported protocol version" makes the publisher fall back to 3.1.1 for the rest of the run
(logged once).

Presence: retained `status` `{"state": "online", ...health}` on connect and every `heartbeat_s`;
the Last Will is a retained `{"state": "offline"}`; a clean stop publishes `offline` itself before
a normal DISCONNECT. Camera states are retained on `cameras/{id}/state` and re-sent on connect.

Reconnects back off exponentially with jitter (1 s → 60 s by default). Each change of connection
state is logged once, saying what happens next; a failure that persists is repeated every
`REMIND_S`. Passwords are never logged.
"""

from __future__ import annotations

import json
import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.backoff import Backoff
from gateway.config.models import MqttSection
from gateway.delivery.cases import CaseUpdate
from gateway.delivery.history import HistoryError
from gateway.delivery.latency import LatencyWindow
from gateway.delivery.outbox import AckRecord, NewMessage, Outbox, OutboxError, OutboxMessage, UnknownEventError
from gateway.logs import LogLimiter
from gateway.outputs.mqtt.messages import (
    InvalidMessage,
    InvalidRequestWithReply,
    RateLimiter,
    SnapshotLimits,
    SnapshotRequest,
    error_reply,
    iso_now,
    page_ack_notice,
    parse_ack,
    parse_case,
    parse_snapshot_request,
    snapshot_reply,
)
from gateway.outputs.mqtt.topics import Topics, reply_topic_problem

log = logging.getLogger(__name__)

UNSUPPORTED_PROTOCOL = 0x84
REJECTED_RETRY_S = 60.0
REMIND_S = 300.0
STATUS_RESERVE = 2
"""In-flight slots kept free of alerts so status, camera state and replies never wait behind them."""
MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024
MAX_INBOUND = 1000

HealthProvider = Callable[[], dict[str, Any]]
SnapshotProvider = Callable[[str], "bytes | None"]
AckListener = Callable[[AckRecord], None]
CaseListener = Callable[[CaseUpdate], None]
"""Stores a case step; raises UnknownEventError for an event the gateway does not know."""


@dataclass
class _Inflight:
    row_id: int
    event_id: str
    seq: int
    created_at: float


class MqttSink:
    """Publishes queued alerts, presence and camera state; handles acks, case progress and
    remote-look requests. An `AlertSink` named 'mqtt'."""

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSection,
        gateway_id: str,
        outbox: Outbox,
        *,
        health_provider: HealthProvider | None = None,
        snapshot_provider: SnapshotProvider | None = None,
        camera_known: Callable[[str], bool] | None = None,
        on_ack: AckListener | None = None,
        on_case: CaseListener | None = None,
        window: int = 32,
        backoff: Backoff | None = None,
        snapshot_limits: SnapshotLimits | None = None,
        extra_reply_prefixes: Sequence[str] = (),
        poll_s: float = 1.0,
        connect_timeout_s: float = 10.0,
        session_expiry_s: int = 7 * 86400,
        flush_s: float = 3.0,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.topics = Topics(settings.prefix, gateway_id)
        self.client_id = settings.client_id or f"gw-{gateway_id}"
        self.broker = f"{settings.host}:{settings.port}"
        self.outbox = outbox
        self._health_provider = health_provider
        self._snapshot_provider = snapshot_provider
        self._camera_known = camera_known
        self._log_limiter = LogLimiter()
        self._on_ack = on_ack
        self._on_case = on_case
        self._window = max(1, window)
        self._backoff = backoff or Backoff()
        self._limiter = RateLimiter(snapshot_limits or SnapshotLimits())
        for prefix in extra_reply_prefixes:
            if not prefix.endswith("/") or any(ch in prefix for ch in "#+") or prefix.startswith("$"):
                raise ValueError(f"reply prefix {prefix!r} must end with '/' and contain no wildcards")
        self._reply_prefixes = (self.topics.replies, *extra_reply_prefixes)
        self._poll_s = poll_s
        self._connect_timeout_s = connect_timeout_s
        self._session_expiry_s = session_expiry_s
        self._flush_s = flush_s
        self._v5 = settings.protocol != "3.1.1"

        self._started_mono = time.monotonic()
        self._thread: threading.Thread | None = None
        self._snap_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected_evt = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

        # Owned by the publisher thread.
        self._client: mqtt.Client | None = None
        self._state = "disconnected"
        self._connack_deadline = 0.0
        self._retry_at = 0.0
        self._events: list[tuple[Any, str, tuple]] = []
        self._inbound: deque[mqtt.MQTTMessage] = deque()
        self._inflight: dict[int, _Inflight] = {}
        self._cursor = 0
        self._generation = outbox.generation
        self._window_now = self._window
        self._budget = self._window + STATUS_RESERVE
        self._other_inflight: set[int] = set()
        self._rejected: dict[int, float] = {}
        self._next_heartbeat = 0.0
        self._failure_key: str | None = None
        self._failure_logged_at = 0.0
        self._down_since: float | None = None
        self._session_present = False

        # Shared with other threads (guarded by _lock).
        self._lock = threading.Lock()
        self._camera_states: dict[str, dict[str, Any]] = {}
        self._dirty_cameras: set[str] = set()
        self._replies: deque[tuple[str, bytes]] = deque(maxlen=16)
        self._snap_jobs: queue.Queue[SnapshotRequest | None] = queue.Queue(maxsize=2)
        self._latency = LatencyWindow()
        self._stats = {
            "published": 0, "resent": 0, "rejected": 0, "reconnects": 0, "connect_failures": 0,
            "acks_recorded": 0, "acks_ignored": 0, "cases_recorded": 0, "cases_ignored": 0,
            "snapshot_requests": 0, "snapshot_replies": 0, "snapshot_refused": 0, "inbound_dropped": 0,
        }
        self._last_error: str | None = None
        self._protocol_name: str | None = None
        self._connected_at: float | None = None

    # ================================================================== public API

    def start(self) -> None:
        """Start the publisher thread; returns at once (a missing broker never blocks the caller)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._snap_thread = threading.Thread(target=self._snapshot_worker, name="mqtt-snapshots", daemon=True)
        self._thread.start()
        self._snap_thread.start()

    @property
    def alive(self) -> bool:
        """The publisher thread runs (connected or retrying: a missing broker is not a failure)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush in-flight alerts (up to `flush_s`), publish `offline`, disconnect, stop the threads.

        Undelivered alerts simply stay in the outbox for the next start.
        """
        self._stop.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self._snap_jobs.put_nowait(None)
        except queue.Full:
            pass
        if self._snap_thread is not None:
            self._snap_thread.join(1.0)
        self._wake_r.close()
        self._wake_w.close()

    def submit(self, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """Queue alert messages (DESIGN §3.3 payloads) durably, in order, and wake the publisher.

        One outbox transaction (one fsync) for the lot; returns their outbox row ids. Raises
        ValueError for a payload without camera_id/event_id/seq. Never waits for the broker.
        """
        row_ids = self.outbox.put_many([self._new_message(payload) for payload in payloads])
        self.notify()
        return row_ids

    def announce_ack(self, ack: AckRecord, note: str | None, at: str) -> None:
        """Queue a duty officer's page acknowledgement for the centre on `acks` (`page_ack_notice`),
        durably like an alert; a later one for the same event replaces one still queued."""
        notice = page_ack_notice(self.gateway_id, ack.event_id, ack.case_id, ack.by, at, note)
        self.outbox.put_many([NewMessage(self.topics.acks, notice, ack.event_id, 0, "ack", replace=True)])
        self.notify()

    def _new_message(self, payload: dict[str, Any]) -> NewMessage:
        try:
            event_id, seq = payload["event_id"], payload["seq"]
        except KeyError as exc:
            raise ValueError(f"alert payload lacks {exc.args[0]!r}; need event_id and seq") from None
        return NewMessage(self.topics.alert(payload), payload, event_id, seq, str(payload.get("state", "")))

    def notify(self) -> None:
        """Wake the publisher thread (something was queued). Safe from any thread."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def set_camera_state(self, camera_id: str, state: dict[str, Any]) -> None:
        """Publish (retained) the state of one camera now, and again after every reconnect."""
        self.topics.camera_state(camera_id)  # rejects ids that cannot be a topic level
        with self._lock:
            self._camera_states[camera_id] = {"camera_id": camera_id, **state}
            self._dirty_cameras.add(camera_id)
        self.notify()

    @property
    def connected(self) -> bool:
        return self._connected_evt.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected_evt.wait(timeout)

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything PUBACKed); True if it emptied in time."""
        deadline = time.monotonic() + timeout
        while self.outbox.depth() > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def health(self) -> dict[str, Any]:
        """Publisher health for the API, the heartbeat and the logs."""
        with self._lock:
            stats = dict(self._stats)
            latency = self._latency.summary()
        outbox = self.outbox.stats()
        return {
            "connected": self.connected,
            "queued": outbox.depth,
            "delivered": stats["published"],
            "held_in_memory": outbox.held,
            "storage_problem": outbox.problem,
            "disk_full": outbox.disk_full,
            "state": self._state,
            "broker": self.broker,
            "protocol": self._protocol_name,
            "client_id": self.client_id,
            "outbox_depth": outbox.depth,
            "outbox_bytes": outbox.bytes,
            "oldest_undelivered_age_s": None if outbox.oldest_age_s is None else round(outbox.oldest_age_s, 1),
            "evictions": outbox.evictions,
            "inflight": len(self._inflight),
            "last_error": self._last_error,
            "connected_since": iso_now(self._connected_at) if self._connected_at else None,
            "publish_latency": latency,
            **stats,
        }

    # ================================================================== the loop

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # the publisher must outlive any bug in one iteration
                log.exception("MQTT publisher: unexpected error (%s); dropping the connection and retrying", exc)
                self._drop_client(f"internal error: {exc}")
                self._stop.wait(1.0)
        try:
            self._shutdown()
        except Exception:
            log.exception("MQTT publisher: error while shutting down")

    def _step(self) -> None:
        now = time.monotonic()
        if self._client is None and now >= self._retry_at:
            self._connect()
        elif self._state == "connecting" and now >= self._connack_deadline:
            self._connection_failed(f"no CONNACK within {self._connect_timeout_s:.0f} s", "no-connack")
        self._service_io(self._io_timeout(time.monotonic()))
        self._handle_events()
        if self._state == "connected":
            self._send_pending()

    def _io_timeout(self, now: float) -> float:
        deadlines = [now + self._poll_s]
        if self._client is None:
            deadlines.append(self._retry_at)
        elif self._state == "connecting":
            deadlines.append(self._connack_deadline)
        else:
            deadlines.append(self._next_heartbeat)
            deadlines.extend(self._rejected.values())
        return max(0.0, min(deadlines) - now)

    def _service_io(self, timeout: float) -> None:
        client = self._client
        sock = client.socket() if client is not None else None
        rlist: list[Any] = [self._wake_r]
        wlist: list[Any] = []
        if client is not None and sock is not None:
            rlist.append(sock)
            if client.want_write():
                wlist.append(sock)
            if getattr(sock, "pending", lambda: 0)() > 0:
                timeout = 0.0
        try:
            readable, writable, _ = select.select(rlist, wlist, [], timeout)
        except (OSError, ValueError):
            readable, writable = [], []
        if self._wake_r in readable:
            self._drain_wake()
        if client is None or sock is None:
            return
        if sock in readable or getattr(sock, "pending", lambda: 0)() > 0:
            client.loop_read()
        if client.socket() is not None and (sock in writable or client.want_write()):
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # ================================================================== connecting

    def _make_client(self) -> mqtt.Client:
        protocol = MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if self._v5 else False,
            protocol=protocol,
            reconnect_on_failure=False,
        )
        client.connect_timeout = self._connect_timeout_s
        client.max_inflight_messages_set(self._window + STATUS_RESERVE)
        if self.settings.username:
            password = self.settings.password.get_secret_value() if self.settings.password else None
            client.username_pw_set(self.settings.username, password)
        if self.settings.tls is not None:
            client.tls_set_context(self._tls_context())
            client.tls_insecure_set(self.settings.tls.insecure)
        client.will_set(self.topics.status, self._offline_payload("connection lost"), qos=1, retain=True)
        client.on_connect = lambda c, _u, flags, rc, props: self._events.append((c, "connack", (flags, rc, props)))
        client.on_disconnect = lambda c, _u, flags, rc, props: self._events.append((c, "disconnect", (flags, rc)))
        client.on_publish = lambda c, _u, mid, rc, props: self._events.append((c, "puback", (mid, rc)))
        client.on_subscribe = lambda c, _u, mid, codes, props: self._events.append((c, "suback", (codes,)))
        client.on_message = self._on_message
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.settings.tls
        assert tls is not None
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        return context

    def _connect(self) -> None:
        self._state = "connecting"
        try:
            client = self._make_client()
        except (OSError, ssl.SSLError) as exc:
            tls = self.settings.tls
            files = f"ca_file={tls.ca_file}, cert_file={tls.cert_file}, key_file={tls.key_file}" if tls else ""
            self._connection_failed(f"cannot load the TLS files ({files}): {exc}", f"tls-files:{exc}")
            return
        try:
            if self._v5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self._session_expiry_s
                client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s,
                               clean_start=False, properties=props)
            else:
                client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            self._connection_failed(self._tls_problem(exc), f"tls-verify:{exc.verify_message}")
            return
        except ssl.SSLError as exc:
            self._connection_failed(f"TLS handshake failed: {exc.reason or exc}", f"tls:{exc.reason}")
            return
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            self._connection_failed(f"unreachable ({reason})", f"os:{reason}")
            return
        self._client = client
        self._connack_deadline = time.monotonic() + self._connect_timeout_s

    def _tls_problem(self, exc: ssl.SSLCertVerificationError) -> str:
        tls = self.settings.tls
        ca = tls.ca_file if tls and tls.ca_file else "the system CA store"
        if exc.verify_code in (18, 19, 20, 21):  # self-signed / unknown issuer
            return (f"TLS certificate of the broker is not signed by the CA in {ca} (mqtt.tls.ca_file): "
                    f"{exc.verify_message}")
        if "hostname" in str(exc).lower() or exc.verify_code == 62:
            return (f"TLS certificate of the broker does not match the host name {self.settings.host!r} "
                    f"(CA {ca}): {exc.verify_message}")
        return f"TLS certificate of the broker rejected (CA {ca}): {exc.verify_message or exc}"

    def _connection_failed(self, reason: str, key: str) -> None:
        """Log (once per distinct failure, reminded every REMIND_S), drop the client, schedule a retry."""
        self._drop_client(reason)
        delay = self._backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        with self._lock:
            self._stats["connect_failures"] += 1
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if key != self._failure_key or now - self._failure_logged_at >= REMIND_S:
            down = now - self._down_since
            since = f" (down for {_duration(down)})" if down >= 1 else ""
            log.warning("MQTT broker %s: %s%s; retrying in %.1f s; %d alerts queued",
                        self.broker, reason, since, delay, self.outbox.depth())
            self._failure_key, self._failure_logged_at = key, now
        else:
            log.debug("MQTT broker %s: %s; retrying in %.1f s", self.broker, reason, delay)

    def _drop_client(self, reason: str) -> None:
        client, self._client = self._client, None
        if client is not None:
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        if self._state == "connected":
            with self._lock:
                self._stats["resent"] += len(self._inflight)
        self._state = "disconnected"
        self._connected_evt.clear()
        self._connected_at = None
        self._inflight.clear()
        self._other_inflight.clear()
        self._cursor = 0
        self._last_error = reason

    # ================================================================== paho events

    def _handle_events(self) -> None:
        events, self._events = self._events, []
        delivered: list[int] = []
        for client, kind, args in events:
            if client is not self._client:
                continue
            if kind == "connack":
                self._on_connack(*args)
            elif kind == "puback":
                mid, reason = args
                self._on_puback(mid, reason, delivered)
            elif kind == "disconnect":
                self._on_disconnect(*args)
            elif kind == "suback":
                self._on_suback(*args)
        if delivered:
            self.outbox.delete(delivered)
        while self._inbound:
            self._handle_inbound(self._inbound.popleft())

    def _on_connack(self, flags: Any, reason: ReasonCode, props: Properties | None) -> None:
        if reason.is_failure:
            self._on_refused(reason)
            return
        self._state = "connected"
        self._protocol_name = "5" if self._v5 else "3.1.1"
        self._session_present = bool(getattr(flags, "session_present", False))
        receive_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        self._budget = max(STATUS_RESERVE + 1, min(self._window + STATUS_RESERVE, receive_max or 65535))
        self._window_now = self._budget - STATUS_RESERVE
        self._other_inflight.clear()
        assert self._client is not None  # only the current client's CONNACK is handled
        self._client.subscribe([(topic, 1) for topic in self._subscriptions])
        self._next_heartbeat = 0.0
        with self._lock:
            self._dirty_cameras.update(self._camera_states)
            if self._stats["connect_failures"] or self._down_since is not None:
                self._stats["reconnects"] += 1
        outage = f" after {_duration(time.monotonic() - self._down_since)} offline" if self._down_since else ""
        log.info("connected to MQTT broker %s as %s (MQTT %s, %s)%s; %d queued alerts to deliver",
                 self.broker, self.client_id, self._protocol_name,
                 "session resumed" if self._session_present else "new session", outage, self.outbox.depth())
        self._backoff.reset()
        self._failure_key, self._down_since, self._last_error = None, None, None
        self._connected_at = time.time()
        self._connected_evt.set()

    def _on_refused(self, reason: ReasonCode) -> None:
        if reason.value == UNSUPPORTED_PROTOCOL and self._v5 and self.settings.protocol == "auto":
            log.warning("MQTT broker %s does not support MQTT 5; falling back to MQTT 3.1.1 for this run "
                        "(no session expiry, no PUBACK reason codes)", self.broker)
            self._v5 = False
            self._drop_client("broker does not support MQTT 5")
            self._retry_at = time.monotonic()
            return
        hint = ""
        if reason.value in (0x86, 0x87, 4, 5):
            user = self.settings.username
            hint = f" (user {user!r}); check mqtt.username and mqtt.password" if user else \
                "; the broker wants credentials: set mqtt.username and mqtt.password"
        elif reason.value == 0x85:
            hint = f" (client id {self.client_id!r}); check mqtt.client_id"
        self._connection_failed(f"refused the connection: {reason}{hint}", f"refused:{reason.value}")

    def _on_disconnect(self, flags: Any, reason_code: ReasonCode) -> None:
        reason = str(reason_code)
        if not getattr(flags, "is_disconnect_packet_from_server", False) and reason == "Unspecified error":
            reason = "connection closed: broker stopped or network lost"
        elif getattr(flags, "is_disconnect_packet_from_server", False):
            reason = f"broker sent DISCONNECT: {reason}"
        if self._state != "connected":
            if self._client is not None:  # closed before CONNACK (e.g. refused, or a v3 broker hanging up)
                tls = self.settings.tls
                hint = ("; if the broker requires a client certificate, set mqtt.tls.cert_file and key_file"
                        if tls is not None and tls.cert_file is None else "")
                self._connection_failed(f"closed the connection before accepting it ({reason}){hint}",
                                        f"closed:{reason}")
            return
        inflight = len(self._inflight)
        self._drop_client(f"connection lost: {reason}")
        delay = self._backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        self._down_since = time.monotonic()
        self._failure_key, self._failure_logged_at = f"lost:{reason}", time.monotonic()
        log.warning("lost connection to MQTT broker %s (%s); %d alerts in flight will be sent again; "
                    "reconnecting in %.1f s; %d alerts queued", self.broker, reason, inflight, delay,
                    self.outbox.depth())

    @property
    def _subscriptions(self) -> tuple[str, ...]:
        return (self.topics.ack, self.topics.cmd_snapshot, self.topics.cases)

    def _on_suback(self, codes: list[ReasonCode]) -> None:
        for topic, code in zip(self._subscriptions, codes, strict=False):  # a broker may answer short
            if code.is_failure:
                log.error("MQTT broker %s refused our subscription to %s (%s): centre acks / remote look "
                          "requests / case progress will not arrive; check the broker ACL for %s",
                          self.broker, topic, code, self.client_id)

    def _on_puback(self, mid: int, reason: ReasonCode, delivered: list[int]) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            self._other_inflight.discard(mid)  # status, camera state or a snapshot reply
            return
        if reason.is_failure:
            self._rejected[entry.row_id] = time.monotonic() + REJECTED_RETRY_S
            with self._lock:
                self._stats["rejected"] += 1
            log.error("MQTT broker %s rejected alert %s seq %d: %s; it stays queued and is retried in %.0f s "
                      "(check the broker ACL for %s)", self.broker, entry.event_id, entry.seq, reason,
                      REJECTED_RETRY_S, self.client_id)
            return
        delivered.append(entry.row_id)
        with self._lock:
            self._stats["published"] += 1
            self._latency.add(max(0.0, time.time() - entry.created_at))

    # ================================================================== sending

    def _send_pending(self) -> None:
        self._send_alerts()
        if self._client is None:
            return
        self._send_camera_states()
        self._send_replies()
        if time.monotonic() >= self._next_heartbeat:
            sent = self._publish_status()
            self._next_heartbeat = time.monotonic() + (self.settings.heartbeat_s if sent else 0.1)

    def _send_alerts(self) -> None:
        room = self._window_now - len(self._inflight)
        if room <= 0:
            return
        now = time.monotonic()
        for row_id in [r for r, due in self._rejected.items() if due <= now][:room]:
            del self._rejected[row_id]
            message = self.outbox.get(row_id)
            if message is not None and not self._publish_alert(message):
                return
            room -= 1
        if room <= 0:
            return
        if self.outbox.generation != self._generation:  # the file opened late: older rows appeared
            self._generation, self._cursor = self.outbox.generation, 0
        in_flight = {entry.row_id for entry in self._inflight.values()}
        for message in self.outbox.pending(after_id=self._cursor, limit=room):
            self._cursor = message.id
            if message.id in self._rejected or message.id in in_flight:
                continue
            if not self._publish_alert(message):
                return

    def _publish_alert(self, message: OutboxMessage) -> bool:
        client = self._client
        if client is None:
            return False
        info = client.publish(message.topic, message.payload, qos=self.settings.qos, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._cursor = min(self._cursor, message.id - 1)
            return False
        self._inflight[info.mid] = _Inflight(message.id, message.event_id, message.seq, message.created_at)
        return True

    def _slot_free(self) -> bool:
        """Room for one more QoS 1 message within the broker's Receive Maximum."""
        return len(self._inflight) + len(self._other_inflight) < self._budget

    def _publish_other(self, topic: str, data: bytes, retain: bool) -> bool:
        """Publish a non-alert message if a slot is free; False means "try again later"."""
        if self._client is None or not self._slot_free():
            return False
        info = self._client.publish(topic, data, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self._other_inflight.add(info.mid)
        return True

    def _send_camera_states(self) -> None:
        with self._lock:
            dirty = [(cid, self._camera_states[cid]) for cid in self._dirty_cameras]
        for camera_id, state in dirty:
            if not self._publish_other(self.topics.camera_state(camera_id), _json_bytes(state), retain=True):
                return
            with self._lock:
                if self._camera_states.get(camera_id) is state:
                    self._dirty_cameras.discard(camera_id)

    def _send_replies(self) -> None:
        while self._client is not None and self._slot_free():
            with self._lock:
                if not self._replies:
                    return
                topic, data = self._replies.popleft()
            self._publish_other(topic, data, retain=False)

    def _publish_status(self) -> bool:
        return self._publish_other(self.topics.status, _json_bytes(self._online_payload()), retain=True)

    def _online_payload(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "state": "online",
            "gateway_id": self.gateway_id,
            "at": iso_now(time.time()),
            "uptime_s": round(time.monotonic() - self._started_mono, 1),
        }
        if self._health_provider is not None:
            try:
                extra = self._health_provider()
                status.update({k: v for k, v in extra.items() if k not in ("state", "gateway_id")})
            except Exception as exc:  # noqa: BLE001 - the heartbeat must go out even if health fails
                log.warning("health provider failed (%s); heartbeat sent without camera/detector health", exc)
        health = self.health()
        status["outbox_depth"] = health["outbox_depth"]
        status["oldest_undelivered_age_s"] = health["oldest_undelivered_age_s"]
        status["mqtt"] = {k: health[k] for k in ("protocol", "published", "resent", "reconnects",
                                                   "evictions", "publish_latency")}
        return status

    def _offline_payload(self, reason: str) -> bytes:
        return json.dumps({"state": "offline", "gateway_id": self.gateway_id, "reason": reason}).encode()

    # ================================================================== inbound

    def _on_message(self, client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if len(self._inbound) >= MAX_INBOUND:
            with self._lock:
                self._stats["inbound_dropped"] += 1
            return
        self._inbound.append(message)

    def _handle_inbound(self, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self.topics.ack:
                self._handle_ack(message)
            elif message.topic == self.topics.cmd_snapshot:
                self._handle_snapshot_request(message)
            elif message.topic == self.topics.cases:
                self._handle_case(message)
            else:
                log.debug("ignoring a message on %s (not subscribed by this gateway)", message.topic)
        except Exception:
            log.exception("error while handling a message on %s; ignored", message.topic)

    def _handle_ack(self, message: mqtt.MQTTMessage) -> None:
        try:
            ack = parse_ack(bytes(message.payload))
        except InvalidMessage as exc:
            self._count("acks_ignored")
            self._log_limiter.log(log, logging.WARNING, "ack:malformed", "ignored a malformed ack on %s: %s",
                                  message.topic, exc)
            return
        try:
            record, is_new = self.outbox.record_ack(ack.event_id, ack.case_id, ack.by)
        except UnknownEventError:
            self._count("acks_ignored")
            self._log_limiter.log(log, logging.WARNING, "ack:unknown", "ignored an ack for unknown event %s "
                                  "(case %s by %s): this gateway never sent it or forgot it",
                                  ack.event_id, ack.case_id, ack.by)
            return
        except OutboxError as exc:
            self._count("acks_ignored")
            log.error("could not record the ack of event %s (case %s by %s): %s", ack.event_id, ack.case_id,
                      ack.by, exc)
            return
        if not is_new:
            log.debug("repeated ack of event %s (case %s by %s)", ack.event_id, ack.case_id, ack.by)
            return
        self._count("acks_recorded")
        log.info("event %s acknowledged by %s as case %s", record.event_id, record.by, record.case_id)
        if self._on_ack is not None:
            try:
                self._on_ack(record)
            except Exception:
                log.exception("ack listener failed for event %s; the ack is recorded", record.event_id)

    def _handle_case(self, message: mqtt.MQTTMessage) -> None:
        try:
            update = parse_case(bytes(message.payload), time.time())
        except InvalidMessage as exc:
            self._count("cases_ignored")
            self._log_limiter.log(log, logging.WARNING, "case:malformed", "ignored a malformed case update on %s: %s",
                                  message.topic, exc)
            return
        if self._on_case is None:
            self._count("cases_ignored")
            return
        try:
            self._on_case(update)
        except UnknownEventError:
            self._count("cases_ignored")
            self._log_limiter.log(log, logging.WARNING, "case:unknown", "ignored a case update for unknown event %s "
                                  "(case %s, %s): this gateway never sent it or forgot it",
                                  update.event_id, update.case_id, update.status)
            return
        except HistoryError as exc:
            self._count("cases_ignored")
            log.error("could not store the case update of event %s (case %s, %s): %s", update.event_id,
                      update.case_id, update.status, exc)
            return
        self._count("cases_recorded")

    def _handle_snapshot_request(self, message: mqtt.MQTTMessage) -> None:
        self._count("snapshot_requests")
        if message.retain:
            self._refuse(None, "retained snapshot request ignored: it would replay on every reconnect")
            return
        try:
            request = parse_snapshot_request(bytes(message.payload), self._reply_problem)
        except InvalidRequestWithReply as exc:
            self._refuse(exc.reply_to, str(exc), code="invalid_request", request_id=exc.request_id)
            return
        except InvalidMessage as exc:
            self._refuse(None, f"invalid snapshot request: {exc}")
            return
        if self._camera_known is not None and not self._camera_known(request.camera_id):
            # refused before the rate limiter: made-up ids must not spend real cameras' budget
            self._refuse(request.reply_to, f"no camera {request.camera_id!r} on this gateway", code="no_camera",
                         request_id=request.request_id, camera_id=request.camera_id)
            return
        retry_after = self._limiter.check(request.camera_id, time.monotonic())
        if retry_after > 0:
            self._refuse(request.reply_to, f"rate limited for camera {request.camera_id}",
                         code="rate_limited", request_id=request.request_id, camera_id=request.camera_id,
                         retry_after=retry_after)
            return
        if self._snapshot_provider is None:
            self._refuse(request.reply_to, "remote look is not available on this gateway", code="unavailable",
                         request_id=request.request_id, camera_id=request.camera_id)
            return
        try:
            self._snap_jobs.put_nowait(request)
        except queue.Full:
            self._refuse(request.reply_to, "busy with other snapshot requests", code="busy",
                         request_id=request.request_id, camera_id=request.camera_id, retry_after=2.0)

    def _reply_problem(self, topic: object) -> str | None:
        return reply_topic_problem(topic, self._reply_prefixes)

    def _refuse(self, reply_to: str | None, reason: str, *, code: str = "invalid_request",
                request_id: str | None = None, camera_id: object = None, retry_after: float | None = None) -> None:
        self._count("snapshot_refused")
        self._log_limiter.log(log, logging.WARNING, f"snapshot:{code}", "snapshot request refused: %s%s", reason,
                              "" if reply_to else " (no usable reply_to; no reply)")
        if reply_to:
            self._queue_reply(reply_to, error_reply(camera_id, request_id, code, reason, retry_after))

    def _queue_reply(self, topic: str, payload: dict[str, Any]) -> None:
        data = _json_bytes(payload)
        with self._lock:
            self._replies.append((topic, data))
        self.notify()

    def _snapshot_worker(self) -> None:
        """Runs the snapshot provider off the publisher thread: JPEG encoding must not stall delivery."""
        while True:
            request = self._snap_jobs.get()
            if request is None or self._stop.is_set():
                return
            self._serve_snapshot(request)

    def _serve_snapshot(self, request: SnapshotRequest) -> None:
        assert self._snapshot_provider is not None
        try:
            jpeg = self._snapshot_provider(request.camera_id)
        except Exception as exc:
            log.exception("snapshot provider failed for camera %s", request.camera_id)
            reply = error_reply(request.camera_id, request.request_id, "internal", f"snapshot failed: {exc}")
        else:
            if not jpeg:
                reply = error_reply(request.camera_id, request.request_id, "no_snapshot",
                                    f"no recent frame for camera {request.camera_id} (unknown or offline camera)")
            elif len(jpeg) > MAX_SNAPSHOT_BYTES:
                reply = error_reply(request.camera_id, request.request_id, "too_large",
                                    f"snapshot of {len(jpeg)} bytes exceeds {MAX_SNAPSHOT_BYTES}")
            else:
                reply = snapshot_reply(request, jpeg, time.time())
                self._count("snapshot_replies")
                log.info("remote look: sent a snapshot of camera %s (%d kB) to %s",
                         request.camera_id, len(jpeg) // 1024, request.reply_to)
        self._queue_reply(request.reply_to, reply)

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    # ================================================================== shutdown

    def _shutdown(self) -> None:
        """Wait briefly for in-flight PUBACKs, publish `offline`, send a normal DISCONNECT."""
        if self._state != "connected":
            self._drop_client("stopped")
            return
        deadline = time.monotonic() + self._flush_s
        while self._inflight and self._state == "connected" and time.monotonic() < deadline:
            self._service_io(0.05)
            self._handle_events()
        client = self._client
        if client is not None:
            info = client.publish(self.topics.status, self._offline_payload("shutdown"), qos=1, retain=True)
            end = time.monotonic() + 1.0
            while not info.is_published() and client.socket() is not None and time.monotonic() < end:
                self._service_io(0.05)
            client.disconnect()
            self._service_io(0.0)
        left = self.outbox.depth()
        log.info("MQTT publisher stopped; %d alerts stay queued in the outbox for the next start", left)
        self._drop_client("stopped")


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
