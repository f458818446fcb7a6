"""A live camera's counting state, between its worker (the scheduler's thread) and the page.

The worker calls `model_for` when it (re)builds its analytics, `prepare` before and `record`
after each analysed frame, all on the scheduler's thread, so the analytics stay single-threaded.
The page's annotation tool (through `gateway.calibration.studio`, on API threads) calls `start`,
`frame`, `boxes` and `use_model`; what crosses between the threads is a few references under
one lock:

- `start()`: keep a counter (background + features) running even while the camera counts with
  the detector, so an annotated snapshot has background-warmed features. The background then
  warms up on the next minutes of live frames (`frame().warmup_left_s` says how long).
- `frame()`: the last analysed frame with its features, detector count and estimate, taken
  together on the scheduler's thread: the picture an installer annotates is exactly the one the
  features describe.
- `use_model(model)`: a model fitted in the page; the next frame counts with it, the background
  stays warm, and the camera keeps it across analytics rebuilds (until the gateway restarts).
- `counting_failed(reason)`: the model (or the features kept for annotation) failed on a frame
  and the analytics dropped it; the camera counts with the detector, and analytics rebuilt
  later do not load that model again, until a new one is fitted or the gateway reloads.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from gateway.analytics import CameraAnalytics, FrameResult
from gateway.analytics.counting import CountingModel
from gateway.calibration.files import camera_model
from gateway.config.models import Camera

PERSPECTIVE_MIN_SCORE = 0.5
"""Only confident person boxes measure the perspective (half-hidden people look shorter)."""
BOXES_KEPT = 5000


@dataclass(frozen=True)
class CountingFrame:
    """One analysed frame as the annotation tool sees it (image: masked BGR, source size)."""

    image: np.ndarray
    features: np.ndarray | None
    detected: int
    estimated: float | None
    boxes: np.ndarray
    """Confident person boxes of this frame (source pixels)."""
    taken_at: datetime
    warmup_left_s: float


class LiveCounting:
    def __init__(self, camera: Camera, data_dir: Path):
        self.camera = camera
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._wanted = False
        self._pending: CountingModel | None = None
        self._fitted: CountingModel | None = None
        self._mode = camera.counting.mode
        self._frame: CountingFrame | None = None
        self._boxes: deque[np.ndarray] = deque(maxlen=BOXES_KEPT)
        self._model: CountingModel | None = None
        self.failure: str | None = None
        """Why counting with a model was given up (None: it was not)."""

    # ----------------------------------------------------------------- scheduler thread

    def model_for(self, frame_size: tuple[int, int]) -> CountingModel | None:
        """The model analytics of this frame size count with (a page-fitted one first)."""
        fitted = self._fitted
        model: CountingModel | None
        if self.failure is not None:
            model = None
        elif fitted is not None and tuple(fitted.frame_size) == tuple(frame_size):
            model = fitted
        else:
            model = camera_model(self.camera, self.data_dir, frame_size)
        self._model = model
        return model

    @property
    def wanted(self) -> bool:
        """Someone is annotating: keep features even without a model."""
        return self._wanted

    @property
    def mode(self) -> str:
        return self._mode

    def prepare(self, analytics: CameraAnalytics) -> None:
        """Before a frame: hand over a newly fitted model, or start the features the page asked for."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None and tuple(pending.frame_size) == analytics.frame_size:
            analytics.use_counting_model(pending, self._mode)
            self._model = pending
        elif self._wanted and analytics.counter is None:
            analytics.start_counting_features()

    def counting_failed(self, reason: str) -> None:
        """The analytics gave up counting with the model (or the annotation features) on a frame."""
        with self._lock:
            self.failure = reason
            self._model = self._fitted = self._pending = None
            self._wanted = False

    def record(self, analytics: CameraAnalytics, image: np.ndarray, result: FrameResult, now: datetime) -> None:
        """After a frame: keep it (with its features) for the annotation tool."""
        counter = analytics.counter
        if counter is None:
            return
        confident = result.boxes[result.scores >= PERSPECTIVE_MIN_SCORE]
        features = counter.last_features
        warmup_left = counter.warmup_left_s if features is None else 0.0
        if features is None and warmup_left == 0.0:
            warmup_left = 1.0 / max(self.camera.fps, 0.1)  # warm from the next frame on
        frame = CountingFrame(image, features, result.detected, result.estimated, confident, now, warmup_left)
        with self._lock:
            self._frame = frame
            if len(confident):
                self._boxes.append(confident)

    # ----------------------------------------------------------------- API threads

    def start(self) -> None:
        self._wanted = True

    def frame(self) -> CountingFrame | None:
        with self._lock:
            return self._frame

    def boxes(self) -> np.ndarray:
        """Confident person boxes seen recently (for the perspective)."""
        with self._lock:
            return np.concatenate(list(self._boxes)) if self._boxes else np.zeros((0, 4), np.float32)

    def use_model(self, model: CountingModel) -> str:
        """Count with `model` from the next analysed frame; returns the mode it counts in
        (`auto` when the configuration says `detector`: the page's model should count)."""
        mode = "auto" if self.camera.counting.mode == "detector" else self.camera.counting.mode
        with self._lock:
            self._mode = mode
            self._fitted = model
            self._pending = model
            self.failure = None
        return mode

    @property
    def model(self) -> CountingModel | None:
        """The model the camera counts with now (None: the detector)."""
        return self._model
