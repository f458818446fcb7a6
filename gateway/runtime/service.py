"""`gateway run`: every configured camera, one shared detector, alerts to every output.

The service starts the parts, supervises them and reloads the cameras; everything above the
cameras (the API and page, the metrics, the outputs, the sensors, the PTZ linkage) sees the
running gateway through one object, the live view (`gateway.runtime.live.LiveGateway`).

Threads, and who owns what:
  reader-<camera>  one per camera (gateway.video.reader): keeps the newest frame, reconnects.
  analysis         one (gateway.camera.scheduler): gate -> detect -> track -> rules, camera by camera.
  mqtt-publisher   the MQTT output (gateway.outputs.mqtt): its outbox -> broker, status, acks,
                   case progress, remote look.
  deliver-<name>   one per other output (gateway.delivery.durable): its outbox -> webhook, ...
  api              the web API and page (uvicorn), reading the live view.
  sensors-<broker> one per site broker (gateway.sensors.input): sensor messages in.
  onvif            one asyncio loop for every ONVIF task: events listeners, PTZ patrols.
  main             supervision once a second: camera_offline alerts, retained camera state and
                   live counts, held alerts and the disk_full alert (gateway.delivery.router);
                   every thread and task above is a `Worker` (gateway.workers): one that dies
                   stops the systemd watchdog and turns /healthz to failing.
Alerts take one path whatever raised them: the router (an `AlertPath`), which queues them in
every output's durable outbox (nothing is sent that was not first queued), notes them in the
case ledger, records them in the history the web page shows, and runs the reactions.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from detectors import create_detector
from gateway import __version__
from gateway.api.app import create_app
from gateway.api.metrics import GatewayMetrics
from gateway.api.server import ApiServer, make_server
from gateway.calibration.studio import CountingStudio
from gateway.camera.scheduler import AnalysisScheduler
from gateway.camera.timing import TimedDetector
from gateway.camera.worker import CameraWorker
from gateway.checks import check_site
from gateway.config.models import Camera, GatewayConfig, GatewaySection, OnvifSource
from gateway.delivery.diskwatch import DiskFullWatch
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import CaseLedger
from gateway.delivery.reactions import PtzLinkage
from gateway.delivery.router import AlertRouter
from gateway.events import AlertPath
from gateway.events.counts import counts_payload
from gateway.evidence.alerts import ClipEvidence, ClipRecords, LateRecords
from gateway.evidence.clips import ClipPolicy, ClipRecorder
from gateway.evidence.store import ClipStore
from gateway.evidence.worker import ClipWorker
from gateway.outputs.registry import build_outputs
from gateway.redaction import redact
from gateway.runtime.live import LiveGateway, RunningParts, camera_health
from gateway.runtime.sdnotify import SystemdNotifier
from gateway.sensors.hub import SensorHub
from gateway.sensors.input import SensorInput

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 1.0
CAMERA_STATE_EVERY_S = 30.0
"""Retained camera state is republished on a state change, and at least this often."""


@runtime_checkable
class CameraStatePublisher(Protocol):
    """An output that keeps each camera's state at the centre (MQTT: retained per camera)."""

    def set_camera_state(self, camera_id: str, state: dict) -> None: ...


@runtime_checkable
class CameraCountsPublisher(Protocol):
    """An output that keeps each camera's live counts at the centre (MQTT: retained per camera,
    taken when they changed and at a bounded rate: gateway.events.counts)."""

    def set_camera_counts(self, camera_id: str, counts: dict) -> None: ...


