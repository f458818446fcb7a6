"""The bridge from the YAML `detector:` section to a loaded detector (detectors/ knows no config)."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from detectors import Detections, Detector, DetectorSettings, create_detector
from gateway.config.models import DetectorSection


def detector_settings(section: DetectorSection) -> DetectorSettings:
    size = section.input_size
    if isinstance(size, int):
        size = (size, size)
    return DetectorSettings(
        model=section.model,
        backend=section.backend,
        input_size=size,
        confidence=section.confidence,
        nms_iou=section.nms_iou,
        threads=section.threads,
        person_classes=tuple(section.person_classes),
        layout=section.layout,
    )


def load_detector(section: DetectorSection) -> Detector:
    """Load and warm up the configured model (raises detectors.DetectorError with the file named)."""
    return create_detector(detector_settings(section))


INFERENCE_MS_BUCKETS = (5, 10, 20, 30, 50, 75, 100, 150, 250, 500, 1000)


class TimedDetector:
    """A detector that records how long each inference took (health, heartbeat, /metrics)."""

    def __init__(self, detector: Detector):
        self.detector = detector
        self.class_names = detector.class_names
        self.input_size = detector.input_size
        self.count = 0
        self.total_ms = 0.0
        self.bucket_counts = [0] * (len(INFERENCE_MS_BUCKETS) + 1)
        self._recent: deque[float] = deque(maxlen=100)
        self._lock = threading.Lock()

    def detect(self, frame: np.ndarray) -> Detections:
        started = time.perf_counter()
        detections = self.detector.detect(frame)
        self._record((time.perf_counter() - started) * 1000)
        return detections

    def close(self) -> None:
        self.detector.close()

    def _record(self, ms: float) -> None:
        with self._lock:
            self.count += 1
            self.total_ms += ms
            self._recent.append(ms)
            index = next((i for i, edge in enumerate(INFERENCE_MS_BUCKETS) if ms <= edge),
                         len(INFERENCE_MS_BUCKETS))
            self.bucket_counts[index] += 1

    def recent_ms(self) -> float | None:
        """Mean of the last 100 inferences (None before the first)."""
        with self._lock:
            return round(sum(self._recent) / len(self._recent), 2) if self._recent else None
