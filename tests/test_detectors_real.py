"""The detectors on the real models and video, and their load-time errors on broken models.

Broken and synthetic models are tiny ONNX files written here by hand (a Constant node, so the
output is whatever tensor the test plants): no `onnx` package needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors import DetectorError, DetectorSettings, create_detector
from detectors.onnx import OnnxDetector

ULTRA_META = {"author": "Ultralytics", "task": "detect", "stride": "32", "imgsz": "[640, 640]",
              "version": "8.3.202"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def frame0(vtest_video: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(vtest_video))
    ok, frame = capture.read()
    capture.release()
    assert ok, f"cannot read {vtest_video}"
    return frame


@pytest.fixture(scope="module")
def yolox(yolox_model: Path) -> OnnxDetector:
    detector = create_detector(DetectorSettings(model=yolox_model, threads=2))
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def fall_model(yolov8_model: Path) -> OnnxDetector:
    detector = create_detector(DetectorSettings(model=yolov8_model, person_classes=("Normal", "Fall")))
    yield detector
    detector.close()


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = lambda r: np.prod(r[:, 2:] - r[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: varint for ints, length-delimited for strings and messages."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, shape: list[int | str]) -> bytes:
    dims = b"".join(_field(1, _field(1, d) if isinstance(d, int) else _field(2, d)) for d in shape)
    tensor_type = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor_type))


def tiny_onnx(path: Path, input_shape: list[int | str], output: np.ndarray,
              metadata: dict[str, str] | None = None) -> Path:
    """An ONNX model (opset 13) whose output `out` is the constant `output`, input `images`."""
    output = np.ascontiguousarray(output, np.float32)
    tensor = b"".join(_field(1, d) for d in output.shape) + _field(2, 1) + _field(9, output.tobytes())
    node = _field(2, "out") + _field(4, "Constant") + _field(5, _field(1, "value") + _field(5, tensor) + _field(20, 4))
    graph = (_field(1, node) + _field(2, "tiny") + _field(11, _value_info("images", input_shape))
             + _field(12, _value_info("out", list(output.shape))))
    model = _field(1, 8) + _field(8, _field(1, "") + _field(2, 13)) + _field(7, graph)
    for key, value in (metadata or {}).items():
        model += _field(14, _field(1, key) + _field(2, value))
    path.write_bytes(model)
    return path


def _load(path: Path, **kwargs) -> OnnxDetector:
    return create_detector(DetectorSettings(model=path, **kwargs))


# --------------------------------------------------------------------------- YOLOX-Nano


def test_yolox_reads_the_model(yolox):
    assert yolox.layout == "yolox" and yolox.input_size == (416, 416)
    assert yolox.class_names[0] == "person" and len(yolox.class_names) == 80
    assert yolox.person_ids.tolist() == [0]


def test_yolox_finds_people_on_frame0(yolox, frame0):
    found = yolox.detect(frame0)
    assert len(found) >= 3
    assert found.boxes.dtype == np.float32 and found.scores.dtype == np.float32
    assert found.class_ids.dtype == np.int32 and set(found.class_ids.tolist()) == {0}
    x1, y1, x2, y2 = found.boxes.T
    assert np.all((x1 >= 0) & (y1 >= 0) & (x2 <= 768) & (y2 <= 576))
    assert np.all(y2 - y1 > x2 - x1), "people are taller than wide"
    assert np.all(found.scores >= 0.3)


def test_yolox_boxes_follow_the_frame_scale(yolox, frame0):
    """The same scene at twice the size gives the same people at twice the coordinates."""
    small = yolox.detect(frame0)
    big = yolox.detect(cv2.resize(frame0, None, fx=2, fy=2))
    assert len(big) == len(small)
    assert np.all(iou_matrix(small.boxes * 2, big.boxes).max(axis=1) > 0.9)


def test_yolox_counts_are_plausible_over_the_first_frames(yolox, vtest_video):
    capture = cv2.VideoCapture(str(vtest_video))
    counts = []
    for _ in range(20):
        ok, frame = capture.read()
        assert ok
        counts.append(len(yolox.detect(frame)))
    capture.release()
    assert min(counts) >= 3 and max(counts) <= 12


def test_threads_setting_reaches_the_session(yolox_model):
    detector = _load(yolox_model, threads=1)
    options = detector.session_options
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.execution_mode.name == "ORT_SEQUENTIAL"
    assert options.graph_optimization_level.name == "ORT_ENABLE_ALL"
    detector.close()


def test_unknown_person_class_names_the_file_and_the_classes(yolox_model):
    with pytest.raises(DetectorError, match=r"yolox_nano\.onnx: person class 'pedestrian'.*0: 'person'"):
        _load(yolox_model, person_classes=("pedestrian",))


def test_fixed_input_size_conflict_is_an_error(yolox_model):
    with pytest.raises(DetectorError, match="fixed at 416×416"):
        _load(yolox_model, input_size=(640, 640))


def test_frame_must_be_bgr_uint8(yolox):
    with pytest.raises(DetectorError, match="H×W×3 uint8"):
        yolox.detect(np.zeros((576, 768), np.uint8))


# --------------------------------------------------------------------------- Ultralytics YOLOv8 export


def test_yolov8_reads_names_and_size_from_metadata(yolov8_model):
    detector = _load(yolov8_model)
    assert detector.class_names == {0: "Normal", 1: "Fall"}
    assert detector.input_size == (640, 640) and detector.layout == "ultralytics"
    assert detector.person_ids.tolist() == [0], "no 'person' class: class 0 by default"
    detector.close()


def test_yolov8_finds_the_three_walkers(fall_model, yolox, frame0):
    found = fall_model.detect(frame0)
    walkers = found.select(found.class_ids == 0)
    assert len(walkers) >= 3
    people = yolox.detect(frame0)
    top3 = people.boxes[np.argsort(-people.scores)[:3]]
    overlap = iou_matrix(top3, walkers.boxes)
    assert np.all(overlap.max(axis=1) > 0.4), overlap
    assert len(set(overlap.argmax(axis=1).tolist())) == 3


@pytest.mark.ultralytics
def test_ultralytics_backend_matches_onnxruntime(yolov8_model, fall_model, frame0):
    pytest.importorskip("ultralytics")
    detector = create_detector(DetectorSettings(model=yolov8_model, backend="ultralytics",
                                                person_classes=("Normal", "Fall")))
    assert detector.class_names == {0: "Normal", 1: "Fall"} and detector.input_size == (640, 640)
    theirs, ours = detector.detect(frame0), fall_model.detect(frame0)
    detector.close()
    assert len(theirs) == len(ours) >= 3
    overlap = iou_matrix(ours.boxes, theirs.boxes)
    assert np.all(overlap.max(axis=1) > 0.9), overlap
    np.testing.assert_array_equal(theirs.class_ids[overlap.argmax(axis=0)], theirs.class_ids)


# --------------------------------------------------------------------------- load errors


def test_missing_file(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(DetectorError, match=rf"{re.escape(str(path))}: model file not found"):
        _load(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(DetectorError, match=rf"{re.escape(str(path))}: not a readable ONNX model"):
        _load(path)


def test_wrong_output_layout_says_what_was_expected(tmp_path):
    path = tiny_onnx(tmp_path / "seven.onnx", [1, 3, 416, 416], np.zeros((1, 7)))
    with pytest.raises(DetectorError) as caught:
        _load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: output shape [1, 7] fits no known layout")
    assert "YOLOX 1×N×(5+nc) with N = 3549 for 416×416" in message and "Ultralytics 1×(4+nc)×N" in message


def test_wrong_input_shape(tmp_path):
    path = tiny_onnx(tmp_path / "gray.onnx", [1, 1, 64, 64], np.zeros((1, 6, 84)))
    with pytest.raises(DetectorError, match=r"gray\.onnx: input 'images'.*expected float32 1×3×H×W"):
        _load(path)


def test_other_ultralytics_tasks_are_refused(tmp_path):
    meta = {**ULTRA_META, "task": "pose", "names": "{0: 'person'}"}
    path = tiny_onnx(tmp_path / "pose.onnx", [1, 3, 640, 640], np.zeros((1, 56, 8400)), meta)
    with pytest.raises(DetectorError, match="task 'pose' is not supported"):
        _load(path)


def test_dynamic_input_needs_a_size(tmp_path):
    path = tiny_onnx(tmp_path / "dynamic.onnx", [1, 3, "height", "width"], np.zeros((1, 3549, 85)))
    with pytest.raises(DetectorError, match="dynamic: set detector input_size"):
        _load(path)
    assert _load(path, input_size=(416, 416)).input_size == (416, 416)


def test_dynamic_input_size_from_imgsz_metadata(tmp_path):
    meta = {**ULTRA_META, "names": "{0: 'person', 1: 'bicycle'}", "imgsz": "[384, 640]"}
    path = tiny_onnx(tmp_path / "dyn_meta.onnx", [1, 3, "h", "w"], np.zeros((1, 6, 5040)), meta)
    assert _load(path).input_size == (640, 384)


# --------------------------------------------------------------------------- synthetic outputs, end to end


def test_yolov5_export_end_to_end(tmp_path):
    """A YOLOv5-layout output with Ultralytics metadata: decoded without grid, mapped to source."""
    output = np.zeros((1, 8400, 5 + 80), np.float32)  # 8400 = the 640 YOLOX grid: metadata decides
    output[0, 10, :7] = [320, 320, 40, 120, 0.9, 0.9, 0.0]
    meta = {**ULTRA_META, "names": repr(dict(enumerate(["person"] + [f"c{i}" for i in range(79)])))}
    detector = _load(tiny_onnx(tmp_path / "v5.onnx", [1, 3, 640, 640], output, meta))
    assert detector.layout == "yolov5"
    found = detector.detect(np.zeros((480, 640, 3), np.uint8))  # centred: pad_y = 80
    np.testing.assert_allclose(found.boxes, [[300, 180, 340, 300]], atol=1e-3)
    np.testing.assert_allclose(found.scores, [0.81], rtol=1e-5)


def test_layout_override_forces_yolox_on_a_metadata_model(tmp_path):
    output = np.zeros((1, 8400, 5 + 80), np.float32)
    output[0, 0, :7] = [0.5, 0.5, 0.0, 0.0, 0.9, 0.9, 0.0]  # stride-8 cell (0, 0): box 0..8
    meta = {**ULTRA_META, "names": repr(dict(enumerate(["person"] + [f"c{i}" for i in range(79)])))}
    detector = _load(tiny_onnx(tmp_path / "x.onnx", [1, 3, 640, 640], output, meta), layout="yolox")
    assert detector.layout == "yolox"
    found = detector.detect(np.zeros((640, 640, 3), np.uint8))
    np.testing.assert_allclose(found.boxes, [[0, 0, 8, 8]], atol=1e-3)
