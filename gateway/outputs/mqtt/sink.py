"""The MQTT output (`MqttSink`): delivers its outbox to the township centre's broker, keeps the
gateway's presence there, and is the centre's way back in (acks, case progress, remote look).

One file because it is one class whose thread owns the paho client and runs its network loop
itself (paho's external-loop API: `socket()`, `loop_read()`, `loop_write()`, `loop_misc()` around
our own `select`). Every paho callback therefore runs in that thread, so `publish()` → mid
bookkeeping → PUBACK handling needs no locks and cannot race (paho warns that with `loop_start()`
a PUBACK may be handled before `publish()` has returned its mid). Other threads talk to it only
through the outbox, a wake-up socket, and small locked holders (camera states and counts, replies).
The rest lives beside it, pure: the QoS 1 window (window.py), presence (presence.py), the centre's
messages (inbound.py, messages.py), the topic tree (topics.py), the connection's words (connection.py).

Delivery (DESIGN §4): alerts are read from the outbox in row order and published QoS 1 within the
window; a row is deleted only when its PUBACK arrives with a success reason code. Each connection
uses a fresh paho client, so after any reconnect the outbox — not paho's in-memory queue — is the
single source of what to resend, in order, with the same event_id/seq (a duplicate the centre can
drop). Session: MQTT 5 with `clean_start=False` and a session expiry, or 3.1.1 with
`clean_session=False`, so the broker keeps our subscriptions and queues what the centre sent while
the gateway was away. In `protocol: auto` a broker that answers "unsupported protocol version"
makes the output fall back to 3.1.1 for the rest of the run (logged once). A duty officer's page
acknowledgement is queued like an alert (`announce_ack`, called by the case ledger) and published
on `acks`, so it survives a broker outage and a restart.

Reconnects back off exponentially with jitter (1 s → 60 s by default). Each change of connection
state is logged once, saying what happens next; a failure that persists is repeated every
`REMIND_S`. Passwords are never logged.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.backoff import Backoff
from gateway.config.models import MqttSection
from gateway.delivery.latency import LatencyWindow
from gateway.delivery.ledger import AckRecord
from gateway.delivery.outbox import NewMessage, Outbox, OutboxMessage
from gateway.logs import human_duration
from gateway.outputs.mqtt import connection
from gateway.outputs.mqtt.inbound import CaseLoop, CentreInbound, TakeSnapshot
from gateway.outputs.mqtt.messages import SnapshotLimits, iso_now, page_ack_notice
from gateway.outputs.mqtt.presence import RetainedStates, offline_status, online_status
from gateway.outputs.mqtt.remote_look import RemoteLook, Replies, json_bytes
from gateway.outputs.mqtt.topics import Topics
from gateway.outputs.mqtt.window import InflightWindow
from gateway.status import GatewayView

log = logging.getLogger(__name__)

REMIND_S = 300.0
MAX_INBOUND = 1000


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
        view: GatewayView | None = None,
        ledger: CaseLoop | None = None,
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
        self.view = view
        """The live gateway: the heartbeat's health, remote-look pictures, which cameras exist."""
        self.inbound = CentreInbound(self.topics, ledger, view.has_camera if view else lambda _camera: False,
                                     snapshot_limits=snapshot_limits, extra_reply_prefixes=extra_reply_prefixes)
        self._backoff = backoff or Backoff()
        self._poll_s = poll_s
        self._connect_timeout_s = connect_timeout_s
        self._session_expiry_s = session_expiry_s
        self._flush_s = flush_s
        self._v5 = settings.protocol != "3.1.1"

        self._started_mono = time.monotonic()
        self._thread: threading.Thread | None = None
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
        self._window = InflightWindow(window, outbox.generation)
        self._next_heartbeat = 0.0
        self._failure_key: str | None = None
        self._failure_logged_at = 0.0
        self._down_since: float | None = None
        self._session_present = False

        # Shared with other threads (guarded by _lock).
        self._lock = threading.Lock()
        self._retained = RetainedStates(settings.counts_every_s)
        self._replies = Replies()
        self._remote_look = RemoteLook(self.inbound, view, self._replies, wake=self.notify)
        self._latency = LatencyWindow()
        self._stats = {
            "published": 0, "resent": 0, "rejected": 0, "reconnects": 0, "connect_failures": 0, "inbound_dropped": 0,
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
        self._thread.start()
        self._remote_look.start()

    @property
    def alive(self) -> bool:
        """The publisher thread runs (connected or retrying: a missing broker is not a failure)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush in-flight alerts and camera states (up to `flush_s`), publish `offline`, disconnect.

        Undelivered alerts simply stay in the outbox for the next start.
        """
        self._stop.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self._remote_look.stop()
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
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def set_camera_state(self, camera_id: str, state: dict[str, Any]) -> None:
        """Publish (retained) the state of one camera now, and again after every reconnect."""
        self._retained.set(self.topics.camera_state(camera_id), {"camera_id": camera_id, **state})
        self.notify()

    def set_camera_counts(self, camera_id: str, counts: dict[str, Any]) -> None:
        """Publish (retained) a camera's live counts if they changed, at most every `counts_every_s`."""
        if self._retained.offer_counts(self.topics.camera_counts(camera_id), counts, time.monotonic()):
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
            stats = {**self._stats, **self.inbound.counts}
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
            "outbox_max_bytes": outbox.max_bytes,
            "oldest_undelivered_age_s": None if outbox.oldest_age_s is None else round(outbox.oldest_age_s, 1),
            "evictions": outbox.evictions,
            "inflight": len(self._window),
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
            deadlines.extend(self._window.retry_times())
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
        client = connection.new_client(self.settings, self.client_id, v5=self._v5, inflight=self._window.paho_limit,
                                       connect_timeout_s=self._connect_timeout_s)
        client.will_set(self.topics.status, offline_status(self.gateway_id, "connection lost"), qos=1, retain=True)
        client.on_connect = lambda c, _u, flags, rc, props: self._events.append((c, "connack", (flags, rc, props)))
        client.on_disconnect = lambda c, _u, flags, rc, props: self._events.append((c, "disconnect", (flags, rc)))
        client.on_publish = lambda c, _u, mid, rc, props: self._events.append((c, "puback", (mid, rc)))
        client.on_subscribe = lambda c, _u, mid, codes, props: self._events.append((c, "suback", (codes,)))
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        self._state = "connecting"
        try:
            client = self._make_client()
        except (OSError, ssl.SSLError) as exc:
            files = connection.tls_files(self.settings)
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
            self._connection_failed(connection.tls_problem(self.settings, exc), f"tls-verify:{exc.verify_message}")
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
            since = f" (down for {human_duration(down)})" if down >= 1 else ""
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
        lost = self._window.lost()
        if self._state == "connected":
            with self._lock:
                self._stats["resent"] += lost
        self._state = "disconnected"
        self._connected_evt.clear()
        self._connected_at = None
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
        self._window.connected(receive_max)
        assert self._client is not None  # only the current client's CONNACK is handled
        self._client.subscribe([(topic, 1) for topic in self._subscriptions])
        self._next_heartbeat = 0.0
        self._retained.resend_all()
        with self._lock:
            if self._stats["connect_failures"] or self._down_since is not None:
                self._stats["reconnects"] += 1
        outage = f" after {human_duration(time.monotonic() - self._down_since)} offline" if self._down_since else ""
        log.info("connected to MQTT broker %s as %s (MQTT %s, %s)%s; %d queued alerts to deliver",
                 self.broker, self.client_id, self._protocol_name,
                 "session resumed" if self._session_present else "new session", outage, self.outbox.depth())
        self._backoff.reset()
        self._failure_key, self._down_since, self._last_error = None, None, None
        self._connected_at = time.time()
        self._connected_evt.set()

    def _on_refused(self, reason: ReasonCode) -> None:
        if reason.value == connection.UNSUPPORTED_PROTOCOL and self._v5 and self.settings.protocol == "auto":
            log.warning("MQTT broker %s does not support MQTT 5; falling back to MQTT 3.1.1 for this run "
                        "(no session expiry, no PUBACK reason codes)", self.broker)
            self._v5 = False
            self._drop_client("broker does not support MQTT 5")
            self._retry_at = time.monotonic()
            return
        self._connection_failed(connection.refusal(self.settings, self.client_id, reason), f"refused:{reason.value}")

    def _on_disconnect(self, flags: Any, reason_code: ReasonCode) -> None:
        reason = connection.disconnect_reason(flags, reason_code)
        if self._state != "connected":
            if self._client is not None:  # closed before CONNACK (e.g. refused, or a v3 broker hanging up)
                self._connection_failed(connection.closed_before_accepting(self.settings, reason), f"closed:{reason}")
            return
        inflight = len(self._window)
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
        return self.inbound.subscriptions

    def _on_suback(self, codes: list[ReasonCode]) -> None:
        for topic, code in zip(self._subscriptions, codes, strict=False):  # a broker may answer short
            if code.is_failure:
                log.error("MQTT broker %s refused our subscription to %s (%s): centre acks / remote look "
                          "requests / case progress will not arrive; check the broker ACL for %s",
                          self.broker, topic, code, self.client_id)

    def _on_puback(self, mid: int, reason: ReasonCode, delivered: list[int]) -> None:
        entry = self._window.acknowledged(mid, not reason.is_failure, time.monotonic())
        if entry is None:
            return  # status, camera state or a snapshot reply
        if reason.is_failure:
            with self._lock:
                self._stats["rejected"] += 1
            log.error("MQTT broker %s rejected alert %s seq %d: %s; it stays queued and is retried in %.0f s "
                      "(check the broker ACL for %s)", self.broker, entry.event_id, entry.seq, reason,
                      self._window.retry_s, self.client_id)
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
        self._send_retained()
        self._send_replies()
        if time.monotonic() >= self._next_heartbeat:
            sent = self._publish_status()
            self._next_heartbeat = time.monotonic() + (self.settings.heartbeat_s if sent else 0.1)

    def _send_alerts(self) -> None:
        for message in self._window.due(self.outbox, time.monotonic()):
            if not self._publish_alert(message):
                self._window.not_sent(message, time.monotonic())
                return

    def _publish_alert(self, message: OutboxMessage) -> bool:
        client = self._client
        if client is None:
            return False
        info = client.publish(message.topic, message.payload, qos=self.settings.qos, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self._window.sent(info.mid, message)
        return True

    def _publish_other(self, topic: str, data: bytes, retain: bool) -> bool:
        """Publish a non-alert message if a slot is free; False means "try again later"."""
        if self._client is None or not self._window.slot_free():
            return False
        info = self._client.publish(topic, data, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self._window.sent_other(info.mid)
        return True

    def _send_retained(self) -> None:
        for topic, payload in self._retained.unsent():
            if not self._publish_other(topic, json_bytes(payload), retain=True):
                return
            self._retained.sent(topic, payload)

    def _send_replies(self) -> None:
        while self._client is not None and self._window.slot_free():
            waiting = self._replies.take()
            if waiting is None:
                return
            self._publish_other(*waiting, retain=False)

    def _publish_status(self) -> bool:
        status = online_status(self.gateway_id, self._started_mono, self.view, self.health())
        return self._publish_other(self.topics.status, json_bytes(status), retain=True)

    # ================================================================== inbound

    def _on_message(self, client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if len(self._inbound) >= MAX_INBOUND:
            with self._lock:
                self._stats["inbound_dropped"] += 1
            return
        self._inbound.append(message)

    def _handle_inbound(self, message: mqtt.MQTTMessage) -> None:
        for action in self.inbound.handle(message.topic, bytes(message.payload), bool(message.retain)):
            if isinstance(action, TakeSnapshot):
                self._remote_look.take(action.request)
            else:
                self._replies.add(action)
                self.notify()

    # ================================================================== shutdown

    def _shutdown(self) -> None:
        """Wait briefly for in-flight PUBACKs and the last camera states (cameras stopped), publish
        `offline`, send a normal DISCONNECT."""
        if self._state != "connected":
            self._drop_client("stopped")
            return
        deadline = time.monotonic() + self._flush_s
        while (self._window or self._retained.unsent()) and self._state == "connected" and time.monotonic() < deadline:
            self._send_retained()
            self._service_io(0.05)
            self._handle_events()
        client = self._client
        if client is not None:
            info = client.publish(self.topics.status, offline_status(self.gateway_id, "shutdown"), qos=1, retain=True)
            end = time.monotonic() + 1.0
            while not info.is_published() and client.socket() is not None and time.monotonic() < end:
                self._service_io(0.05)
            client.disconnect()
            self._service_io(0.0)
        left = self.outbox.depth()
        log.info("MQTT publisher stopped; %d alerts stay queued in the outbox for the next start", left)
        self._drop_client("stopped")
