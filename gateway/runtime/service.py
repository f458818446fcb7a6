"""`gateway run`: every configured camera, one shared detector, alerts to every output.

Threads, and who owns what:
  reader-<camera>  one per camera (gateway.video.reader): keeps the newest frame, reconnects.
  analysis         one (gateway.camera.scheduler): gate -> detect -> track -> rules, camera by camera.
  mqtt-publisher   the MQTT output (gateway.outputs.mqtt): its outbox -> broker, status, acks,
                   case progress, remote look.
  deliver-<name>   one per other output (gateway.delivery.durable): its outbox -> webhook, ...
  api              the web API and page (uvicorn), reading live state through `GatewayView`.
  sensors-<broker> one per site broker (gateway.sensors.input): sensor messages in.
  onvif            one asyncio loop for every ONVIF task: events listeners, PTZ patrols.
  main             supervision once a second: camera_offline alerts, retained camera state,
                   held alerts and the disk_full alert (gateway.delivery.router); every thread
                   and task above is a `Worker` (gateway.workers): one that dies stops the
                   systemd watchdog and turns /healthz to failing.
Alerts take one path whatever raised them: `emit` hands them to the router, which queues them
in every output's durable outbox (nothing is sent that was not first queued), records them in
the history the web page shows, and runs the reactions (PTZ linkage).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.api.app import create_app
from gateway.api.metrics import GatewayMetrics
from gateway.api.server import ApiServer, make_server
from gateway.calibration.live import LiveCounting
from gateway.calibration.studio import CountingStudio
from gateway.camera.scheduler import AnalysisScheduler
from gateway.camera.worker import CameraWorker
from gateway.checks import check_site
from gateway.config.models import Camera, GatewayConfig, GatewaySection, OnvifSource
from gateway.delivery.diskwatch import DiskFullWatch
from gateway.delivery.history import EventHistory
from gateway.delivery.outbox import Outbox
from gateway.delivery.reactions import PtzLinkage
from gateway.delivery.router import AlertRouter
from gateway.detection import TimedDetector, load_detector
from gateway.events import AlertMessage
from gateway.outputs.mqtt.sink import MqttSink
from gateway.outputs.registry import build_outputs
from gateway.redaction import redact
from gateway.runtime.sdnotify import SystemdNotifier
from gateway.sensors.alerts import LinkedEvidence
from gateway.sensors.hub import SensorHub
from gateway.sensors.input import SensorInput
from gateway.status import CameraStatus, ZoneOutline
from gateway.workers import Worker, Workers, dead

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 1.0
ANALYSIS_STALL_S = 30.0
"""The analysis loop turns at least every few ms; silent this long means it hangs."""
CAMERA_STATE_EVERY_S = 30.0
"""Retained camera state is republished on a state change, and at least this often."""


class GatewayService:
    def __init__(self, config: GatewayConfig):
        self.config = config
        self.timezone = ZoneInfo(config.gateway.timezone)
        self.started_at = time.monotonic()
        self.detector: TimedDetector | None = None
        self.router: AlertRouter | None = None
        self.outbox: Outbox | None = None
        """The ledger: the outbox that keeps acks and the ids of sent events (the MQTT output's)."""
        self.mqtt: MqttSink | None = None
        """The MQTT output, when configured: presence, camera state, acks, remote look."""
        self.scheduler: AnalysisScheduler | None = None
        self.history: EventHistory | None = None
        self.api_server: ApiServer | None = None
        self._api_thread: threading.Thread | None = None
        self.onvif_loop = None
        self.sensor_hub: SensorHub | None = None
        self.sensor_input: SensorInput | None = None
        self._published_states: dict[str, tuple[str, float]] = {}

    # ----------------------------------------------------------------- start / stop

    def start(self) -> None:
        """Load the model, open the outputs (they connect in the background), start every camera."""
        settings = self.config.gateway
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a full disk must not stop the gateway: alerts are held in memory
            log.error("cannot create the data directory %s: %s", settings.data_dir, exc)
        self.detector = TimedDetector(load_detector(self.config.detector))
        log.info("detector ready: %s, input %dx%d, %d threads", self.config.detector.model.name,
                 *self.detector.input_size, self.config.detector.threads)
        router = self._start_delivery()
        self.scheduler = AnalysisScheduler(self.detector, self.emit)
        for camera in self.config.cameras:
            self.add_camera_worker(self.make_worker(camera, settings))
        self.scheduler.start()
        self._start_sensors()
        self._start_api(router)
        log.info("gateway %s %s running: %d cameras, data in %s", settings.id, __version__,
                 len(self.config.cameras), settings.data_dir)

    def _start_delivery(self) -> AlertRouter:
        """Every output with its own outbox, the history, and the router that feeds them."""
        settings = self.config.gateway
        outputs = build_outputs(self.config, health_provider=self.health, snapshot_provider=self.camera_snapshot,
                                camera_known=self.has_camera, camera_online=self.camera_online,
                                on_ack=lambda record: self._delivery().on_centre_ack(record),
                                on_case=lambda update: self._delivery().record_case(update))
        self.history = EventHistory.from_config(settings.data_dir, self.config.storage)
        self.router = AlertRouter(outputs, self.history, gateway_id=settings.id,
                                  reactions=[PtzLinkage(self._turn_camera)], disk_watch=DiskFullWatch(settings),
                                  timezone=self.timezone, data_dir=settings.data_dir)
        self.outbox = self.router.ledger
        self.mqtt = next((out.sink for out in outputs if isinstance(out.sink, MqttSink)), None)
        self.router.start()
        log.info("alerts go to %s", ", ".join(sink.name for sink in self.router.sinks))
        return self.router

    def _delivery(self) -> AlertRouter:
        """The router; every path that needs it runs after `start` built it."""
        if self.router is None:
            raise RuntimeError("the gateway's delivery is not started")
        return self.router

    def _analysis(self) -> AnalysisScheduler:
        """The scheduler; every path that needs it runs after `start` built it."""
        if self.scheduler is None:
            raise RuntimeError("the gateway's analysis is not started")
        return self.scheduler

    def _camera_workers(self) -> list[CameraWorker]:
        """The running cameras (none before `start`)."""
        return self.scheduler.workers() if self.scheduler is not None else []

    def _start_sensors(self) -> None:
        """IoT sensors on their site brokers: alerts with evidence from linked cameras."""
        if not self.config.sensors:
            return
        self.sensor_hub = SensorHub(self.config, evidence=self.linked_evidence,
                                    emit=lambda message: self.emit([message]))
        self.sensor_input = SensorInput(self.config.sensor_brokers, self.config.sensors,
                                        self.sensor_hub.dispatch, self.config.gateway.id)
        self.sensor_input.start()
        log.info("%d sensors on %d site brokers", len(self.config.sensors),
                 len(self.config.sensor_brokers))

    def _turn_camera(self, camera_id: str, preset: str) -> None:
        """The PTZ linkage's hand on the cameras (gateway.delivery.reactions decides when)."""
        for worker in self._camera_workers():
            if worker.camera.id == camera_id:
                worker.turn_to(preset)

    def linked_evidence(self, camera_ids: list[str], before_s: float = 0.0) -> list[LinkedEvidence]:
        """Each linked camera's analysed picture and count from `before_s` ago (no network I/O)."""
        workers = {worker.camera.id: worker for worker in self._camera_workers()}
        evidence = []
        for camera_id in camera_ids:
            if camera_id in workers:
                count, snapshot = workers[camera_id].evidence(before_s)
                evidence.append(LinkedEvidence(camera_id, count, snapshot))
        return evidence

    def _live_counting(self, camera_id: str) -> LiveCounting | None:
        """A running camera's counting state, for the page's annotation tool (API threads)."""
        for worker in self._camera_workers():
            if worker.camera.id == camera_id:
                return worker.counting
        return None

    def _start_api(self, router: AlertRouter) -> None:
        """The web API and page on their own thread; a port already taken is logged, not fatal:
        alerts keep flowing to the centre without the page."""
        metrics = GatewayMetrics()
        metrics.attach(inference=self.detector, delivery=self.router)
        app = create_app(self, router.history, router.ledger, self.config.api, metrics=metrics,
                         publisher=self.mqtt, timezone=self.config.gateway.timezone,
                         sessions_path=self.config.gateway.data_dir / "web-sessions.json", delivery=self.router,
                         counting_studio=CountingStudio(self.config.gateway.data_dir, self._live_counting))
        server = self.api_server = make_server(app, self.config.api)

        def serve() -> None:
            try:
                server.run()
            except SystemExit:
                pass
            if not server.should_exit:
                log.error("web API on %s:%d stopped or could not start (port in use?); alerts are "
                          "still delivered to every output", self.config.api.bind, self.config.api.port)

        self._api_thread = threading.Thread(target=serve, name="api", daemon=True)
        self._api_thread.start()
        log.info("web page on http://%s:%d/", self.config.api.bind, self.config.api.port)

    def make_worker(self, camera: Camera, gateway: GatewaySection) -> CameraWorker:
        if isinstance(camera.source, OnvifSource) and self.onvif_loop is None:
            from gateway.onvif import OnvifLoop

            self.onvif_loop = OnvifLoop().start()
        worker = CameraWorker(camera, gateway, onvif_loop=self.onvif_loop)
        worker.keep_history_s = max((sensor.link.pre_s for sensor in self.config.sensors
                                     if camera.id in sensor.link.cameras), default=0.0)
        worker.alarm_sensors = [sensor for sensor in self.config.sensors
                                if sensor.onvif is not None and sensor.onvif.camera == camera.id]
        worker.alarm_sink = self._camera_alarm
        return worker

    def _camera_alarm(self, sensor_id: str, active: bool, value: str) -> None:
        """A camera's ONVIF alarm that a sensor claims (`sensors[].onvif`): it is that sensor's event."""
        if self.sensor_hub is not None:
            self.sensor_hub.observe(sensor_id, active, value)

    def add_camera_worker(self, worker: CameraWorker) -> None:
        worker.start()
        self._analysis().add(worker)

    def remove_camera(self, camera_id: str) -> None:
        """Stop one camera alone; its open events end through the normal path."""
        worker = self._analysis().remove(camera_id)
        if worker is not None:
            self.emit(worker.stop())
            self._published_states.pop(camera_id, None)

    def stop(self) -> None:
        """Stop readers and analysis, end open events into the outboxes, flush, disconnect."""
        log.info("stopping: ending open events and flushing the outboxes")
        if self.api_server is not None:
            self.api_server.should_exit = True
        if self._api_thread is not None:
            self._api_thread.join(5)
        if self.scheduler is not None:
            self.scheduler.stop()
            for worker in self.scheduler.workers():
                self.remove_camera(worker.camera.id)
        if self.sensor_hub is not None:
            self.sensor_hub.close()
        if self.sensor_input is not None:
            self.sensor_input.stop()
        if self.onvif_loop is not None:
            self.onvif_loop.stop()
        if self.router is not None:
            self.router.stop()
        if self.detector is not None:
            self.detector.close()

    # ----------------------------------------------------------------- alerts

    def emit(self, messages: list[AlertMessage]) -> None:
        """The one path of every alert: the router queues it for every output (durably, first),
        records it for the page and runs the reactions. Never raises."""
        self._delivery().route(messages)

    # ----------------------------------------------------------------- supervision

    def supervise(self) -> None:
        """One supervision turn: offline alerts, retained camera state, held alerts, disk_full."""
        now = time.monotonic()
        self._delivery().tick()
        sensor_states = {}
        if self.sensor_hub is not None:
            self.sensor_hub.tick()
            sensor_states = self.sensor_hub.active_states()
        for worker in self._camera_workers():
            worker.sensor_states = sensor_states
            self.emit(worker.supervise())
            status = worker.status()
            state = "offline" if status.offline else status.reader.state
            previous = self._published_states.get(worker.camera.id)
            if self.mqtt is None:
                continue
            if previous is None or previous[0] != state or now - previous[1] >= CAMERA_STATE_EVERY_S:
                self.mqtt.set_camera_state(worker.camera.id, self._camera_health(worker))
                self._published_states[worker.camera.id] = (state, now)

    def run_until(self, stop: threading.Event, notifier: SystemdNotifier | None = None,
                  reload: threading.Event | None = None, config_path: Path | None = None) -> None:
        """Supervise once a second until `stop` is set (the CLI sets it on SIGTERM/SIGINT).

        Tells systemd READY=1 first, then WATCHDOG=1 on each turn while every worker is alive;
        `reload` (set on SIGHUP) re-reads `config_path`.
        """
        notifier = notifier or SystemdNotifier()
        notifier.ready(self.status_line())
        while not stop.wait(SUPERVISE_EVERY_S):
            if reload is not None and reload.is_set():
                reload.clear()
                notifier.reloading()
                self.reload(config_path)
                notifier.ready(self.status_line())
            try:
                self.supervise()
            except Exception:  # noqa: BLE001 - supervision must outlive any single failure
                log.exception("supervision turn failed; trying again in %.0f s", SUPERVISE_EVERY_S)
            failures = self.failed_workers()
            if failures:
                log.error("not feeding the systemd watchdog: %s", "; ".join(failures))
            else:
                notifier.watchdog(self.status_line())
        notifier.stopping()

    def workers(self) -> Workers:
        """Every thread and task the gateway runs, by the name an operator reads in the log."""
        workers: dict[str, Worker] = {}
        if self.scheduler is not None:
            workers["analysis thread"] = self.scheduler
        if self.router is not None:
            workers.update(self.router.workers())
        if self.sensor_input is not None:
            workers.update(self.sensor_input.workers())
        if self.onvif_loop is not None:
            workers["ONVIF loop thread"] = self.onvif_loop
        for camera in self._camera_workers():
            workers.update(camera.workers())
        return workers

    def failed_workers(self) -> list[str]:
        """Workers that should be running but are not, or hang (what the watchdog guards)."""
        failures = dead(self.workers())
        if self.scheduler is None:
            failures.insert(0, "analysis thread is not running")
        elif self.scheduler.alive and time.monotonic() - self.scheduler.heartbeat > ANALYSIS_STALL_S:
            failures.insert(0, f"analysis thread stuck for {time.monotonic() - self.scheduler.heartbeat:.0f} s")
        if self.router is None:
            failures.append("delivery is not running")
        return failures

    def status_line(self) -> str:
        workers = self._camera_workers()
        streaming = sum(worker.reader.health().state == "streaming" for worker in workers)
        depth = self.router.queued() if self.router else 0
        full = ", DATA DISK FULL" if self.router and self.router.disk_full else ""
        return f"{streaming}/{len(workers)} cameras streaming, {depth} alerts queued{full}"

    # ----------------------------------------------------------------- reload

    def reload(self, config_path: Path | None) -> None:
        """Re-read the YAML: cameras added, removed or changed restart alone; others keep running.

        An invalid file is rejected with every problem logged, and the running config stays.
        Changes outside `cameras` (detector, MQTT, API, storage) need a restart: logged as such.
        """
        if config_path is None:
            return
        try:
            new, issues = check_site(config_path)
        except Exception as error:  # noqa: BLE001 - a bad file must never stop a running gateway
            log.error("reload rejected: %s could not be read (%s); still running the previous "
                      "configuration", config_path, redact(str(error)))
            return
        if new is None:
            for issue in issues:
                log.error("reload rejected: %s", issue)
            log.error("reload rejected: %d problems in %s; still running the previous configuration",
                      len(issues), config_path)
            return
        old_cameras = {camera.id: camera for camera in self.config.cameras}
        new_cameras = {camera.id: camera for camera in new.cameras}
        for camera_id in old_cameras.keys() - new_cameras.keys():
            log.info("reload: camera %s removed; stopping it", camera_id)
            self.remove_camera(camera_id)
        for camera_id, camera in new_cameras.items():
            if camera_id not in old_cameras:
                log.info("reload: camera %s added; starting it", camera_id)
            elif camera != old_cameras[camera_id] or new.gateway != self.config.gateway:
                log.info("reload: camera %s changed; restarting it", camera_id)
                self.remove_camera(camera_id)
            else:
                continue
            self.add_camera_worker(self.make_worker(camera, new.gateway))
        needs_restart = [section for section in ("detector", "mqtt", "outputs", "storage", "api", "sensors",
                                                 "sensor_brokers")
                         if getattr(new, section) != getattr(self.config, section)]
        if needs_restart:
            log.warning("reload: changes to %s take effect after a restart (systemctl restart gateway)",
                        ", ".join(needs_restart))
        self.config = new.model_copy(update={section: getattr(self.config, section)
                                             for section in needs_restart})
        log.info("reload done: %d cameras", len(new.cameras))

    # ----------------------------------------------------------------- views

    def health(self) -> dict[str, Any]:
        """Heartbeat body: per-camera health, detector timing, every output and the data disk
        (the MQTT output adds its own connection figures)."""
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "detector_ms": self.detector.recent_ms() if self.detector else None,
            "analysis_alive": bool(self.scheduler and self.scheduler.alive),
            "failed_workers": self.failed_workers(),
            "cameras": {worker.camera.id: self._camera_health(worker)
                        for worker in self._camera_workers()},
            **({"sensors": self.sensor_hub.health()} if self.sensor_hub is not None else {}),
            **({"sensor_brokers": self.sensor_input.health()} if self.sensor_input is not None else {}),
            **(self.router.health() if self.router is not None else {}),
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
            "tiles_per_frame": status.tiles_per_frame,
            "inference_ms_per_frame": status.inference_ms,
            "frame_age_when_analysed_s": status.last_frame_age_when_analysed_s,
            **({"patrol": asdict(status.patrol)} if status.patrol is not None else {}),
            "at": datetime.now(self.timezone).isoformat(timespec="seconds"),
        }

    # ----------------------------------------------------------------- GatewayView (web API)

    @property
    def gateway_id(self) -> str:
        return self.config.gateway.id

    @property
    def gateway_name(self) -> str:
        return self.config.gateway.name

    def cameras(self) -> list[CameraStatus]:
        workers = {worker.camera.id: worker for worker in self.scheduler.workers()} \
            if self.scheduler else {}
        return [self._camera_status(workers[camera.id]) for camera in self.config.cameras
                if camera.id in workers]

    def _camera_status(self, worker: CameraWorker) -> CameraStatus:
        status = worker.status()
        reader = status.reader
        camera = worker.camera
        analytics = worker.analytics
        zones = [ZoneOutline(zone_id, _zone_name(camera, zone_id), [tuple(p) for p in polygon.tolist()])
                 for zone_id, polygon in (analytics.zones.items() if analytics else [])]
        masks = [ZoneOutline(f"mask-{index}", mask.name, [tuple(p) for p in polygon.tolist()])
                 for index, (mask, polygon) in enumerate(zip(camera.masks, analytics.masks, strict=True))] \
            if analytics else []
        return CameraStatus(
            id=camera.id, name=camera.name, grid_id=camera.grid_id, address=camera.location.address,
            state="offline" if status.offline else reader.state,
            analysed_fps=reader.analysed_fps, decoded_fps=reader.decoded_fps,
            last_frame_age_s=reader.last_frame_age_s, reconnects=reader.reconnects,
            last_error=reader.last_error, skip_ratio=status.skip_ratio if worker.gate else None,
            frame_size=status.frame_size, zones=zones, masks=masks, preset=worker.preset,
            patrol=status.patrol, tiles_per_frame=status.tiles_per_frame, inference_ms=status.inference_ms,
            source=reader.url, resolution=camera.resolution, coordinates=camera.coordinates,
        )

    def readiness(self) -> dict[str, bool]:
        ready = {"detector": self.detector is not None,
                 "analysis": bool(self.scheduler and self.scheduler.alive)}
        for worker in self._camera_workers():
            ready[f"camera:{worker.camera.id}"] = worker.reader.alive and \
                worker.reader.health().state == "streaming"
        return ready

    def has_camera(self, camera_id: str) -> bool:
        return any(worker.camera.id == camera_id for worker in self._camera_workers())

    def camera_online(self, camera_id: str) -> bool:
        """For GB/T 28181 catalogues: the camera runs and has not been declared offline."""
        for worker in self._camera_workers():
            if worker.camera.id == camera_id:
                return not worker.status().offline
        return False

    def camera_snapshot(self, camera_id: str) -> bytes | None:
        for worker in self._camera_workers():
            if worker.camera.id == camera_id:
                return worker.live_snapshot()
        return None


def _zone_name(camera: Camera, zone_id: str) -> str:
    return next((zone.name for zone in camera.zones if zone.id == zone_id), "")
