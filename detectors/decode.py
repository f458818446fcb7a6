"""From raw network output to person boxes: layout detection, decoding, class filter, NMS.

Three output layouts are read, all as one batch of anchors (rows) with box + class scores:

- "yolox": YOLOX raw grid 1×N×(5+nc), N = the 8/16/32 grid cells of the input; box in grid
  units (offset + stride, exp × stride); objectness and class scores already sigmoided.
- "ultralytics": YOLOv8/YOLO11 export 1×(4+nc)×N (or transposed 1×N×(4+nc)); cx,cy,w,h in input
  pixels, class scores, no objectness.
- "yolov5": Ultralytics YOLOv5 export 1×N×(5+nc); cx,cy,w,h in input pixels, objectness, classes.

YOLOX and YOLOv5 have the same shape family; Ultralytics exports carry metadata (names, stride,
author...) while YOLOX exports carry none, which is what tells them apart.

Everything is vectorised: anchors are filtered on the person score first, so boxes are decoded
for the handful of candidates only.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from detectors.base import DetectorError

YOLOX_STRIDES = (8, 16, 32)
LAYOUTS = ("yolox", "ultralytics", "yolov5")

COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)


# --------------------------------------------------------------------------- metadata


def parse_names(metadata: Mapping[str, str]) -> dict[int, str] | None:
    """Class names from Ultralytics' `names` metadata (a dict or list literal), None if absent."""
    text = metadata.get("names")
    if text is None:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise DetectorError(f"metadata 'names' is not a Python literal: {text[:80]!r}") from err
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if not isinstance(value, dict) or not all(isinstance(k, int) for k in value):
        raise DetectorError(f"metadata 'names' is not a {{id: name}} dict: {text[:80]!r}")
    return {int(k): str(v) for k, v in value.items()}


def is_ultralytics(metadata: Mapping[str, str]) -> bool:
    """Whether the ONNX metadata is an Ultralytics export's (YOLOX exports carry none)."""
    return metadata.get("author", "").startswith("Ultralytics") or {"names", "stride"} <= set(metadata)


def default_names(num_classes: int) -> dict[int, str]:
    """Names for a model without metadata: COCO when it has 80 classes, else numbered."""
    if num_classes == len(COCO80):
        return dict(enumerate(COCO80))
    return {i: f"class{i}" for i in range(num_classes)}


def resolve_person_classes(wanted: Sequence[str | int], names: Mapping[int, str]) -> np.ndarray:
    """Class ids counted as people: names (case-insensitive) or ids; default 'person', else 0."""
    if not wanted:
        found = [i for i, name in names.items() if name.lower() == "person"]
        return np.array(found[:1] or [0], np.int64)
    by_name = {name.lower(): i for i, name in names.items()}
    ids = []
    for item in wanted:
        if isinstance(item, str) and item.lower() in by_name:
            ids.append(by_name[item.lower()])
        elif isinstance(item, int) and item in names:
            ids.append(item)
        else:
            listed = ", ".join(f"{i}: {n!r}" for i, n in sorted(names.items()))
            raise DetectorError(f"person class {item!r} is not a class of this model ({listed})")
    return np.array(sorted(set(ids)), np.int64)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class Layout:
    """How to read the output: which family, whether anchors are rows, how many classes."""

    name: str
    anchors_first: bool
    num_classes: int


