"""The onnxruntime backend: YOLOX and Ultralytics ONNX exports on the CPU.

Loading does all the checking (file, input, output layout, classes) and a warm-up run, so a bad
model fails at start-up with a message naming the file, never on the first camera frame.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from detectors.base import Detections, DetectorError, DetectorSettings
from detectors.decode import (
    Decoder,
    Layout,
    default_names,
    detect_layout,
    is_ultralytics,
    parse_names,
    resolve_person_classes,
)
from detectors.preprocess import ULTRALYTICS, YOLOX, Letterboxer
from detectors.registry import backend


def cpu_session_options(threads: int) -> ort.SessionOptions:
    """One inference at a time on `threads` cores: the gateway serialises frames itself."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def open_session(path: Path, threads: int) -> ort.InferenceSession:
    """The CPU session for `path`, with onnxruntime's failures turned into DetectorError."""
    if not path.is_file():
        raise DetectorError("model file not found (expected an .onnx file)")
    try:
        return ort.InferenceSession(str(path), cpu_session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own untyped errors for bad files
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise DetectorError(f"not a readable ONNX model ({lines[0][:300]})") from err


@backend("onnxruntime")
class OnnxDetector:
    """A warmed-up onnxruntime session plus the letterbox and decoder its layout needs.

    Attributes: class_names, input_size (w, h), layout ("yolox" | "ultralytics" | "yolov5"),
    person_ids. (How long it takes is measured by its user: gateway.camera.timing.)
    """

    def __init__(self, settings: DetectorSettings) -> None:
        self.path = Path(settings.model)
        self._lock = threading.Lock()
        try:
            self._load(settings)
        except DetectorError as err:
            raise DetectorError(f"{self.path}: {err}") from err

    def _load(self, settings: DetectorSettings) -> None:
        """Open, check and warm up the model; errors here get the file name prefixed."""
        self._session: ort.InferenceSession | None = open_session(self.path, settings.threads)
        self._input_name = self._session.get_inputs()[0].name
        metadata = self._session.get_modelmeta().custom_metadata_map
        self.input_size = self._read_input_size(settings.input_size, metadata)
        output = self._warm_up()
        names = parse_names(metadata)
        layout = _read_layout(output.shape, self.input_size, names, metadata, settings.layout)
        self.class_names = names or default_names(layout.num_classes)
        self.layout = layout.name
        self.person_ids = resolve_person_classes(settings.person_classes, self.class_names)
        convention = YOLOX if layout.name == "yolox" else ULTRALYTICS
        self._letterbox = Letterboxer(self.input_size, convention)
        self._decode = Decoder(layout, self.input_size, self.person_ids, settings.confidence, settings.nms_iou)

    @property
    def session_options(self) -> ort.SessionOptions:
        """The options the session really runs with (threads, execution mode)."""
        return self._live_session().get_session_options()

    def detect(self, frame: np.ndarray) -> Detections:
        """People in a BGR uint8 frame, boxes in its pixels. Safe to call from several threads."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise DetectorError(f"expected an H×W×3 uint8 BGR frame, got {frame.shape} {frame.dtype}")
        with self._lock:
            tensor, transform = self._letterbox(frame)
            output = self._run(tensor)
            found = self._decode(output)
            boxes = transform.to_source(found.boxes)
        return Detections(boxes, found.scores, found.class_ids)

    def close(self) -> None:
        """Drop the session (onnxruntime frees its threads and memory with it)."""
        self._session = None

    def _live_session(self) -> ort.InferenceSession:
        """The session, or DetectorError once `close` has dropped it."""
        if self._session is None:
            raise DetectorError(f"{self.path}: detector is closed")
        return self._session

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        return self._live_session().run(None, {self._input_name: tensor})[0]

    def _warm_up(self) -> np.ndarray:
        """One run on a grey input: proves the model runs and gives the real output shape."""
        width, height = self.input_size
        tensor = np.full((1, 3, height, width), 114.0, np.float32)
        try:
            return self._run(tensor)
        except Exception as err:
            raise DetectorError(f"the model fails on a 1×3×{height}×{width} input ({err})") from err

    def _read_input_size(self, wanted: tuple[int, int] | None, metadata: Mapping[str, str]) -> tuple[int, int]:
        """(w, h) from the model's static input dims, else from settings, else from `imgsz`."""
        spec = self._live_session().get_inputs()[0]
        shape = spec.shape
        if spec.type != "tensor(float)" or len(shape) != 4 or shape[1] not in (3, "3"):
            raise DetectorError(
                f"input {spec.name!r} is {spec.type} {shape}: expected float32 1×3×H×W"
            )
        height, width = shape[2], shape[3]
        if isinstance(width, int) and isinstance(height, int):
            if wanted is not None and tuple(wanted) != (width, height):
                raise DetectorError(
                    f"input_size {wanted[0]}×{wanted[1]} given, but the model's input "
                    f"is fixed at {width}×{height} (leave input_size unset or re-export)"
                )
            return width, height
        if wanted is not None:
            return int(wanted[0]), int(wanted[1])
        return _imgsz(metadata)


def _read_layout(
    shape: tuple[int, ...],
    input_size: tuple[int, int],
    names: dict[int, str] | None,
    metadata: Mapping[str, str],
    requested: str,
) -> Layout:
    """The output layout; Ultralytics exports of other tasks (segment, pose) are refused."""
    task = metadata.get("task", "detect")
    if task != "detect":
        raise DetectorError(f"Ultralytics task {task!r} is not supported: expected a 'detect' model")
    return detect_layout(shape, input_size, names, is_ultralytics(metadata), requested)


def _imgsz(metadata: Mapping[str, str]) -> tuple[int, int]:
    """(w, h) from Ultralytics' `imgsz` metadata ("[h, w]") for a model with dynamic input dims."""
    try:
        value = ast.literal_eval(metadata["imgsz"])
        height, width = (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))
    except (KeyError, ValueError, SyntaxError, TypeError, IndexError):
        raise DetectorError("the model's input size is dynamic: set detector input_size") from None
    return width, height
