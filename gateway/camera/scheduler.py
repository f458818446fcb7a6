"""The analysis scheduler: shares one detector across all cameras, fairly.

Why one inference at a time: onnxruntime already spreads one inference over `detector.threads`
cores; two concurrent inferences on a 2-4 core box only fight over the same cores and make
every frame older. So one thread runs inferences back to back, and fairness decides the order:
among the cameras that have a frame waiting, the one that used the least detector time lately
goes first (ties: the one served longest ago). Time, not frames: a tiled far-view camera pays
for its frame's real cost (all its tiles), so it cannot starve the cameras beside it. A camera
with no frame (offline, stalled, between frames of its analysis fps) is simply not ready: it
can never hold up the others. When the box is overloaded every camera gets an even share of
the detector, and each one always analyses its newest frame (readers keep only the latest),
never a backlog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from gateway.camera.timing import TimedDetector
from gateway.camera.worker import CameraWorker
from gateway.events import AlertPath

USAGE_HALF_LIFE_S = 10.0
"""Detector time a camera used counts half after this long: recent use decides who goes next."""
IDLE_POLL_S = 0.01
"""How often an idle scheduler looks for new frames (cheap: one integer per camera)."""

class DetectorUsage:
    """Seconds of analysis each camera used, decaying with USAGE_HALF_LIFE_S (clock passed in)."""

    def __init__(self) -> None:
        self._used: dict[str, tuple[float, float]] = {}  # camera id -> (seconds, as of)

    def add(self, camera_id: str, seconds: float, now: float) -> None:
        self._used[camera_id] = (self.used(camera_id, now) + seconds, now)

    def used(self, camera_id: str, now: float) -> float:
        seconds, since = self._used.get(camera_id, (0.0, now))
        return seconds * 0.5 ** ((now - since) / USAGE_HALF_LIFE_S)

    def forget(self, camera_id: str) -> None:
        self._used.pop(camera_id, None)


def pick_next(workers: Iterable[CameraWorker], usage: DetectorUsage | None = None,
              now: float = 0.0) -> CameraWorker | None:
    """The ready camera that used the detector least lately, then the one served longest ago
    (None if no camera has a new frame)."""
    ready = [worker for worker in workers if worker.has_new_frame()]
    if not ready:
        return None
    if usage is None:
        return min(ready, key=lambda worker: worker.last_analysed_at)
    return min(ready, key=lambda worker: (round(usage.used(worker.camera.id, now), 3), worker.last_analysed_at))


class AnalysisScheduler:
    def __init__(self, detector: TimedDetector, alerts: AlertPath):
        self.detector = detector
        self.alerts = alerts
        self._workers: dict[str, CameraWorker] = {}
        self._usage = DetectorUsage()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()
        """Monotonic time of the loop's last turn: the service's watchdog checks it is alive."""

    # ----------------------------------------------------------------- cameras

    def add(self, worker: CameraWorker) -> None:
        with self._lock:
            self._workers[worker.camera.id] = worker

    def remove(self, camera_id: str) -> CameraWorker | None:
        """Take a camera out; returns once the scheduler no longer touches it."""
        with self._lock:
            self._usage.forget(camera_id)
            return self._workers.pop(camera_id, None)

    def workers(self) -> list[CameraWorker]:
        with self._lock:
            return list(self._workers.values())

    # ----------------------------------------------------------------- thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            with self._lock:
                worker = pick_next(self._workers.values(), self._usage, time.monotonic())
                # Holding the lock while analysing makes remove() wait for the frame in progress:
                # a removed camera is never touched again.
                if worker is not None:
                    self._analyse(worker)
            if worker is None:
                self._stop.wait(IDLE_POLL_S)

    def _analyse(self, worker: CameraWorker) -> None:
        began = time.monotonic()
        try:
            messages = worker.analyse(self.detector)
        except Exception as error:  # noqa: BLE001 - one camera's bad frame must not stop the others
            worker.analysis_failed(error)  # logged once per kind; frames that keep failing turn it failing
            return
        finally:
            ended = time.monotonic()
            self._usage.add(worker.camera.id, ended - began, ended)
        worker.analysis_succeeded()
        if messages:
            self.alerts.route(messages)
