"""Person detectors behind one protocol; each backend registers itself (detectors/registry.py).

    base.py         the `Detector` protocol, `Detections`, `DetectorSettings`
    registry.py     backends by name (`@backend("name")`), `create_detector`
    onnx.py         onnxruntime: YOLOX raw grids and Ultralytics v5/v8/11 exports
    ultralytics.py  the optional Ultralytics backend (whatever `ultralytics.YOLO` loads)
    preprocess.py   letterboxing; decode.py  output decoding and NMS; tiling.py  tiles and their merge
"""

from detectors.base import Detections, Detector, DetectorError, DetectorSettings
from detectors.registry import backend, backend_names, create_detector

__all__ = ["Detections", "Detector", "DetectorError", "DetectorSettings", "backend", "backend_names",
           "create_detector"]
