"""How long the detector takes: measured once, here, for every detector run and every frame.

`TimedDetector` wraps the loaded detector. Each run (one whole frame, or one tile of a tiled
frame) goes into the histogram `/metrics` exports and the recent mean the heartbeat shows; the
runs of one analysed frame are summed (`frame()`), which is what a camera's `inference_ms`
reports and what the scheduler's fairness is about (a tiled far view costs all its tiles).
The backends themselves time nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from detectors import Detections, Detector

INFERENCE_MS_BUCKETS = (5, 10, 20, 30, 50, 75, 100, 150, 250, 500, 1000)


class FrameTime:
    """The detector time of one analysed frame, filled in when its `frame()` block ends."""

    ms = 0.0


class TimedDetector:
    """A detector that records how long each run took (health, heartbeat, /metrics)."""

    def __init__(self, detector: Detector):
        self.detector = detector
        self.class_names = detector.class_names
        self.input_size = detector.input_size
        self.count = 0
        self.total_ms = 0.0
        self.bucket_counts = [0] * (len(INFERENCE_MS_BUCKETS) + 1)
        self._recent: deque[float] = deque(maxlen=100)
        self._lock = threading.Lock()
        self._frame: FrameTime | None = None

    def detect(self, frame: np.ndarray) -> Detections:
        started = time.perf_counter()
        detections = self.detector.detect(frame)
        self._record((time.perf_counter() - started) * 1000)
        return detections

    @contextmanager
    def frame(self) -> Iterator[FrameTime]:
        """Sum the runs made inside the block (one frame, all its tiles). The analysis runs one
        frame at a time, on one thread, so one running sum is enough."""
        timing = self._frame = FrameTime()
        try:
            yield timing
        finally:
            self._frame = None

    def close(self) -> None:
        self.detector.close()

    def _record(self, ms: float) -> None:
        if self._frame is not None:
            self._frame.ms += ms
        with self._lock:
            self.count += 1
            self.total_ms += ms
            self._recent.append(ms)
            index = next((i for i, edge in enumerate(INFERENCE_MS_BUCKETS) if ms <= edge),
                         len(INFERENCE_MS_BUCKETS))
            self.bucket_counts[index] += 1

    def recent_ms(self) -> float | None:
        """Mean of the last 100 runs (None before the first)."""
        with self._lock:
            return round(sum(self._recent) / len(self._recent), 2) if self._recent else None
