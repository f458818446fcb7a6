"""The running gateway as everything above the cameras sees it: one object, `LiveGateway`.

The web API and the metrics read it (`gateway.status.GatewayView`: cameras, pictures, health,
readiness), the outputs read and steer through it (the MQTT heartbeat and remote look, the
GB/T 28181 catalogue and PTZ: `CameraControl`, its live video: `VideoSource`), the sensors
take their linked cameras' evidence from it, and the PTZ linkage turns cameras through it.
None of them holds a camera worker, a reader or the scheduler: they hold this view, which the
service binds to the parts it started.

Every method is called from other threads (API workers, output threads, sensor brokers' threads)
and is quick: it reads what the camera workers already hold (their last analysed frame, their
reader's health) and never does network I/O on the caller's behalf, except the PTZ commands,
which are bounded by their timeout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.calibration.live import LiveCounting
from gateway.camera.scheduler import AnalysisScheduler
from gateway.camera.timing import TimedDetector
from gateway.camera.worker import CameraWorker
from gateway.config.models import Camera, GatewayConfig
from gateway.delivery.router import AlertRouter
from gateway.events.counts import CameraCounts
from gateway.evidence.store import ClipStore
from gateway.evidence.worker import ClipWorker
from gateway.sensors.alerts import LinkedEvidence
from gateway.sensors.hub import SensorHub
from gateway.sensors.input import SensorInput
from gateway.status import CameraControlError, CameraStatus, PresetInfo, PtzCommand, ZoneOutline
from gateway.video.packets import PacketRing
from gateway.workers import Worker, Workers, dead

if TYPE_CHECKING:  # gateway.onvif loads zeep: imported only when a camera uses ONVIF
    from gateway.onvif import OnvifLoop

log = logging.getLogger(__name__)

ANALYSIS_STALL_S = 30.0
"""The analysis loop turns at least every few ms; silent this long means it hangs."""


@dataclass
class RunningParts:
    """What the service started, as the live view reads it (None: not started, or not configured)."""

    detector: TimedDetector | None = None
    scheduler: AnalysisScheduler | None = None
    router: AlertRouter | None = None
    sensor_hub: SensorHub | None = None
    sensor_input: SensorInput | None = None
    onvif_loop: OnvifLoop | None = None
    clip_store: ClipStore | None = None
    clip_worker: ClipWorker | None = None
    extra_workers: dict[str, Worker] = field(default_factory=dict)


class LiveGateway:
    """`GatewayView`, `CameraControl` and `VideoSource` over the running parts (see the module docstring)."""

    def __init__(self, config: GatewayConfig, parts: RunningParts | None = None) -> None:
        self.config = config
        self.parts = parts or RunningParts()
        self.timezone = ZoneInfo(config.gateway.timezone)
        self.started_at = time.monotonic()
        self.started = False
        """The service finished starting: until then a part not running yet is not a failure."""

    # ----------------------------------------------------------------- identity

    @property
    def gateway_id(self) -> str:
        return self.config.gateway.id

    @property
    def gateway_name(self) -> str:
        return self.config.gateway.name

    # ----------------------------------------------------------------- cameras

    def workers_by_camera(self) -> dict[str, CameraWorker]:
        scheduler = self.parts.scheduler
        return {worker.camera.id: worker for worker in scheduler.workers()} if scheduler is not None else {}

    def camera_worker(self, camera_id: str) -> CameraWorker | None:
        return self.workers_by_camera().get(camera_id)

    def cameras(self) -> list[CameraStatus]:
        workers = self.workers_by_camera()
        return [camera_status(workers[camera.id]) for camera in self.config.cameras if camera.id in workers]

    def has_camera(self, camera_id: str) -> bool:
        return camera_id in self.workers_by_camera()

    def camera_online(self, camera_id: str) -> bool:
        """The camera runs and has not been declared offline (GB/T 28181 catalogue status)."""
        worker = self.camera_worker(camera_id)
        return worker is not None and not worker.status().offline

    def camera_snapshot(self, camera_id: str) -> bytes | None:
        worker = self.camera_worker(camera_id)
        return worker.live_snapshot() if worker is not None else None

    def camera_health(self, camera_id: str) -> dict[str, Any] | None:
        """One camera's health (the heartbeat's entry and its retained MQTT state)."""
        worker = self.camera_worker(camera_id)
        return camera_health(worker, self.timezone) if worker is not None else None

    def linked_evidence(self, camera_ids: list[str], before_s: float = 0.0) -> list[LinkedEvidence]:
        """Each linked camera's analysed picture and count from `before_s` ago (no network I/O)."""
        workers = self.workers_by_camera()
        evidence = []
        for camera_id in camera_ids:
            if camera_id in workers:
                count, snapshot = workers[camera_id].evidence(before_s)
                evidence.append(LinkedEvidence(camera_id, count, snapshot))
        return evidence

    def packets(self, camera_id: str) -> PacketRing | None:
        """The camera's encoded packets as its reader demuxes them (`VideoSource`: GB/T 28181
        live video remuxes them), None when no such camera runs."""
        worker = self.camera_worker(camera_id)
        return worker.packets if worker is not None else None

    def camera_counts(self, camera_id: str) -> CameraCounts | None:
        """What one camera counts now (the retained MQTT counts; gateway.events.counts)."""
        worker = self.camera_worker(camera_id)
        return worker.live_counts() if worker is not None else None

    def live_counting(self, camera_id: str) -> LiveCounting | None:
        """A running camera's counting state, for the page's annotation tool (API threads)."""
        worker = self.camera_worker(camera_id)
        return worker.counting if worker is not None else None

    # ----------------------------------------------------------------- acting on cameras

    def turn_to_preset(self, camera_id: str, preset: str) -> None:
        """The PTZ linkage's hand: turn a camera to a preset (returns at once; logged when done)."""
        worker = self.camera_worker(camera_id)
        if worker is None:
            log.warning("cannot turn camera %s to preset %s: no such camera is running", camera_id, preset)
            return
        worker.ptz.turn_to(preset)

    def ptz(self, camera_id: str, command: PtzCommand, timeout_s: float = 5.0) -> None:
        self._controllable(camera_id).ptz.command(command, timeout_s)

    def presets(self, camera_id: str, timeout_s: float = 5.0) -> list[PresetInfo]:
        return self._controllable(camera_id).ptz.presets(timeout_s)

    def _controllable(self, camera_id: str) -> CameraWorker:
        worker = self.camera_worker(camera_id)
        if worker is None:
            raise CameraControlError(f"no camera {camera_id!r} is running on this gateway")
        return worker

    # ----------------------------------------------------------------- health

    def workers(self) -> Workers:
        """Every thread and task the gateway runs, by the name an operator reads in the log."""
        parts = self.parts
        workers: dict[str, Worker] = {}
        if parts.scheduler is not None:
            workers["analysis thread"] = parts.scheduler
        if parts.router is not None:
            workers.update(parts.router.workers())
        if parts.sensor_input is not None:
            workers.update(parts.sensor_input.workers())
        if parts.onvif_loop is not None:
            workers["ONVIF loop thread"] = parts.onvif_loop
        if parts.clip_worker is not None:
            workers["clip writer thread"] = parts.clip_worker
        for worker in self.workers_by_camera().values():
            workers.update(worker.workers())
        workers.update(parts.extra_workers)
        return workers

    def failed_workers(self) -> list[str]:
        """Workers that should be running but are not, or hang (what the watchdog guards). While
        the service is still starting, parts that are not there yet are not failures."""
        if not self.started:
            return []
        scheduler = self.parts.scheduler
        failures = dead(self.workers())
        if scheduler is None:
            failures.insert(0, "analysis thread is not running")
        elif scheduler.alive and time.monotonic() - scheduler.heartbeat > ANALYSIS_STALL_S:
            failures.insert(0, f"analysis thread stuck for {time.monotonic() - scheduler.heartbeat:.0f} s")
        if self.parts.router is None:
            failures.append("delivery is not running")
        return failures

    def readiness(self) -> dict[str, bool]:
        scheduler = self.parts.scheduler
        ready = {"detector": self.parts.detector is not None, "analysis": bool(scheduler and scheduler.alive)}
        for worker in self.workers_by_camera().values():
            ready[f"camera:{worker.camera.id}"] = worker.reader.alive and worker.reader.health().state == "streaming"
        return ready

    def health(self) -> dict[str, Any]:
        """Heartbeat body: per-camera health, detector timing, every output, the data disk, sensors."""
        parts = self.parts
        health: dict[str, Any] = {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "starting": not self.started,
            "detector_ms": parts.detector.recent_ms() if parts.detector else None,
            "analysis_alive": bool(parts.scheduler and parts.scheduler.alive),
            "failed_workers": self.failed_workers(),
            "cameras": {camera_id: camera_health(worker, self.timezone)
                        for camera_id, worker in self.workers_by_camera().items()},
        }
        health["failing_cameras"] = [camera_id for camera_id, camera in health["cameras"].items()
                                     if camera["analysis"] == "failing"]
        if parts.sensor_hub is not None:
            health["sensors"] = parts.sensor_hub.health()
        if parts.sensor_input is not None:
            health["sensor_brokers"] = parts.sensor_input.health()
        if parts.clip_store is not None:
            health["clips"] = asdict(parts.clip_store.stats())
        if parts.router is not None:
            health.update(parts.router.health())
        return health

    def status_line(self) -> str:
        """systemd's STATUS= line."""
        workers = self.workers_by_camera().values()
        streaming = sum(worker.reader.health().state == "streaming" for worker in workers)
        router = self.parts.router
        depth = router.queued() if router else 0
        full = ", DATA DISK FULL" if router and router.disk_full else ""
        return f"{streaming}/{len(workers)} cameras streaming, {depth} alerts queued{full}"


