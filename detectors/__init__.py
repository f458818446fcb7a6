"""Person detectors behind one protocol: onnxruntime (YOLOX, Ultralytics exports) and Ultralytics."""

from detectors.base import Detections, Detector, DetectorError, DetectorSettings

__all__ = ["Detections", "Detector", "DetectorError", "DetectorSettings", "create_detector"]


def create_detector(settings: DetectorSettings) -> Detector:
    """Load and warm up the backend named in `settings` (imports it lazily: ultralytics is optional)."""
    if settings.backend == "onnxruntime":
        from detectors.onnx import OnnxDetector

        return OnnxDetector(settings)
    if settings.backend == "ultralytics":
        from detectors.ultralytics import UltralyticsDetector

        return UltralyticsDetector(settings)
    raise DetectorError(
        f"unknown detector backend {settings.backend!r}: expected 'onnxruntime' or 'ultralytics'"
    )
