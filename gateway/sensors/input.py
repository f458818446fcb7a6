"""Sensor input: one MQTT client per site broker, handing each sensor's messages to the service.

Sensors publish on site brokers (often a Mosquitto beside Zigbee2MQTT), not on the centre's
broker, so each configured `sensor_brokers` entry gets its own client and thread: a site broker
that is down delays only its own sensors. Subscriptions are QoS 1 in a persistent session
(MQTT 3.1.1, `clean_session=False`, a stable client id), so a door opened while the gateway
restarts is still delivered by the broker when it comes back.

Every message on a sensor's topic is passed to `dispatch(sensor_id, payload, received_at)` —
one call per sensor on that topic (a Zigbee2MQTT device may be several sensors). The dispatch
callback runs in this broker's network thread: it must be quick (parse, update state, queue).
It signals a malformed payload by raising ValueError (e.g. `SensorPayloadError`): that is
logged with the sensor's name and reason and counted in health; any other exception is logged
with its traceback and counted too. Nothing escapes into paho's thread.

Reconnects back off with `Backoff` (1 s → 60 s). Each change of connection state is logged
once with the broker name and what happens next. Passwords are never logged.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from gateway.backoff import Backoff
from gateway.config.models import Sensor, SensorBroker
from gateway.logs import LogLimiter, clip

log = logging.getLogger(__name__)

Dispatch = Callable[[str, bytes, datetime], None]
"""`dispatch(sensor_id, payload, received_at)`; raise ValueError for a malformed payload."""
LOOP_TIMEOUT_S = 0.2
CONNECT_TIMEOUT_S = 5.0
MAX_ERROR_CHARS = 200
"""A sensor's `last_error` in its health: why, with a short prefix of the value at most."""
SENSOR_LOG_WINDOW_S = 60.0
"""A sensor's bad messages are logged at most once in this window, whatever their text (a faulty
or hostile sensor must not flood the journal); the next line says how many were held back, and
every one is counted in its health."""


@dataclass
class _SensorCounters:
    name: str
    messages: int = 0
    errors: int = 0
    last_error: str | None = None


class SensorInput:
    """All site brokers. `start()` once, `stop()` at shutdown, `health()` any time."""

    def __init__(self, brokers: Mapping[str, SensorBroker], sensors: Sequence[Sensor], dispatch: Dispatch,
                 gateway_id: str, backoff: Callable[[], Backoff] = Backoff):
        sensors = [sensor for sensor in sensors if sensor.topic is not None]  # camera alarms: ONVIF
        self.links = {
            name: BrokerLink(name, settings, [s for s in sensors if s.broker == name], dispatch,
                             settings.client_id or f"gw-{gateway_id}-sensors-{name}", backoff())
            for name, settings in brokers.items()
            if any(sensor.broker == name for sensor in sensors)
        }

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    def stop(self, timeout: float = 5.0) -> None:
        for link in self.links.values():
            link.stop(timeout)

    def workers(self) -> dict[str, BrokerLink]:
        """Each site broker's input thread, for supervision."""
        return {f"sensor broker {name}: input thread": link for name, link in self.links.items()}

    def health(self) -> dict[str, dict[str, Any]]:
        return {name: link.health() for name, link in self.links.items()}


