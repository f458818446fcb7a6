"""The bridge from the YAML `detector:` section to a loaded detector (detectors/ knows no config)."""

from __future__ import annotations

from detectors import Detector, DetectorSettings, create_detector
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
