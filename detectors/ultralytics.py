"""The optional Ultralytics backend: whatever `ultralytics.YOLO` loads (.pt, .onnx, NCNN, OpenVINO).

Ultralytics is imported only here, so the gateway runs without it (and without torch) when the
onnxruntime backend is configured. Its own pre-processing, decoding and NMS are used; the class
filter and class-agnostic NMS match the onnxruntime backend, so both report the same people.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detectors.base import Detections, DetectorError, DetectorSettings
from detectors.decode import resolve_person_classes
from detectors.registry import backend

WARM_UP_FRAME = (480, 640)  # (h, w) of the grey frame run once at load


def _import_yolo():
    """ultralytics.YOLO, told not to pip-install or download anything: gateways run offline."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        from ultralytics import YOLO
    except ImportError as err:
        raise DetectorError(
            f"the ultralytics backend needs the optional extra: pip install '.[ultralytics]' ({err})"
        ) from err
    return YOLO


@backend("ultralytics")
class UltralyticsDetector:
    """A warmed-up `ultralytics.YOLO` model reporting people as `Detections`.

    Attributes: class_names, input_size (w, h) as Ultralytics really runs it, layout
    ("ultralytics"), person_ids.
    """

    layout = "ultralytics"

    def __init__(self, settings: DetectorSettings) -> None:
        self.path = Path(settings.model)
        yolo = _import_yolo()
        if not self.path.exists():
            raise DetectorError(
                f"{self.path}: model not found (expected a .pt or .onnx file or an exported model directory)"
            )
        try:
            self._model = yolo(str(self.path), task="detect")
            self.class_names = {int(k): str(v) for k, v in self._model.names.items()}
        except Exception as err:  # ultralytics raises many kinds for unreadable models
            raise DetectorError(f"{self.path}: ultralytics cannot load it ({_first_line(err)})") from err
        try:
            self.person_ids = resolve_person_classes(settings.person_classes, self.class_names)
        except DetectorError as err:
            raise DetectorError(f"{self.path}: {err}") from err
        _limit_torch_threads(settings.threads)
        self._options: dict = {
            "conf": settings.confidence,
            "iou": settings.nms_iou,
            "classes": [int(i) for i in self.person_ids],
            "agnostic_nms": True,
            "verbose": False,
        }
        if settings.input_size is not None:
            width, height = settings.input_size
            self._options["imgsz"] = (height, width)
        self.input_size = self._warm_up()

    def detect(self, frame: np.ndarray) -> Detections:
        """People in a BGR uint8 frame, boxes in its pixels."""
        if self._model is None:
            raise DetectorError(f"{self.path}: detector is closed")
        result = self._model.predict(frame, **self._options)[0]
        boxes = result.boxes.cpu().numpy()
        return Detections(
            boxes.xyxy.astype(np.float32).reshape(-1, 4),
            boxes.conf.astype(np.float32).reshape(-1),
            boxes.cls.astype(np.int32).reshape(-1),
        )

    def close(self) -> None:
        self._model = None

    def _warm_up(self) -> tuple[int, int]:
        """One prediction on a grey frame; returns the (w, h) Ultralytics settled on.

        Fixed-size exports override the requested size, so it is read back, not assumed.
        """
        frame = np.full((*WARM_UP_FRAME, 3), 114, np.uint8)
        try:
            self._model.predict(frame, **self._options)
        except Exception as err:
            raise DetectorError(f"{self.path}: ultralytics fails on a warm-up frame ({_first_line(err)})") from err
        imgsz = self._model.predictor.imgsz
        height, width = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
        return int(width), int(height)


def _limit_torch_threads(threads: int) -> None:
    """Keep torch (the .pt path) to the configured cores, like the onnxruntime backend."""
    import torch

    torch.set_num_threads(threads)


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:300]
