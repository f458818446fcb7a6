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
  stays warm, and the camera keeps it across analytics rebuilds; after a restart the file the
  page wrote is picked up again (gateway.calibration.choice), unless the YAML says otherwise.
- `counting_failed(reason)`: the model (or the features kept for annotation) failed on a frame
  and the analytics dropped it; the camera counts with the detector, and analytics rebuilt
  later do not load that model again, until a new one is fitted or the gateway reloads.

The counting background outlives the process (gateway.calibration.kept): a counter starts from
the background the camera kept when it last ran, else from its model's empty scene, else it
learns one; it is written every few minutes and when the camera stops (`save`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from gateway.analytics import CameraAnalytics, FrameResult
from gateway.analytics.counting import CountingModel, CrowdCounter
from gateway.analytics.counting.background import BackgroundModel, EmptyScene
from gateway.calibration.choice import Origin, camera_model, model_choice
from gateway.calibration.kept import SAVE_EVERY_S, KeptBackground, kept_path, load_kept, save_kept
from gateway.config.models import Camera

log = logging.getLogger(__name__)

PERSPECTIVE_MIN_SCORE = 0.5
"""Only confident person boxes measure the perspective (half-hidden people look shorter)."""
BOXES_KEPT = 5000
SCENE_EVERY_S = 10.0
"""While someone annotates, the background is copied this often: the empty scene a model fitted
on the page is saved with."""


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
        self._mode = model_choice(camera, data_dir).mode
        self._frame: CountingFrame | None = None
        self._boxes: deque[np.ndarray] = deque(maxlen=BOXES_KEPT)
        self._model: CountingModel | None = None
        self.failure: str | None = None
        """Why counting with a model was given up (None: it was not)."""
        self._origin: Origin | None = None
        self._primed: BackgroundModel | None = None
        """The background last started (from a kept file, or told there is none)."""
        self._saved_at = time.monotonic()
        self._scene: tuple[float, EmptyScene] | None = None

    # ----------------------------------------------------------------- scheduler thread

    def model_for(self, frame_size: tuple[int, int]) -> CountingModel | None:
        """The model analytics of this frame size count with (a page-fitted one first)."""
        fitted = self._fitted
        model: CountingModel | None
        if self.failure is not None:
            model = None
        elif fitted is not None and tuple(fitted.frame_size) == tuple(frame_size):
            model, self._origin = fitted, "page"
        else:
            model, choice = camera_model(self.camera, self.data_dir, frame_size)
            self._mode, self._origin = choice.mode, choice.origin if model is not None else None
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
            self._model, self._origin = pending, "page"
        elif self._wanted and analytics.counter is None:
            analytics.start_counting_features()
        if analytics.counter is not None and analytics.counter.extractor.background is not self._primed:
            self._prime(analytics.counter)

    def _prime(self, counter: CrowdCounter) -> None:
        """Start a new counter's background from the one kept before a restart, if it may be used."""
        background = counter.extractor.background
        self._primed = background
        path = kept_path(self.data_dir, self.camera.id)
        kept, why = load_kept(path, self.camera.id, counter.frame_size, background.settings, counter.grid.working)
        if kept is not None:
            background.start_from(kept.scene, origin="kept")
            log.info("camera %s: counting background from %s: counting from the first frame", self.camera.id, why)
        elif background.ready:
            log.info("camera %s: %s; counting from the empty scene of its counting model", self.camera.id, why)
        else:
            log.info("camera %s: %s; learning the empty scene from the next %.0f s (the detector counts meanwhile)",
                     self.camera.id, why, background.warmup_left_s)

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
        background = counter.extractor.background
        scene = self._scene
        if self._wanted and background.ready and (scene is None or time.monotonic() - scene[0] >= SCENE_EVERY_S):
            state = background.state()
            scene = None if state is None else (time.monotonic(), state)
        with self._lock:
            self._frame = frame
            self._scene = scene
            if len(confident):
                self._boxes.append(confident)
        self._report_check(background)
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save(analytics)

    def _report_check(self, background: BackgroundModel) -> None:
        check, background.start_check = background.start_check, None
        if check is None:
            return
        what = {"kept": "the background kept before the restart", "scene": "its counting model's empty scene"}
        if check.replaced:
            log.warning("camera %s: the camera no longer sees %s (%.0f %% of the picture differs: turned, rebuilt, "
                        "another light?); counting against the scene learnt from the last %.0f s instead",
                        self.camera.id, what.get(check.origin, check.origin), 100 * check.mismatch,
                        background.settings.warmup_s)
        else:
            log.info("camera %s: the first %.0f s of frames confirm %s (%.0f %% of the picture unconfirmed)",
                     self.camera.id, background.settings.warmup_s, what.get(check.origin, check.origin),
                     100 * check.mismatch)

    def save(self, analytics: CameraAnalytics | None) -> None:
        """Keep the counting background for the next start (every few minutes, and at stop:
        called by the thread that owns the analytics). A disk that cannot take it is logged."""
        self._saved_at = time.monotonic()
        counter = analytics.counter if analytics is not None else None
        state = counter.extractor.background.state() if counter is not None else None
        if counter is None or state is None:
            return
        path = kept_path(self.data_dir, self.camera.id)
        kept = KeptBackground(self.camera.id, counter.frame_size, counter.extractor.background.settings,
                              time.time(), state)
        try:
            save_kept(path, kept)
        except OSError as error:
            log.warning("camera %s: cannot keep the counting background in %s (%s); after a restart it is learnt "
                        "again", self.camera.id, path, error)

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

    def scene(self) -> EmptyScene | None:
        """The counting background of a moment ago (the empty scene a page fit is saved with)."""
        with self._lock:
            return None if self._scene is None else self._scene[1]

    def use_model(self, model: CountingModel) -> str:
        """Count with `model` from the next analysed frame; returns the mode it counts in
        (`auto` when the configuration says `detector`: the page's model should count)."""
        configured = model_choice(self.camera, self.data_dir).mode
        mode = "auto" if configured == "detector" else configured
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

    @property
    def model_origin(self) -> Origin | None:
        """Where that model comes from: "yaml" (named in the configuration), "page" (fitted on
        the page, kept in data_dir), None without a model."""
        return self._origin
