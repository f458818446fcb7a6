"""`gateway run`: every configured camera, one shared detector, alerts to the outbox and MQTT.

Threads, and who owns what:
  reader-<camera>  one per camera (gateway.video.reader): keeps the newest frame, reconnects.
  analysis         one (gateway.scheduler): gate -> detect -> track -> rules, camera by camera.
  mqtt-publisher   one (gateway.comms.mqtt): outbox -> broker, status, acks, remote look.
  main             supervision once a second: camera_offline alerts, retained camera state.
Alerts take one path whatever raised them: `emit` writes them to the durable outbox (and
from there the publisher sends them); nothing is published that was not first on disk.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.camera import CameraWorker
from gateway.comms.mqtt import MqttPublisher
from gateway.config.models import GatewayConfig
from gateway.detection import TimedDetector, load_detector
from gateway.events import AlertMessage
from gateway.outbox import AckRecord, Outbox
from gateway.scheduler import AnalysisScheduler

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 1.0
CAMERA_STATE_EVERY_S = 30.0
"""Retained camera state is republished on a state change, and at least this often."""


class GatewayService:
    def __init__(self, config: GatewayConfig):
        self.config = config
        self.timezone = ZoneInfo(config.gateway.timezone)
        self.started_at = time.monotonic()
        self.detector: TimedDetector | None = None
        self.outbox: Outbox | None = None
        self.publisher: MqttPublisher | None = None
        self.scheduler: AnalysisScheduler | None = None
        self._published_states: dict[str, tuple[str, float]] = {}
        self._emit_lock = threading.Lock()

    # ----------------------------------------------------------------- start / stop

    def start(self) -> None:
        """Load the model, open the outbox, connect (in the background), start every camera."""
        settings = self.config.gateway
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.detector = TimedDetector(load_detector(self.config.detector))
        log.info("detector ready: %s, input %dx%d, %d threads", self.config.detector.model.name,
                 *self.detector.input_size, self.config.detector.threads)
        self.outbox = Outbox.in_dir(settings.data_dir, self.config.storage.outbox_max_mb)
        if self.outbox.depth():
            log.info("outbox holds %d undelivered alert messages from before; resending them",
                     self.outbox.depth())
        self.publisher = MqttPublisher(
            self.config.mqtt, settings.id, self.outbox, health_provider=self.health,
            snapshot_provider=self.camera_snapshot, on_ack=self._on_ack)
        self.publisher.start()
        self.scheduler = AnalysisScheduler(self.detector, self.emit)
        for camera in self.config.cameras:
            self.add_camera_worker(CameraWorker(camera, settings))
        self.scheduler.start()
        log.info("gateway %s %s running: %d cameras, data in %s", settings.id, __version__,
                 len(self.config.cameras), settings.data_dir)

    def add_camera_worker(self, worker: CameraWorker) -> None:
        worker.start()
        self.scheduler.add(worker)

    def remove_camera(self, camera_id: str) -> None:
        """Stop one camera alone; its open events end through the normal path."""
        worker = self.scheduler.remove(camera_id)
        if worker is not None:
            self.emit(worker.stop())
            self._published_states.pop(camera_id, None)

    def stop(self) -> None:
        """Stop readers and analysis, end open events into the outbox, flush, disconnect."""
        log.info("stopping: ending open events and flushing the outbox")
        if self.scheduler is not None:
            self.scheduler.stop()
            for worker in self.scheduler.workers():
                self.remove_camera(worker.camera.id)
        if self.publisher is not None:
            self.publisher.stop()
        if self.outbox is not None:
            left = self.outbox.depth()
            if left:
                log.info("%d alert messages stay in the outbox for the next start", left)
            self.outbox.close()
        if self.detector is not None:
            self.detector.close()

    # ----------------------------------------------------------------- alerts

    def emit(self, messages: list[AlertMessage]) -> None:
        """The one path of every alert: durable outbox first, then the publisher sends it."""
        if not messages:
            return
        with self._emit_lock:
            self.publisher.submit_many([message.payload for message in messages])
        for message in messages:
            payload = message.payload
            log.info("camera %s: %s [%s seq %d, event %s]", payload["camera_id"], payload["title_zh"],
                     message.state, message.seq, message.event_id)

    def _on_ack(self, record: AckRecord) -> None:
        log.info("event %s acknowledged by %s (case %s)", record.event_id, record.by, record.case_id)

    # ----------------------------------------------------------------- supervision

    def supervise(self) -> None:
        """One supervision turn: offline alerts and retained camera state."""
        now = time.monotonic()
        for worker in self.scheduler.workers():
            self.emit(worker.supervise())
            status = worker.status()
            state = "offline" if status.offline else status.reader.state
            previous = self._published_states.get(worker.camera.id)
            if previous is None or previous[0] != state or now - previous[1] >= CAMERA_STATE_EVERY_S:
                self.publisher.set_camera_state(worker.camera.id, self._camera_health(worker))
                self._published_states[worker.camera.id] = (state, now)

    def run_until(self, stop: threading.Event) -> None:
        """Supervise once a second until `stop` is set (the CLI sets it on SIGTERM/SIGINT)."""
        while not stop.wait(SUPERVISE_EVERY_S):
            try:
                self.supervise()
            except Exception:  # noqa: BLE001 - supervision must outlive any single failure
                log.exception("supervision turn failed; trying again in %.0f s", SUPERVISE_EVERY_S)

    # ----------------------------------------------------------------- views

    def health(self) -> dict[str, Any]:
        """Heartbeat body: per-camera health and detector timing (the publisher adds its own)."""
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "detector_ms": self.detector.recent_ms() if self.detector else None,
            "analysis_alive": bool(self.scheduler and self.scheduler.alive),
            "cameras": {worker.camera.id: self._camera_health(worker)
                        for worker in (self.scheduler.workers() if self.scheduler else [])},
        }

    def _camera_health(self, worker: CameraWorker) -> dict[str, Any]:
        status = worker.status()
        reader = asdict(status.reader)
        reader.pop("camera_id")
        return {
            "state": "offline" if status.offline else reader.pop("state"),
            **{key: value for key, value in reader.items() if key != "state"},
            "skip_ratio": status.skip_ratio,
            "frames_inferred": status.frames_inferred,
            "frame_age_when_analysed_s": status.last_frame_age_when_analysed_s,
            "at": datetime.now(self.timezone).isoformat(timespec="seconds"),
        }

    def camera_snapshot(self, camera_id: str) -> bytes | None:
        for worker in self.scheduler.workers() if self.scheduler else []:
            if worker.camera.id == camera_id:
                return worker.live_snapshot()
        return None
