"""The GB/T 28181 output's `Transport`: one thread with one socket (UDP, or a TCP connection)
that runs the device state machine, and `deliver`, which hands it one alarm and waits for the
platform's answer.

The durable sink around it owns the outbox, the retries and their backoff; `deliver` only says
whether the platform answered the alarm with 200 OK (return) or not (`DeliveryFailed`: not
registered, refused, no answer in time). Only `start` messages are alarms: the platform's
alarm model has no lifecycle, so `update` and `end` return at once as delivered, unsent.

Everything from the network goes through the strict parser first; what fails it is logged
(rate-limited per source, never more than a short prefix of the datagram) and dropped. Over UDP
only datagrams from the platform's address (the host and port registered with) are read at all:
anything else is dropped unanswered (an answer would make the gateway a reflector for spoofed
sources), counted in health (`foreign_datagrams`) and logged rate-limited. Over TCP only the
platform is on the connection. The thread never dies of what it receives.

What the platform asks of cameras (PTZ, presets) and of the clip store (recordings) can take
seconds, so it never runs on this thread or under the device's lock: the device returns a
`CameraJob`, one worker thread carries the jobs out in order (a PTZ stop after its move) through
`CameraControl` / `RecordSource`, and hands each result back to the device as an input.
INVITE sessions' video: `streams.MediaSessions` (a thread per stream, never this one).
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.backoff import Backoff
from gateway.config.gb28181 import Gb28181Output
from gateway.config.models import Camera
from gateway.config.sensors import Sensor
from gateway.delivery.sink import DeliveryFailed
from gateway.logs import LogLimiter
from gateway.outputs.gb28181.actions import (
    Action,
    AlarmOutcome,
    CameraJob,
    DeviceSettings,
    Disconnect,
    MediaAction,
    MediaEnded,
    Send,
)
from gateway.outputs.gb28181.alarm_types import alarm_notice
from gateway.outputs.gb28181.camera_worker import CameraWorker
from gateway.outputs.gb28181.device import Gb28181Device
from gateway.outputs.gb28181.manscdp import Channel
from gateway.outputs.gb28181.sip import SipParseError, SipResponse, StreamFramer, parse_message
from gateway.outputs.gb28181.streams import MediaSessions
from gateway.status import CameraControl, RecordSource, VideoSource

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
MAX_IDLE_S = 1.0
"""The loop wakes at least this often (a guard; timers and input wake it sooner)."""
UNREGISTER_WAIT_S = 2.0
MAX_ALARMING = 1024


@dataclass
class _Pending:
    """One `deliver` waiting for its alarm's outcome."""

    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class Gb28181Transport:
    """Registers with one GB/T 28181 platform and delivers alarms to it (see module docstring).

    settings: the output's configuration. cameras, sensors: the configured ones (channel names,
    places and coordinates for the catalogue). timezone: the gateway's (AlarmTime is local).
    camera_online: whether a camera is up now (catalogue Status ON/OFF); default all ON.
    control: acts on cameras (the platform's PTZ and preset queries); None: refused clearly.
    records: the clips per camera (RecordInfo, playback); None: an empty list, and no playback.
    video: the cameras' packets (live video); None: every live INVITE is refused (480).
    """

    def __init__(
        self,
        settings: Gb28181Output,
        *,
        cameras: Sequence[Camera] = (),
        timezone: str | tzinfo = "Asia/Shanghai",
        gateway_name: str = "",
        camera_online: Callable[[str], bool] | None = None,
        sensors: Sequence[Sensor] = (),
        control: CameraControl | None = None,
        records: RecordSource | None = None,
        video: VideoSource | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.sink_name
        self._timezone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._cameras = [camera for camera in cameras if camera.id in settings.channels]
        self._sensors = [sensor for sensor in sensors if sensor.id in settings.channels]
        self._gateway_name = gateway_name or settings.name or settings.device_id
        self._camera_online = camera_online
        self._control, self._records = control, records
        self._alarming: dict[str, str] = {}
        """event_id -> channel of every alarm raised and not yet ended (DeviceStatus)."""
        self._label = f"GB/T 28181 platform {settings.host}:{settings.port}/{settings.transport}"
        self._device = Gb28181Device(
            DeviceSettings(
                device_id=settings.device_id,
                platform_id=settings.platform_id,
                domain=settings.sip_domain,
                password=settings.password.get_secret_value(),
                transport="TCP" if settings.transport == "tcp" else "UDP",
                expires_s=settings.expires_s,
                keepalive_s=settings.keepalive_s,
                max_missed_keepalives=settings.max_missed_keepalives,
                answer_timeout_s=settings.answer_timeout_s,
                name=settings.name or gateway_name or settings.device_id,
                manufacturer=settings.manufacturer,
                model=settings.model,
                firmware=__version__,
                max_streams=settings.max_streams,
            ),
            channels=self.catalogue,
            local_time=lambda: datetime.now(self._timezone).strftime("%Y-%m-%dT%H:%M:%S"),
            backoff=Backoff(min_s=1.0, max_s=settings.retry_max_s),
            label=self._label,
            wall_clock=lambda: datetime.now(self._timezone),
            alarming=lambda: frozenset(self._alarming.values()),
            recording=self._recording,
            can_control=control is not None,
            has_records=records is not None,
        )
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pending: dict[int, _Pending] = {}
        self._next_token = 0
        self._registered = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._sock: socket.socket | None = None
        self._framer = StreamFramer()
        self._platform: tuple[str, int] | None = None
        self._link_retry_at = 0.0
        self._link_backoff = Backoff(min_s=1.0, max_s=settings.retry_max_s)
        self._malformed = 0
        self._foreign = 0
        self._log_limiter = LogLimiter(burst=5, window_s=60.0)
        self._worker = CameraWorker(control, records, self._job_finished, name=f"{self.name}-cameras",
                                    label=self._label)
        self._media = MediaSessions(video=video, records=records, bind=settings.bind, ports=settings.media_ports,
                                    ended=self._media_ended, label=self._label, timezone=self._timezone)
        self._closed = False

    # ------------------------------------------------------------------ Transport protocol

    def open(self) -> None:
        if self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(target=self._run, name=f"{self.name}", daemon=True)
        self._thread.start()
        self._worker.start()

    def close(self) -> None:
        """Unregister (briefly waiting for the answer), then stop the thread and free the port."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=UNREGISTER_WAIT_S + CONNECT_TIMEOUT_S + 2)
        self._worker.stop()
        self._media.stop_all()
        self._close_socket()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def deliver(self, payload: dict[str, Any], timeout_s: float) -> None:
        """Send the alert as an alarm if it is a `start`; return on 2xx, else DeliveryFailed."""
        channel_id = alarm_channel(self.settings, payload)
        self._track_alarm(payload, channel_id)
        if payload.get("state") != "start":
            return
        deadline = time.monotonic() + timeout_s
        notice = alarm_notice(payload, channel_id=channel_id, timezone=self._timezone,
                              now=datetime.now(self._timezone))
        if not self._wait_registered(deadline):
            health = self.health()
            detail = f": {health['last_error']}" if health.get("last_error") else ""
            raise DeliveryFailed(f"{self._label}: not registered ({health['state']}){detail}")
        pending = _Pending()
        with self._lock:
            self._next_token += 1
            token = self._next_token
            self._pending[token] = pending
        self._commands.put(("alarm", (token, notice)))
        self._wake()
        answered = pending.done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._pending.pop(token, None)
        if not answered:
            self._commands.put(("abandon", token))
            self._wake()
            raise DeliveryFailed(f"{self._label}: no answer to the alarm within {timeout_s:g} s")
        if pending.error is not None:
            raise DeliveryFailed(f"{self._label}: {pending.error}")

    def _wait_registered(self, deadline: float) -> bool:
        """Wait for the registration (an alert right after start, or as soon as the platform is
        back), but give up at once when the output stops or is not running."""
        while not self._registered.is_set():
            if not self.alive or self._stopping.is_set():
                raise DeliveryFailed(f"{self._label}: the output is not running")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._registered.wait(min(remaining, 0.25))
        return True

    def health(self) -> dict[str, Any]:
        with self._lock:
            device = self._device.health()
        return {
            "name": self.name,
            "platform": f"{self.settings.host}:{self.settings.port}/{self.settings.transport}",
            "device_id": self.settings.device_id,
            "connected": device["registered"],
            "alive": self.alive,
            **device,
            "malformed": device["malformed"] + self._malformed,
            "foreign_datagrams": self._foreign,
            **self._media.health(),
        }

    def _track_alarm(self, payload: dict[str, Any], channel_id: str) -> None:
        """Which channels have an alarm raised now (DeviceStatus DutyStatus ALARM)."""
        event_id = str(payload.get("event_id") or "")
        with self._lock:
            if payload.get("state") == "end":
                self._alarming.pop(event_id, None)
            elif event_id and (event_id in self._alarming or len(self._alarming) < MAX_ALARMING):
                self._alarming[event_id] = channel_id

    def _recording(self) -> bool:
        if self._records is None:
            return False
        try:
            return any(self._records.recording(camera.id) for camera in self._cameras)
        except Exception as error:  # noqa: BLE001 - a status flag must not break the answer
            log.debug("%s: recording status unavailable: %s", self._label, error)
            return False

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        log.info("%s: starting as device %s with %d channel(s)", self._label, self.settings.device_id,
                 len(self.catalogue()))
        stop_deadline: float | None = None
        while True:
            now = time.monotonic()
            if self._stopping.is_set() and stop_deadline is None:
                stop_deadline = now + UNREGISTER_WAIT_S
                self._call(partial(self._device.unregister, now))
            if stop_deadline is not None and (now >= stop_deadline or not self._device.busy_unregistering):
                break
            try:
                self._ensure_link(now)
                self._wait_and_handle()
                self._handle_commands()
                self._call(lambda: self._device.tick(time.monotonic()))
            except Exception:  # noqa: BLE001 - the output must outlive its own bugs
                log.exception("%s: unexpected error in the SIP loop; continuing", self._label)
                time.sleep(0.5)
        self._fail_pending("the output stopped")
        log.info("%s: stopped", self._label)

    def _wait_and_handle(self) -> None:
        wakeup = self._device.next_wakeup()
        timeout = MAX_IDLE_S if wakeup is None else min(MAX_IDLE_S, max(0.0, wakeup - time.monotonic()))
        if self._sock is None and not self._stopping.is_set():
            timeout = min(timeout, max(0.0, self._link_retry_at - time.monotonic()))
        for key, _ in self._selector.select(timeout):
            if key.data == "wake":
                self._drain_wake()
            elif key.data == "sock":
                self._read_socket()

    def _handle_commands(self) -> None:
        while True:
            try:
                command, argument = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "alarm":
                token, notice = argument
                self._call(partial(self._device.send_alarm, token, notice, time.monotonic()))
            elif command == "abandon":
                with self._lock:
                    self._device.abandon(argument)
            elif command == "job_done":
                job_id, result, error = argument
                self._call(partial(self._device.job_done, job_id, result, error, time.monotonic()))
            elif command == "media":
                self._call(partial(self._device.media_event, argument, time.monotonic()))

    def _call(self, step: Callable[[], list[Action]], reply_to: tuple[str, int] | None = None) -> None:
        """Run one step of the device under the lock, then carry out what it asks for."""
        with self._lock:
            actions = step()
            registered = self._device.state == "registered"
        if registered:
            self._registered.set()
            self._link_backoff.reset()
        else:
            self._registered.clear()
        for action in actions:
            if isinstance(action, Send):
                destination = reply_to if isinstance(action.message, SipResponse) and reply_to else self._platform
                self._send(action.message.to_bytes(), destination)
            elif isinstance(action, AlarmOutcome):
                self._settle(action.token, action.error)
            elif isinstance(action, Disconnect):
                self._drop_link(action.reason, at_once=True)
            elif isinstance(action, CameraJob):
                self._worker.submit(action)
            elif isinstance(action, MediaAction):
                if (event := self._media.carry_out(action)) is not None:
                    self._call(partial(self._device.media_event, event, time.monotonic()))

    def _job_finished(self, job_id: int, result: object, error: str | None) -> None:
        """From the camera worker: feed the result to the device on this output's thread."""
        self._commands.put(("job_done", (job_id, result, error)))
        self._wake()

    def _media_ended(self, session_id: int, reason: str) -> None:
        """From a stream's thread: it ended by itself; the device ends the session (BYE)."""
        self._commands.put(("media", MediaEnded(session_id, reason)))
        self._wake()

    def _settle(self, token: int, error: str | None) -> None:
        with self._lock:
            pending = self._pending.get(token)
        if pending is not None:
            pending.error = error
            pending.done.set()

    def _fail_pending(self, reason: str) -> None:
        with self._lock:
            pending = list(self._pending.values())
        for item in pending:
            item.error = reason
            item.done.set()

    # ------------------------------------------------------------------ sockets

    def _ensure_link(self, now: float) -> None:
        """UDP: a bound socket (once). TCP: a connection, re-made with backoff when lost."""
        if self._sock is not None or now < self._link_retry_at or self._stopping.is_set():
            return
        step = f"resolve {self.settings.host}"
        try:
            self._platform = self._resolve()
            if self.settings.transport == "udp":
                step = f"bind the local SIP port {self.settings.bind}:{self.settings.local_port}/udp"
                self._open_udp()
            else:
                step = f"connect to {self._platform[0]}:{self._platform[1]}"
                self._open_tcp()
        except OSError as error:
            delay = self._link_backoff.next_delay()
            self._link_retry_at = now + delay
            with self._lock:
                self._device.last_error = f"cannot {step}: {error}"
            log.warning("%s: cannot %s (%s); retrying in %.1f s", self._label, step, error, delay)
            self._close_socket()
            return
        local = self._local_address()
        if self.settings.transport == "tcp":
            log.info("%s: connected from %s:%d", self._label, *local)
        now = time.monotonic()
        if self._device.state == "stopped":
            self._call(lambda: self._device.start(now))
        self._call(lambda: self._device.link_up(local, now))

    def _resolve(self) -> tuple[str, int]:
        kind = socket.SOCK_DGRAM if self.settings.transport == "udp" else socket.SOCK_STREAM
        infos = socket.getaddrinfo(self.settings.host, self.settings.port, socket.AF_INET, kind)
        host, port = infos[0][4][:2]
        assert isinstance(host, str) and isinstance(port, int), "an AF_INET address is (host, port)"
        return host, port

    def _open_udp(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # no SO_REUSEADDR: on Linux it would let a second output share the port and steal
            # half of its datagrams; a port in use must be an error the installer sees
            sock.bind((self.settings.bind, self.settings.local_port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._attach(sock)

    def _open_tcp(self) -> None:
        assert self._platform is not None
        # The platform answers and asks over this connection, so the local port only matters
        # when the installer sets one (a firewall rule): by default any free port, which also
        # spares the reconnect a wait for the old connection's TIME_WAIT.
        port = self.settings.local_port if "local_port" in self.settings.model_fields_set else 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.settings.bind, port))
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(self._platform)
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # reads happen only when the selector says so; a send that cannot finish within the
        # timeout (CONNECT_TIMEOUT_S) breaks the stream's framing: the connection is dropped
        self._framer = StreamFramer()
        self._attach(sock)

    def _attach(self, sock: socket.socket) -> None:
        self._sock = sock
        self._selector.register(sock, selectors.EVENT_READ, "sock")

    def _local_address(self) -> tuple[str, int]:
        """What Via and Contact advertise: contact_host, else the address facing the platform."""
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        if self.settings.contact_host:
            return self.settings.contact_host, port
        if host == "0.0.0.0" and self._platform is not None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(self._platform)  # no packet is sent: only picks the route
                host = probe.getsockname()[0]
        return host, port

    def _read_socket(self) -> None:
        assert self._sock is not None
        if self.settings.transport == "udp":
            for _ in range(64):  # drain what is there, but let timers run under a flood
                try:
                    data, source = self._sock.recvfrom(65_535)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as error:  # e.g. an ICMP error reported on the socket
                    log.debug("%s: receive error %s", self._label, error)
                    return
                self._handle_datagram(data, source[:2])
            return
        try:
            data = self._sock.recv(65_536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._drop_link(f"receive failed: {error}")
            return
        if not data:
            self._drop_link("the platform closed the connection")
            return
        try:
            messages = self._framer.feed(data)
        except SipParseError as error:
            self._malformed += 1
            self._drop_link(f"unreadable SIP stream ({error})")
            return
        for raw in messages:
            self._handle_datagram(raw, None)

    def _handle_datagram(self, data: bytes, source: tuple[str, int] | None) -> None:
        where = f"{source[0]}:{source[1]}" if source else "the TCP connection"
        if source is not None and source != self._platform:
            self._foreign += 1
            self._log_limiter.log(log, logging.WARNING, f"foreign:{source[0]}",
                                  "%s: dropped %d bytes from %s: not the platform's address %s (first bytes %r)",
                                  self._label, len(data), where, self._platform_text, data[:24])
            return
        try:
            message = parse_message(data)
        except SipParseError as error:
            self._malformed += 1
            self._log_limiter.log(log, logging.WARNING, f"malformed:{where}",
                                  "%s: ignored malformed SIP from %s (%d bytes): %s", self._label, where,
                                  len(data), str(error)[:120])
            return
        self._call(lambda: self._device.receive(message, time.monotonic()), reply_to=source)

    @property
    def _platform_text(self) -> str:
        return f"{self._platform[0]}:{self._platform[1]}" if self._platform else "(not resolved)"

    def _send(self, data: bytes, destination: tuple[str, int] | None) -> None:
        if self._sock is None:
            return  # the device times the request out, as if it were lost
        try:
            if self.settings.transport == "udp":
                if destination is not None:
                    self._sock.sendto(data, destination)
            else:
                self._sock.sendall(data)
        except OSError as error:  # UDP: as if lost on the way (retransmitted); TCP: reconnect
            if self.settings.transport == "tcp":
                self._drop_link(f"send failed: {error or type(error).__name__}")
            else:
                log.debug("%s: send to %s failed: %s", self._label, destination, error)

    def _drop_link(self, reason: str, *, at_once: bool = False) -> None:
        """TCP: close the connection and connect again: at once when the device asks (it keeps
        its own backoff), else after the connection backoff (a platform that accepts and
        drops connections is not hammered)."""
        if self.settings.transport != "tcp" or self._sock is None:
            return
        log.warning("%s: %s; reconnecting", self._label, reason)
        self._close_socket()
        now = time.monotonic()
        self._link_retry_at = now + (0.0 if at_once else self._link_backoff.next_delay())
        self._call(lambda: self._device.link_down(reason, now))

    def _close_socket(self) -> None:
        if self._sock is None:
            return
        try:
            self._selector.unregister(self._sock)
        except (KeyError, ValueError):
            pass
        self._sock.close()
        self._sock = None

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # ------------------------------------------------------------------ catalogue

    def catalogue(self) -> list[Channel]:
        """The catalogue: the cameras with a channel, the sensors with one (alarm inputs), and
        the gateway's own alarm channel, where every other alarm is raised."""
        settings = self.settings
        channels = []
        for camera in self._cameras:
            online = True if self._camera_online is None else bool(self._camera_online(camera.id))
            channels.append(Channel(
                channel_id=settings.channels[camera.id], name=camera.name or camera.id,
                manufacturer=settings.manufacturer, model=settings.model, parent_id=settings.device_id,
                online=online, address=camera.location.address, longitude=camera.location.lon,
                latitude=camera.location.lat, camera_id=camera.id,
            ))
        for sensor in self._sensors:
            channels.append(Channel(
                channel_id=settings.channels[sensor.id], name=sensor.name or sensor.id,
                manufacturer=settings.manufacturer, model=f"{sensor.type} sensor", parent_id=settings.device_id,
                online=True, address=sensor.location.address, longitude=sensor.location.lon,
                latitude=sensor.location.lat,
            ))
        channels.append(Channel(
            channel_id=settings.gateway_channel, name=f"{self._gateway_name} 告警", manufacturer=settings.manufacturer,
            model=settings.model, parent_id=settings.device_id, online=True))
        return channels


def alarm_channel(settings: Gb28181Output, payload: dict[str, Any]) -> str:
    """The channel an alert is raised on: its sensor's (the `details` of a sensor alert), else
    its camera's, else the gateway's alarm channel (see `Gb28181Output.channel_id`)."""
    details = payload.get("details")
    sensor_id = details.get("sensor_id") if payload.get("type") == "sensor" and isinstance(details, dict) else None
    camera_id = payload.get("camera_id")
    return settings.channel_id(camera_id if isinstance(camera_id, str) else None,
                               sensor_id if isinstance(sensor_id, str) else None)
