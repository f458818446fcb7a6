"""One live camera: its reader, motion gate, analytics and outage watch, as the scheduler sees it.

The reader thread keeps the newest frame; everything else here runs on the scheduler's thread
when it picks this camera (`analyse`) or on the service's supervision tick (`supervise`), so the
analytics state needs no locks. Rule timers follow the monotonic clock of frame arrival, not
stream time, which restarts at every reconnect.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from detectors import Detections
from detectors.tiling import TilePlan, detect_tiled
from gateway.analytics import CameraAnalytics, FrameResult
from gateway.calibration.live import LiveCounting
from gateway.camera.alarms import CameraEventAlerts
from gateway.camera.failures import AnalysisFailures
from gateway.camera.offline import OfflineWatch
from gateway.camera.patrol_fault import PatrolFaultWatch
from gateway.camera.ptz import CameraPtz
from gateway.camera.sources import make_patrol, make_reader
from gateway.camera.tiling import PlannedTiling, camera_tile_plan, log_plan
from gateway.camera.timing import TimedDetector
from gateway.config.models import Camera, GatewaySection, OnvifSource
from gateway.events import AlertMessage, Snapshot
from gateway.events.counts import STALE_S, CameraCounts, ZoneCount
from gateway.logs import LogLimiter
from gateway.onvif.patrol import PatrolState
from gateway.status import PatrolStatus
from gateway.video.motion import MotionGate, region_mask
from gateway.video.packets import PacketRing
from gateway.video.reader import CameraReader, ReaderHealth
from gateway.workers import Worker, Workers

if TYPE_CHECKING:  # gateway.onvif loads zeep: imported only by cameras that use ONVIF
    from gateway.onvif import OnvifLoop

log = logging.getLogger(__name__)

PERSON_HEIGHT_SHARE = 0.25
"""The motion gate watches zones grown upwards by this share of the frame height (a body above
its feet at the zone's far edge)."""
PACKET_RING_MAX_BYTES = 16 * 1024 * 1024
"""Cap of a camera's packet ring: 5 s of pre-roll of a 20 Mbit/s main stream."""
RECENT_FRAME_S = 10.0
"""A camera alarm's start carries the last analysed picture only if it is at most this old."""


@dataclass(frozen=True)
class WorkerStatus:
    """One camera's live state as its worker knows it (URL and error already redacted)."""

    reader: ReaderHealth
    skip_ratio: float
    frames_inferred: int
    offline: bool
    frame_size: tuple[int, int] | None
    last_analysed_age_s: float | None
    last_frame_age_when_analysed_s: float | None
    patrol: PatrolStatus | None = None
    tiles_per_frame: int = 1
    """Detector runs per analysed frame: 1 untiled, tiles (+1 whole-frame pass) tiled."""
    inference_ms: float | None = None
    """Mean detector time per analysed frame (all its tiles) over the recent frames."""
    analysis_failing: bool = False
    """Frames keep failing to analyse (gateway/camera/failures.py): the camera's health is failing."""
    analysis_error: str | None = None
    """The last failure while failing (one line, credentials masked)."""
    counting_failure: str | None = None
    """Why the counting model was given up (the camera counts with the detector)."""


class CameraWorker:
    """onvif_loop: the service's shared ONVIF loop; an ONVIF camera then also listens to its
    own alarms (tamper, motion, digital inputs) through a PullPoint subscription."""

    def __init__(self, camera: Camera, gateway: GatewaySection, reader: CameraReader | None = None,
                 onvif_loop: OnvifLoop | None = None):
        self.camera = camera
        self.gateway = gateway
        self.timezone = ZoneInfo(gateway.timezone)
        self.packets = PacketRing(camera.id, keep_s=0.0, max_bytes=PACKET_RING_MAX_BYTES)
        """The camera's encoded packets as it sent them (the current GOP, more while a clip needs its
        pre-roll): evidence clips and GB/T 28181 live video are made of these, never re-encoded."""
        self.reader = reader or make_reader(camera, packet_sink=self.packets.put)
        self.offline_watch = OfflineWatch(camera, gateway)
        self.camera_events = CameraEventAlerts(camera, gateway)
        self._camera_event_queue: queue.SimpleQueue = queue.SimpleQueue()
        self._event_log = LogLimiter(burst=10, window_s=60.0)
        """The camera decides how often its events come: at most 10 lines a minute per kind."""
        self.event_listener = None
        if isinstance(camera.source, OnvifSource) and camera.source.onvif.events and onvif_loop:
            from gateway.onvif import OnvifEventListener

            self.event_listener = OnvifEventListener(camera.id, camera.source.onvif,
                                                     self._camera_event_queue.put, loop=onvif_loop)
        self.onvif_loop = onvif_loop
        self.patrol = make_patrol(camera, onvif_loop) if camera.patrol else None
        self.patrol_fault = PatrolFaultWatch(camera, gateway) if camera.patrol else None
        self.ptz = CameraPtz(camera, onvif_loop, self.patrol)
        """How others steer this camera (a linked sensor, a GB/T 28181 platform)."""
        self._patrol_state: PatrolState | None = None
        """The patrol state the analysis last took (its view): read and written by the scheduler only."""
        self.sensor_states: dict[str, bool] = {}
        """Sensor id -> active, for rules with `when_sensor`/`escalate` (the service keeps it current)."""
        self.alarm_sensors: list = []
        """Sensors declared on this camera's ONVIF alarms (`sensors[].onvif`): their events go to
        `alarm_sink(sensor_id, active, value)` instead of becoming camera_tamper/sensor alerts."""
        self.alarm_sink: Callable[[str, bool, str], None] = _no_alarm_sink
        self.keep_history_s = 0.0
        """How far back a linked sensor may ask for a picture (its `pre_s`); 0 keeps none."""
        self._history: deque[tuple[float, np.ndarray, FrameResult | None, CameraAnalytics]] = deque()
        self.counting = LiveCounting(camera, gateway.data_dir)
        """Counting models: the model this camera counts with, and the page's annotation tool."""
        self.analytics: CameraAnalytics | None = None
        self.gate: MotionGate | None = None
        self.last_result: FrameResult | None = None
        self._last_image: np.ndarray | None = None
        self._last_view: CameraAnalytics | None = None
        """The analytics `_last_image` was analysed with (its zones, masks, size): the picture is
        drawn as its own view saw it, also after a patrol stop change replaced `analytics`."""
        self._last_image_at = 0.0
        self._result_at = 0.0
        """Monotonic time of the frame `last_result` belongs to."""
        self._last_seq = 0
        self._started_at = time.monotonic()
        self._last_analysed_at: float | None = None
        self._last_frame_age: float | None = None
        self.frame_ages: deque[float] = deque(maxlen=512)
        """Age (s) of each recently analysed frame when the analysis took it: the latency budget."""
        self._frames_inferred = 0
        self.tile_plan: TilePlan | None = None
        """Where this camera's frames are cut for detection (None: whole frame); per frame size."""
        self._planned_tiling: PlannedTiling | None = None
        self._frame_ms: deque[float] = deque(maxlen=100)
        self.failures = AnalysisFailures()
        """Frames that failed to analyse (reported by the scheduler, on its thread)."""
        self._lock = threading.Lock()  # guards last_result/_last_image for the API's snapshots

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._started_at = time.monotonic()
        self.reader.start()
        if self.event_listener is not None:
            self.event_listener.start()
        if self.patrol is not None:
            self.patrol.start()

    def stop(self) -> list[AlertMessage]:
        """Stop the reader; end this camera's open events (the caller queues the messages)."""
        self.reader.stop()
        self.packets.close()  # after the reader: its clips end (partial) and live streams are told
        if self.event_listener is not None:
            self.event_listener.stop()
        if self.patrol is not None:
            self.patrol.stop()
        self.ptz.close()
        now, t = datetime.now(self.timezone), time.monotonic()
        messages = self.camera_events.close_all(t, now) + self.offline_watch.close(t, now)
        if self.patrol_fault is not None:
            messages += self.patrol_fault.close(t, now)
        if self.analytics is not None:
            messages += self.analytics.close_all(t, now)
        self.counting.save(self.analytics)  # the next start counts from it (gateway.calibration.kept)
        return messages

    def workers(self) -> Workers:
        """This camera's threads and tasks, for supervision: the reader, and the PTZ patrol and
        ONVIF event listener when it has them."""
        workers: dict[str, Worker] = {f"camera {self.camera.id}: reader thread": self.reader}
        if self.patrol is not None:
            workers[f"camera {self.camera.id}: PTZ patrol task"] = self.patrol
        if self.event_listener is not None:
            workers[f"camera {self.camera.id}: ONVIF event listener task"] = self.event_listener
        return workers

    # ----------------------------------------------------------------- scheduler side

    def has_new_frame(self) -> bool:
        """A frame to analyse, or a patrol view change to handle: that ends the old view's events
        even while the camera sends no frames (both on the scheduler's thread, which owns them)."""
        return self.reader.frame_seq > self._last_seq or self._patrol_view_changed()

    @property
    def last_analysed_at(self) -> float:
        """Monotonic time of the last analysis (start time if none): the scheduler's fairness key."""
        return self._last_analysed_at or self._started_at

    def analyse(self, detector: TimedDetector) -> list[AlertMessage]:
        """Analyse the newest frame if there is one: gate, detect, track, rules. Returns alerts."""
        frame = self.reader.latest()
        ended = self._follow_patrol()  # a new patrol view ends the old one's events, frame or not
        if frame is None or frame.seq == self._last_seq:
            return ended
        self._last_seq = frame.seq
        now_t = time.monotonic()
        self._last_analysed_at = now_t
        self._last_frame_age = now_t - frame.received_at
        self.frame_ages.append(self._last_frame_age)
        messages = ended
        if not self._patrol_watching(frame.received_at):
            return messages  # the camera is moving or settling: its picture means nothing yet
        messages += self._ensure_analytics(frame.image, detector.input_size)
        analytics, gate = self.analytics, self.gate
        assert analytics is not None and gate is not None  # _ensure_analytics has just built them
        masked = analytics.prepare(frame.image)
        decision = gate.check(masked, frame.received_at, force=analytics.has_open_events)
        if not decision.run:
            with self._lock:
                self._last_image, self._last_image_at, self._last_view = masked, frame.received_at, analytics
            return messages
        detections = self._detect(detector, masked)
        self._frames_inferred += 1
        self.counting.prepare(analytics)
        result = analytics.process(detections, t=frame.received_at, now=datetime.now(self.timezone),
                                   frame=masked, sensors=self.sensor_states, counting_image=masked)
        self.counting.record(analytics, masked, result, datetime.now(self.timezone))
        if result.counting_failure is not None:
            self._counting_given_up(result.counting_failure)
        with self._lock:
            self.last_result, self._last_image, self._last_image_at = result, masked, frame.received_at
            self._last_view = analytics
            self._result_at = frame.received_at
            self._remember(frame.received_at, masked, result, analytics)
        return messages + result.events

    def analysis_failed(self, error: Exception) -> None:
        """The scheduler's report that this camera's frame raised `error` (the frame is skipped):
        one line per kind of failure (with its traceback the first time), a reminder every few
        minutes, and the camera's health failing once frames keep failing."""
        step = self.failures.failed(error, time.monotonic())
        if step.log and step.repeats:
            log.error("camera %s: analysis still failing: %d more frames skipped since the last report (%s, %s)",
                      self.camera.id, step.repeats, step.kind, step.error)
        elif step.log:
            log.error("camera %s: analysis failed on this frame (%s, %s); skipping it and trying the next frame",
                      self.camera.id, step.kind, step.error, exc_info=error)
        if step.failing_now:
            log.error("camera %s: %d frames in a row could not be analysed; its health is failing (/healthz, "
                      "heartbeat, MQTT camera state) until a frame is analysed again", self.camera.id,
                      step.consecutive)

    def analysis_succeeded(self) -> None:
        """A frame of this camera was analysed (the scheduler's report)."""
        if not self.failures.consecutive:
            return
        failing = self.failures.failing
        failed = self.failures.succeeded()
        if failing:
            log.warning("camera %s: analysis works again after %d failed frames; its health is no longer failing",
                        self.camera.id, failed)

    def _counting_given_up(self, reason: str) -> None:
        self.counting.counting_failed(reason)
        log.warning("camera %s: the counting model failed on a frame (%s); counting with the detector from now "
                    "on: fit the model again (标注人数 in the page, or gateway calibrate count) and reload",
                    self.camera.id, reason)

    def _detect(self, detector: TimedDetector, image: np.ndarray) -> Detections:
        """People in the frame: one detector run, or the tile plan's runs back to back."""
        with detector.frame() as took:
            detections = detect_tiled(detector, image, self.tile_plan)
        self._frame_ms.append(took.ms)
        return detections

    def _remember(self, at: float, image: np.ndarray, result: FrameResult | None,
                  view: CameraAnalytics) -> None:
        """Keep the last `keep_history_s` of analysed frames for linked sensors' `pre_s`."""
        if self.keep_history_s <= 0:
            return
        self._history.append((at, image, result, view))
        while self._history and self._history[0][0] < at - self.keep_history_s - 1.0 / self.camera.fps:
            self._history.popleft()

    def _ensure_analytics(self, image: np.ndarray, input_size: tuple[int, int]) -> list[AlertMessage]:
        """(Re)build analytics for this frame size; a size change (substream switch) ends events."""
        size = (image.shape[1], image.shape[0])
        if self.analytics is not None and self.analytics.frame_size == size:
            return []
        ended: list[AlertMessage] = []
        if self.analytics is not None:
            log.warning("camera %s: frame size changed %dx%d -> %dx%d; restarting its analytics",
                        self.camera.id, *self.analytics.frame_size, *size)
            ended = self.analytics.close_all(time.monotonic(), datetime.now(self.timezone))
        view, details = self._view()
        self.analytics = CameraAnalytics(view, self.gateway, size, details=details,
                                         counting_model=self.counting.model_for(size),
                                         counting_features=self.counting.wanted, counting_mode=self.counting.mode)
        watched = region_mask((size[1], size[0]), list(self.analytics.zones.values()),
                              self.analytics.masks, grow_up_px=int(size[1] * PERSON_HEIGHT_SHARE))
        motion = self.camera.motion
        self.gate = MotionGate(watched, sensitivity=motion.sensitivity, max_skip_s=motion.max_skip_s,
                               enabled=motion.enabled)
        planned = camera_tile_plan(self.camera, self.analytics, input_size)
        if planned != self._planned_tiling:  # a patrol's stops rebuild the view often: log changes only
            log_plan(self.camera.id, planned)
            self._planned_tiling = planned
        self.tile_plan = planned.plan
        with self._lock:
            self.last_result = None
        return ended

    def _patrol_view_changed(self) -> bool:
        """The patrol moved on from the view the open analytics belong to."""
        return (self.patrol is not None and self.analytics is not None
                and (self._patrol_state is None or self.patrol.state().visit != self._patrol_state.visit))

    def _follow_patrol(self) -> list[AlertMessage]:
        """Take the patrol's state for this turn; at a new view (stop, or turned away for a linked
        sensor) end the old view's events; the next watched frame builds the new view."""
        if self.patrol is None:
            return []
        stop, previous = self.patrol.state(), self._patrol_state
        self._patrol_state = stop
        if self.analytics is None or (previous is not None and previous.visit == stop.visit):
            return []
        ended = self.analytics.close_all(time.monotonic(), datetime.now(self.timezone))
        self.analytics = None
        return ended

    def _patrol_watching(self, frame_at: float) -> bool:
        """Analyse a frame only if it was taken while the camera watched a stop it was confirmed
        to have reached (a frame taken while settling but picked up later does not count)."""
        stop = self._patrol_state
        return stop is None or (stop.analysing and frame_at >= stop.phase_started_at)

    def _view(self) -> tuple[Camera, dict | None]:
        """The camera as analysed now: at a patrol stop, only that stop's zones and their rules."""
        stop = self._patrol_state
        if stop is None:
            return self.camera, None
        zones = [zone for zone in self.camera.zones if not stop.zones or zone.id in stop.zones]
        zone_ids = {zone.id for zone in zones}
        rules = [rule for rule in self.camera.rules if rule.zone is None or rule.zone in zone_ids]
        view = self.camera.model_copy(update={"zones": zones, "rules": rules})
        details: dict = {"preset": stop.preset_label, "patrol_stop": stop.index}
        if stop.preset_token is not None:
            details["preset_token"] = stop.preset_token
        return view, details

    @property
    def preset(self) -> str | None:
        return self.patrol.state().preset if self.patrol is not None else None

    # ----------------------------------------------------------------- supervision side

    def supervise(self) -> list[AlertMessage]:
        """Called about once a second: a silent camera becomes a camera_offline alert, and the
        camera's own alarms received since the last turn become camera_tamper/sensor alerts."""
        health = self.reader.health()
        silent = health.last_frame_age_s
        if silent is None:
            silent = time.monotonic() - self._started_at
        now, t = datetime.now(self.timezone), time.monotonic()
        messages = self.offline_watch.observe(silent, t, now)
        if self.patrol is not None and self.patrol_fault is not None:
            messages += self.patrol_fault.observe(self.patrol.status(), self.offline_watch.offline, t, now)
        while not self._camera_event_queue.empty():
            event = self._camera_event_queue.get_nowait()
            self._event_log.log(log, logging.INFO, f"onvif:{event.kind}", "camera %s: ONVIF %s %s (%s)",
                                self.camera.id, event.kind, "active" if event.active else "cleared",
                                event.source_topic)
            claimed = [sensor for sensor in self.alarm_sensors if sensor.onvif.event == event.kind
                       and sensor.onvif.input in (None, event.data.get("input"))]
            for sensor in claimed:
                self.alarm_sink(sensor.id, event.active, event.data.get("input") or event.kind)
            if not claimed:
                messages += self.camera_events.handle(event.kind, event.active, event.source_topic,
                                                      event.data, t, now, snapshot=self.recent_snapshot)
        return messages

    def status(self) -> WorkerStatus:
        analytics = self.analytics
        now = time.monotonic()
        return WorkerStatus(
            reader=self.reader.health(),
            skip_ratio=round(self.gate.skip_ratio, 3) if self.gate else 0.0,
            frames_inferred=self._frames_inferred,
            offline=self.offline_watch.offline,
            frame_size=analytics.frame_size if analytics else None,
            last_analysed_age_s=None if self._last_analysed_at is None
            else round(now - self._last_analysed_at, 3),
            last_frame_age_when_analysed_s=None if self._last_frame_age is None
            else round(self._last_frame_age, 3),
            patrol=self.patrol.status() if self.patrol is not None else None,
            tiles_per_frame=self.tile_plan.inferences if self.tile_plan is not None else 1,
            inference_ms=_mean(tuple(self._frame_ms)),
            analysis_failing=self.failures.failing,
            analysis_error=self.failures.last_error if self.failures.failing else None,
            counting_failure=self.counting.failure,
        )

    def live_counts(self) -> CameraCounts | None:
        """What the camera counts now: its last analysed frame's counts, per zone, and from what
        (the API's cameras, the retained MQTT counts); None before the first analysed frame."""
        with self._lock:
            result, result_at, analytics = self.last_result, self._result_at, self.analytics
        if result is None or analytics is None:
            return None
        age = time.monotonic() - result_at
        idle = time.monotonic() - (self._last_analysed_at or result_at)
        names = {zone.id: zone.name or zone.id for zone in self.camera.zones}
        zones = [ZoneCount(zone_id, names.get(zone_id, zone_id), count, result.zone_sources.get(zone_id, "detector"))
                 for zone_id, count in result.zone_counts.items()]
        return CameraCounts(
            count=result.persons, source=result.count_source, detected=result.detected, estimated=result.estimated,
            mode=self.counting.mode if self.counting.model is not None else "detector",
            at=datetime.now(self.timezone) - timedelta(seconds=age), zones=zones,
            stale=self.offline_watch.offline or idle > STALE_S)

    def recent_snapshot(self) -> Snapshot | None:
        """The annotated picture of the last analysed frame if it is recent (camera alarms show
        what the camera saw when they fired); None when the camera has no recent frame."""
        if time.monotonic() - self._last_image_at > RECENT_FRAME_S:
            return None
        return self.evidence()[1]

    def live_snapshot(self) -> bytes | None:
        """Annotated JPEG of the last analysed frame (None before the first one)."""
        _count, snapshot = self.evidence()
        return snapshot.jpeg if snapshot else None

    def evidence(self, before_s: float = 0.0) -> tuple[int | None, Snapshot | None]:
        """(people counted, annotated picture) of the analysed frame from `before_s` seconds ago
        (0: the last one): what a linked sensor's alert shows of this camera. (None, None)
        before the first frame."""
        with self._lock:
            at, image, result = self._last_image_at, self._last_image, self.last_result
            analytics = self._last_view
            if before_s > 0 and self._history:
                wanted = time.monotonic() - before_s
                at, image, result, analytics = min(self._history, key=lambda entry: abs(entry[0] - wanted))
        if image is None or analytics is None:
            return None, None
        count = len(result.boxes) if result is not None else None
        taken_at = datetime.now(self.timezone) - timedelta(seconds=time.monotonic() - at)
        return count, analytics.live_snapshot(image, result, taken_at)


def _mean(values: tuple[float, ...]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _no_alarm_sink(sensor_id: str, active: bool, value: str) -> None:
    """Until the service connects the sensors: no sensor claims a camera alarm without it."""
    log.warning("camera alarm for sensor %s (%s) arrived before the sensors were connected; ignored",
                sensor_id, "active" if active else "cleared")