class BrokerLink:
    """One site broker: connect, subscribe the sensors' topics, dispatch, reconnect."""

    def __init__(self, name: str, settings: SensorBroker, sensors: Sequence[Sensor], dispatch: Dispatch,
                 client_id: str, backoff: Backoff):
        self.name = name
        self.settings = settings
        self.address = f"{settings.host}:{settings.port}"
        self.dispatch = dispatch
        self.client_id = client_id
        self.backoff = backoff
        self.by_topic: dict[str, list[str]] = {}
        for sensor in sensors:
            assert sensor.topic is not None, "SensorInput passes only MQTT sensors (camera alarms have no topic)"
            self.by_topic.setdefault(sensor.topic, []).append(sensor.id)
        self.counters = {sensor.id: _SensorCounters(sensor.label) for sensor in sensors}
        self._log_limit = LogLimiter(burst=1, window_s=SENSOR_LOG_WINDOW_S)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = "stopped"
        self.since = time.time()
        self.connects = 0
        self.last_error: str | None = None
        self.retry_at: float | None = None
        self._problem_logged: str | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sensors-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._set_state("stopped")

    @property
    def alive(self) -> bool:
        """The input thread runs (connected or retrying: a broker that is down is not a failure)."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._set_state("connecting")
            self._session()
            if self._stop.is_set():
                break
            delay = self.backoff.next_delay()
            self.retry_at = time.time() + delay
            self._report_down(delay)
            self._stop.wait(delay)
        self.retry_at = None

    def _session(self) -> None:
        """Connect and run the network loop until the connection ends or we are stopped."""
        try:
            client = self._make_client()
            client.connect(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._note_error(f"cannot connect: {exc}")
            return
        try:
            while not self._stop.is_set():
                code = client.loop(timeout=LOOP_TIMEOUT_S)
                if code != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    if self.state == "connected":
                        self._note_error(f"connection lost: {mqtt.error_string(code).rstrip('.')}")
                    elif not self.last_error:
                        self._note_error(f"connection failed: {mqtt.error_string(code).rstrip('.')}")
                    break
        finally:
            client.disconnect()
            if self._stop.is_set():
                client.loop(timeout=LOOP_TIMEOUT_S)  # flush the DISCONNECT: a clean goodbye

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                             protocol=MQTTProtocolVersion.MQTTv311, reconnect_on_failure=False)
        client.connect_timeout = CONNECT_TIMEOUT_S
        if self.settings.username:
            password = self.settings.password.get_secret_value() if self.settings.password else ""
            client.username_pw_set(self.settings.username, password or None)
        tls = self.settings.tls
        if tls is not None:
            context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
            if tls.cert_file:
                context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
            client.tls_set_context(context)
            client.tls_insecure_set(tls.insecure)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # ----------------------------------------------------------------- paho callbacks (this thread)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._note_error(f"broker refused the connection: {reason}")
            client.disconnect()
            return
        client.subscribe([(topic, 1) for topic in self.by_topic])
        self.backoff.reset()
        self.connects += 1
        self.retry_at = None

    def _on_subscribe(self, client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any) -> None:
        """Connected counts from the SUBACK: before it, the broker would drop sensor messages."""
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:
            self._note_error(f"broker refused the subscription to the sensor topics: {', '.join(refused)}")
            client.disconnect()
            return
        self.last_error = None
        self._set_state("connected")
        again = " again" if self._problem_logged else ""
        self._problem_logged = None
        log.info("sensor broker %s (%s) connected%s; listening to %d sensors: %s", self.name, self.address,
                 again, len(self.counters), ", ".join(c.name for c in self.counters.values()))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        received_at = datetime.now(UTC)
        payload = bytes(message.payload)
        for sensor_id in self.by_topic.get(message.topic, ()):
            self._deliver(sensor_id, payload, received_at)

    def _deliver(self, sensor_id: str, payload: bytes, received_at: datetime) -> None:
        counters = self.counters[sensor_id]
        with self._lock:
            counters.messages += 1
        try:
            self.dispatch(sensor_id, payload, received_at)
        except ValueError as exc:
            errors = self._count_error(sensor_id, f"malformed payload: {exc}")
            self._log_limit.log(log, logging.WARNING, f"sensor:{sensor_id}", "sensor %s (%s) on broker %s: ignored "
                                "a %s (%d errors so far); check the sensor's format/field/active_value or the "
                                "device", counters.name, sensor_id, self.name, f"malformed payload: {exc}", errors)
        except Exception as exc:  # noqa: BLE001 - never into paho's thread; counted and logged
            errors = self._count_error(sensor_id, f"handler failed: {type(exc).__name__}: {exc}")
            self._log_limit.log(log, logging.ERROR, f"sensor:{sensor_id}", "sensor %s (%s) on broker %s: handling a "
                                "message failed (%d errors so far); the sensor keeps listening", counters.name,
                                sensor_id, self.name, errors, exc_info=exc)

    def _count_error(self, sensor_id: str, reason: str) -> int:
        """Count a bad message of this sensor (its health keeps a short form of why)."""
        counters = self.counters[sensor_id]
        with self._lock:
            counters.errors += 1
            counters.last_error = clip(reason, MAX_ERROR_CHARS)
            return counters.errors

    # ----------------------------------------------------------------- state and health

    def _note_error(self, problem: str) -> None:
        self.last_error = problem

    def _report_down(self, delay: float) -> None:
        """Log once per change of problem: what is wrong, and when the next attempt is."""
        problem = self.last_error or "disconnected"
        sensors = ", ".join(c.name for c in self.counters.values())
        if problem != self._problem_logged:
            log.warning("sensor broker %s (%s): %s; retrying in %.1f s (then backing off up to %.0f s); "
                        "sensors not heard meanwhile: %s", self.name, self.address, problem, delay,
                        self.backoff.max_s, sensors)
            self._problem_logged = problem
        else:
            log.debug("sensor broker %s (%s): still %s; retry %d in %.1f s", self.name, self.address, problem,
                      self.backoff.failures, delay)
        self._set_state("down")

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.since = state, time.time()

    def health(self) -> dict[str, Any]:
        with self._lock:
            sensors = {sensor_id: {"name": c.name, "messages": c.messages, "errors": c.errors,
                                   "last_error": c.last_error} for sensor_id, c in self.counters.items()}
        return {
            "address": self.address, "state": self.state, "connected": self.state == "connected",
            "since": datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds"),
            "connects": self.connects, "failures": self.backoff.failures, "last_error": self.last_error,
            "retry_in_s": None if self.retry_at is None else round(max(0.0, self.retry_at - time.time()), 1),
            "messages": sum(s["messages"] for s in sensors.values()),
            "errors": sum(s["errors"] for s in sensors.values()),
            "sensors": sensors,
        }