def yolox_anchor_count(input_size: tuple[int, int]) -> int:
    width, height = input_size
    return sum((width // s) * (height // s) for s in YOLOX_STRIDES)


def detect_layout(
    shape: Sequence[int],
    input_size: tuple[int, int],
    names: Mapping[int, str] | None,
    ultralytics_meta: bool,
    requested: str = "auto",
) -> Layout:
    """The layout of a 1×A×B output, from its shape, the class names and who exported it.

    `requested` "yolox" or "ultralytics" overrides the metadata (an Ultralytics export is
    YOLOv8-style or YOLOv5-style by its shape); "auto" trusts the metadata, and without any
    takes YOLOX when N matches the grid count, else a YOLOv8-style 1×(4+nc)×N.
    """
    if requested not in ("auto", "yolox", "ultralytics"):
        raise DetectorError(f"unknown layout {requested!r}: expected auto, yolox or ultralytics")
    if len(shape) != 3 or shape[0] != 1 or min(shape) < 1:
        raise _no_layout(shape, input_size)
    _, rows, cols = (int(d) for d in shape)
    if requested == "yolox":
        layout = _yolox_layout(rows, cols, input_size, names)
    elif requested == "ultralytics" or ultralytics_meta:
        layout = _ultralytics_layout(rows, cols, names)
    else:
        layout = _yolox_layout(rows, cols, input_size, names) or _headerless_ultralytics(rows, cols)
    if layout is None:
        hint = "" if names is None else f"the metadata names {len(names)} classes"
        raise _no_layout(shape, input_size, hint)
    return layout


def _yolox_layout(rows: int, cols: int, size: tuple[int, int], names: Mapping | None) -> Layout | None:
    num_classes = cols - 5
    if rows != yolox_anchor_count(size) or num_classes < 1:
        return None
    if names is not None and len(names) != num_classes:
        return None
    return Layout("yolox", True, num_classes)


def _headerless_ultralytics(rows: int, cols: int) -> Layout | None:
    """A YOLOv8-style 1×(4+nc)×N without metadata (other exporters): features fewer than anchors."""
    return Layout("ultralytics", False, rows - 4) if 5 <= rows < cols else None


def _ultralytics_layout(rows: int, cols: int, names: Mapping | None) -> Layout | None:
    if names is None:
        return _headerless_ultralytics(rows, cols) or (
            Layout("ultralytics", True, cols - 4) if 5 <= cols < rows else None
        )
    nc = len(names)
    if rows == 4 + nc:
        return Layout("ultralytics", False, nc)
    if cols == 4 + nc:
        return Layout("ultralytics", True, nc)
    if cols == 5 + nc:
        return Layout("yolov5", True, nc)
    return None


def _no_layout(shape: Sequence[int], input_size: tuple[int, int], why: str = "") -> DetectorError:
    width, height = input_size
    dims = [int(d) if isinstance(d, (int, np.integer)) else d for d in shape]
    return DetectorError(
        f"output shape {dims} fits no known layout{f' ({why})' if why else ''}: expected YOLOX "
        f"1×N×(5+nc) with N = {yolox_anchor_count(input_size)} for {width}×{height}, "
        "Ultralytics 1×(4+nc)×N or 1×N×(4+nc), or YOLOv5 1×N×(5+nc) with Ultralytics metadata"
    )


# --------------------------------------------------------------------------- decoding


@lru_cache(maxsize=8)
def yolox_grid(input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (N, 2) and strides (N,) of every YOLOX anchor, in output row order."""
    width, height = input_size
    offsets, strides = [], []
    for stride in YOLOX_STRIDES:
        ys, xs = np.mgrid[0 : height // stride, 0 : width // stride]
        offsets.append(np.stack((xs.ravel(), ys.ravel()), axis=1))
        strides.append(np.full(xs.size, stride))
    grid = np.concatenate(offsets).astype(np.float32)
    anchor_strides = np.concatenate(strides).astype(np.float32)
    grid.flags.writeable = anchor_strides.flags.writeable = False
    return grid, anchor_strides


@dataclass(frozen=True, slots=True)
class Candidates:
    """Person boxes before NMS: x1,y1,x2,y2 in input pixels, score, class id."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


class Decoder:
    """Reads one model's output into person boxes (input pixels) after the class filter and NMS."""

    def __init__(
        self,
        layout: Layout,
        input_size: tuple[int, int],
        person_ids: np.ndarray,
        confidence: float,
        nms_iou: float,
    ) -> None:
        self.layout = layout
        self.person_ids = np.asarray(person_ids, np.int64)
        self.confidence = float(confidence)
        self.nms_iou = float(nms_iou)
        self._first_class = 5 if layout.name in ("yolox", "yolov5") else 4
        self._grid = yolox_grid(input_size) if layout.name == "yolox" else None
        self._expected = yolox_anchor_count(input_size) if layout.name == "yolox" else None

    def __call__(self, output: np.ndarray) -> Candidates:
        """Person candidates surviving the score threshold and class-agnostic NMS."""
        found = self.candidates(output)
        keep = nms(found.boxes, found.scores, self.nms_iou)
        return Candidates(found.boxes[keep], found.scores[keep], found.class_ids[keep])

    def candidates(self, output: np.ndarray) -> Candidates:
        """Anchors whose best class is a person class with score ≥ confidence, decoded."""
        features = self._features(output)
        classes = features[self._first_class :]
        person_raw = classes[self.person_ids]
        person = person_raw * features[4] if self._first_class == 5 else person_raw
        best = person.max(axis=0)
        idx = np.flatnonzero(best >= self.confidence)
        # Standard YOLO semantics: an anchor is a person only if no other class beats it.
        idx = idx[person_raw[:, idx].max(axis=0) >= classes[:, idx].max(axis=0)]
        scores = best[idx].astype(np.float32)
        class_ids = self.person_ids[person[:, idx].argmax(axis=0)].astype(np.int32)
        return Candidates(self._boxes(features, idx), scores, class_ids)

    def _features(self, output: np.ndarray) -> np.ndarray:
        """The output as a (features, anchors) view, checked against the layout."""
        # Annotated: numpy's stubs read a reshape to `shape[-2:]` (tuple[Any, ...]) as 0-d.
        rows: np.ndarray = output.reshape(output.shape[-2:])
        features = rows.T if self.layout.anchors_first else rows
        if features.shape[0] != self._first_class + self.layout.num_classes:
            raise DetectorError(
                f"output shape {list(output.shape)} does not match the {self.layout.name} layout "
                f"with {self.layout.num_classes} classes read at load"
            )
        if self._expected is not None and features.shape[1] != self._expected:
            raise DetectorError(
                f"YOLOX output has {features.shape[1]} anchors, expected {self._expected} "
                f"(the 8/16/32 grid cells of the input)"
            )
        return features

    def _boxes(self, features: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """x1,y1,x2,y2 in input pixels for the selected anchors."""
        cx, cy, w, h = (features[i, idx].astype(np.float32) for i in range(4))
        if self._grid is not None:
            grid, stride = self._grid
            s = stride[idx]
            cx = (cx + grid[idx, 0]) * s
            cy = (cy + grid[idx, 1]) * s
            w = np.exp(w) * s
            h = np.exp(h) * s
        return np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS (class-agnostic), best score first."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = np.empty_like(boxes, dtype=np.float32)
    xywh[:, :2] = boxes[:, :2]
    xywh[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    # OpenCV's stubs ask for Sequences; NMSBoxes reads numpy arrays directly (no list copy).
    keep = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float32), 0.0, float(iou))  # type: ignore[arg-type]
    return np.asarray(keep, np.int64).reshape(-1)