# --------------------------------------------------------------------------- one camera as shown


def camera_health(worker: CameraWorker, timezone: ZoneInfo) -> dict[str, Any]:
    """A camera in the heartbeat and its retained MQTT state (URL and error already redacted)."""
    status = worker.status()
    reader = asdict(status.reader)
    reader.pop("camera_id")
    state = reader.pop("state")
    return {
        "state": "offline" if status.offline else state,
        **reader,
        "skip_ratio": status.skip_ratio,
        "frames_inferred": status.frames_inferred,
        "tiles_per_frame": status.tiles_per_frame,
        "inference_ms_per_frame": status.inference_ms,
        "frame_age_when_analysed_s": status.last_frame_age_when_analysed_s,
        "packet_ring": asdict(worker.packets.stats()),
        "analysis": "failing" if status.analysis_failing else "ok",
        **({"analysis_error": status.analysis_error} if status.analysis_error else {}),
        **({"counting_failure": status.counting_failure} if status.counting_failure else {}),
        **({"patrol": asdict(status.patrol)} if status.patrol is not None else {}),
        "at": datetime.now(timezone).isoformat(timespec="seconds"),
    }


def camera_status(worker: CameraWorker) -> CameraStatus:
    """A camera as the API and the page show it: health, zones and masks in frame pixels."""
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
        counts=worker.live_counts(),
    )


def _zone_name(camera: Camera, zone_id: str) -> str:
    return next((zone.name for zone in camera.zones if zone.id == zone_id), "")