class GatewayService:
    def __init__(self, config: GatewayConfig):
        self.config = config
        self.timezone = ZoneInfo(config.gateway.timezone)
        self.parts = RunningParts()
        self.live = LiveGateway(config, self.parts)
        """The running gateway as the API, metrics, outputs and sensors see it."""
        self.api_server: ApiServer | None = None
        self._api_thread: threading.Thread | None = None
        self._state_publishers: list[CameraStatePublisher] = []
        self._counts_publishers: list[CameraCountsPublisher] = []
        self._published_states: dict[str, tuple[str, float]] = {}
        self.clips: ClipEvidence | None = None
        """The alert path in front of the router: every camera alert gets its clip on the way."""
        self._recorders: dict[str, ClipRecorder] = {}
        self._records = LateRecords()
        """The clips as recordings, for outputs built before the clips are (GB/T 28181 RecordInfo)."""

    # ----------------------------------------------------------------- the parts

    @property
    def detector(self) -> TimedDetector | None:
        return self.parts.detector

    @property
    def scheduler(self) -> AnalysisScheduler | None:
        return self.parts.scheduler

    @property
    def router(self) -> AlertRouter | None:
        return self.parts.router

    @property
    def sensor_input(self) -> SensorInput | None:
        return self.parts.sensor_input

    def _delivery(self) -> AlertRouter:
        """The router; every path that needs it runs after `start` built it."""
        if self.parts.router is None:
            raise RuntimeError("the gateway's delivery is not started")
        return self.parts.router

    @property
    def alerts(self) -> AlertPath:
        """Where every raised alert goes: through the clip evidence, then the router."""
        if self.clips is None:
            raise RuntimeError("the gateway's delivery is not started")
        return self.clips

    def _analysis(self) -> AnalysisScheduler:
        """The scheduler; every path that needs it runs after `start` built it."""
        if self.parts.scheduler is None:
            raise RuntimeError("the gateway's analysis is not started")
        return self.parts.scheduler

    # ----------------------------------------------------------------- start / stop

    def start(self) -> None:
        """Load the model, open the outputs (they connect in the background), start every camera."""
        settings = self.config.gateway
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a full disk must not stop the gateway: alerts are held in memory
            log.error("cannot create the data directory %s: %s", settings.data_dir, exc)
        detector = self.parts.detector = TimedDetector(create_detector(self.config.detector.settings()))
        log.info("detector ready: %s, input %dx%d, %d threads", self.config.detector.model.name,
                 *detector.input_size, self.config.detector.threads)
        router = self._start_delivery()
        alerts = self._start_clips(router)
        self.parts.scheduler = AnalysisScheduler(detector, alerts)
        for camera in self.config.cameras:
            self.add_camera_worker(self.make_worker(camera, settings))
        self.parts.scheduler.start()
        self._start_sensors(alerts)
        self._start_api(router)
        self.live.started = True
        log.info("gateway %s %s running: %d cameras, data in %s", settings.id, __version__,
                 len(self.config.cameras), settings.data_dir)

    def _start_delivery(self) -> AlertRouter:
        """The history, the case ledger, every output with its own outbox, and the router."""
        settings = self.config.gateway
        history = EventHistory.from_config(settings.data_dir, self.config.storage)
        ledger = CaseLedger(settings.data_dir, history=history, timezone=self.timezone)
        self.parts.clip_store = self._open_clip_store()
        outputs = build_outputs(self.config, view=self.live, control=self.live, ledger=ledger,
                                records=self._records, video=self.live)
        router = self.parts.router = AlertRouter(
            outputs, history, gateway_id=settings.id, ledger=ledger, reactions=[PtzLinkage(self.live)],
            disk_watch=DiskFullWatch(settings), timezone=self.timezone, data_dir=settings.data_dir)
        self._state_publishers = [out.sink for out in outputs if isinstance(out.sink, CameraStatePublisher)]
        self._counts_publishers = [out.sink for out in outputs if isinstance(out.sink, CameraCountsPublisher)]
        router.start()
        log.info("alerts go to %s", ", ".join(sink.name for sink in router.sinks))
        return router

    def _open_clip_store(self) -> ClipStore | None:
        """The clip folder; a data disk that cannot take it costs the clips, never the gateway."""
        settings = self.config.gateway
        try:
            return ClipStore.from_config(settings.data_dir, self.config.storage.clips_max_mb)
        except OSError as exc:
            log.error("cannot open the evidence clip folder in %s (%s): alerts go out without clips until the "
                      "gateway restarts with the folder writable", settings.data_dir, exc)
            return None

    def _start_clips(self, router: AlertRouter) -> AlertPath:
        """The clip writer thread, and the alert path that starts clips."""
        self.clips = ClipEvidence(router, url_base=self.config.api.public_url or "", timezone=self.timezone)
        store = self.parts.clip_store
        if store is None:
            return self.clips
        router.room_makers.insert(0, store)  # a full disk sheds clips before pictures
        self._records.attach(ClipRecords(store, self.clips, self.timezone))
        worker = self.parts.clip_worker = ClipWorker(on_finished=self.clips.clip_finished)
        worker.start()
        return self.clips

    def _start_sensors(self, alerts: AlertPath) -> None:
        """IoT sensors on their site brokers: alerts with evidence from linked cameras."""
        if not self.config.sensors:
            return
        hub = self.parts.sensor_hub = SensorHub(self.config, self.live, alerts)
        self.parts.sensor_input = SensorInput(self.config.sensor_brokers, self.config.sensors, hub.dispatch,
                                              self.config.gateway.id)
        self.parts.sensor_input.start()
        log.info("%d sensors on %d site brokers", len(self.config.sensors), len(self.config.sensor_brokers))

    def _start_api(self, router: AlertRouter) -> None:
        """The web API and page on their own thread; a port already taken is logged, not fatal:
        alerts keep flowing to the centre without the page."""
        metrics = GatewayMetrics(view=self.live, history=router.history, inference=self.parts.detector)
        assert router.ledger is not None, "the service always gives the router its ledger"
        app = create_app(self.live, router.history, router.ledger, self.config.api, metrics=metrics,
                         clips=self.parts.clip_store,
                         timezone=self.config.gateway.timezone,
                         sessions_path=self.config.gateway.data_dir / "web-sessions.json",
                         counting_studio=CountingStudio(self.config.gateway.data_dir, self.live.live_counting))
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
        if isinstance(camera.source, OnvifSource) and self.parts.onvif_loop is None:
            from gateway.onvif import OnvifLoop

            self.parts.onvif_loop = OnvifLoop().start()
        worker = CameraWorker(camera, gateway, onvif_loop=self.parts.onvif_loop)
        worker.keep_history_s = max((sensor.link.pre_s for sensor in self.config.sensors
                                     if camera.id in sensor.link.cameras), default=0.0)
        worker.alarm_sensors = [sensor for sensor in self.config.sensors
                                if sensor.onvif is not None and sensor.onvif.camera == camera.id]
        worker.alarm_sink = self._camera_alarm
        return worker

    def _camera_alarm(self, sensor_id: str, active: bool, value: str) -> None:
        """A camera's ONVIF alarm that a sensor claims (`sensors[].onvif`): it is that sensor's event."""
        if self.parts.sensor_hub is not None:
            self.parts.sensor_hub.observe(sensor_id, active, value)

    def add_camera_worker(self, worker: CameraWorker) -> None:
        self._record_clips(worker)
        worker.start()
        self._analysis().add(worker)

    def _record_clips(self, worker: CameraWorker) -> None:
        """A clip for every alert of this camera (unless its `clips.enabled` is false)."""
        settings, store, writer = worker.camera.clips, self.parts.clip_store, self.parts.clip_worker
        if not settings.enabled or store is None or writer is None or self.clips is None:
            return
        policy = ClipPolicy(pre_s=settings.pre_s, post_s=settings.post_s, max_s=settings.max_s)
        recorder = ClipRecorder(worker.camera.id, worker.packets, store, policy, wake=writer.wake)
        self._recorders[worker.camera.id] = recorder
        writer.add(recorder)
        self.clips.add(recorder)

    def remove_camera(self, camera_id: str) -> None:
        """Stop one camera alone; its open events end through the normal path (clips: partial)."""
        worker = self._analysis().remove(camera_id)
        if worker is None:
            return
        self.alerts.route(worker.stop())
        self._publish_stopped(worker)
        self._published_states.pop(camera_id, None)
        recorder = self._recorders.pop(camera_id, None)
        if recorder is not None and self.clips is not None and self.parts.clip_worker is not None:
            self.parts.clip_worker.remove(recorder)
            self.clips.remove(camera_id)
            for finished in recorder.close("the camera was stopped"):
                self.clips.clip_finished(finished)

    def _publish_stopped(self, worker: CameraWorker) -> None:
        """A camera stopped on purpose (the gateway stops, a reload removes or restarts it) says so
        in its retained state: the centre must not go on reading its last "streaming"."""
        final = {**camera_health(worker, self.timezone), "state": "stopped"}
        for publisher in self._state_publishers:
            publisher.set_camera_state(worker.camera.id, final)

    def stop(self) -> None:
        """Stop readers and analysis, end open events into the outboxes, flush, disconnect."""
        log.info("stopping: ending open events and flushing the outboxes")
        parts = self.parts
        if self.api_server is not None:
            self.api_server.should_exit = True
        if self._api_thread is not None:
            self._api_thread.join(5)
        if parts.scheduler is not None:
            parts.scheduler.stop()
            for worker in parts.scheduler.workers():
                self.remove_camera(worker.camera.id)
        if parts.sensor_hub is not None:
            parts.sensor_hub.close()
        if parts.clip_worker is not None:
            parts.clip_worker.stop()  # clips still recording end partial; their events' ends go out again
        if parts.sensor_input is not None:
            parts.sensor_input.stop()
        if parts.onvif_loop is not None:
            parts.onvif_loop.stop()
        if parts.router is not None:
            parts.router.stop()
        if parts.detector is not None:
            parts.detector.close()

    # ----------------------------------------------------------------- supervision

    def supervise(self) -> None:
        """One supervision turn: offline alerts, retained camera state and live counts, held
        alerts, disk_full."""
        now = time.monotonic()
        router = self._delivery()
        router.tick()
        sensor_states = {}
        if self.parts.sensor_hub is not None:
            self.parts.sensor_hub.tick()
            sensor_states = self.parts.sensor_hub.active_states()
        for camera_id, worker in self.live.workers_by_camera().items():
            worker.sensor_states = sensor_states
            self.alerts.route(worker.supervise())
            if self._state_publishers:
                self._publish_camera_state(camera_id, worker, now)
            counts = worker.live_counts() if self._counts_publishers else None
            if counts is not None:
                payload = counts_payload(self.config.gateway.id, camera_id, counts)
                for publisher in self._counts_publishers:
                    publisher.set_camera_counts(camera_id, payload)

    def _publish_camera_state(self, camera_id: str, worker: CameraWorker, now: float) -> None:
        status = worker.status()
        state = "offline" if status.offline else status.reader.state
        previous = self._published_states.get(camera_id)
        if previous is None or previous[0] != state or now - previous[1] >= CAMERA_STATE_EVERY_S:
            health = self.live.camera_health(camera_id)
            if health is not None:
                for publisher in self._state_publishers:
                    publisher.set_camera_state(camera_id, health)
            self._published_states[camera_id] = (state, now)

    def run_until(self, stop: threading.Event, notifier: SystemdNotifier | None = None,
                  reload: threading.Event | None = None, config_path: Path | None = None) -> None:
        """Supervise once a second until `stop` is set (the CLI sets it on SIGTERM/SIGINT).

        Tells systemd READY=1 first, then WATCHDOG=1 on each turn while every worker is alive;
        `reload` (set on SIGHUP) re-reads `config_path`.
        """
        notifier = notifier or SystemdNotifier()
        notifier.ready(self.live.status_line())
        while not stop.wait(SUPERVISE_EVERY_S):
            if reload is not None and reload.is_set():
                reload.clear()
                notifier.reloading()
                self.reload(config_path)
                notifier.ready(self.live.status_line())
            try:
                self.supervise()
            except Exception:  # noqa: BLE001 - supervision must outlive any single failure
                log.exception("supervision turn failed; trying again in %.0f s", SUPERVISE_EVERY_S)
            failures = self.live.failed_workers()
            if failures:
                log.error("not feeding the systemd watchdog: %s", "; ".join(failures))
            else:
                notifier.watchdog(self.live.status_line())
        notifier.stopping()

    def workers(self):  # noqa: ANN201 - the live view's, kept for the tests of supervision
        return self.live.workers()

    def failed_workers(self) -> list[str]:
        return self.live.failed_workers()

    def health(self) -> dict:
        return self.live.health()

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
        self.config = self.live.config = new.model_copy(update={section: getattr(self.config, section)
                                             for section in needs_restart})
        log.info("reload done: %d cameras", len(new.cameras))
