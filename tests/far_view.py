"""A far view built from vtest.avi: the scene at half size inside a 1920×1080 picture.

This is what a plaza camera on a high pole sends: people 30–60 px tall in a full-HD frame. The
surroundings are the scene's own empty background (the median of frames, people gone), enlarged
and blurred, so the only people in the picture are the scene's. The reference for scoring is what
the same detector finds on the original full-size frame, mapped into the canvas.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from gateway.video.decode import decode_frames, open_video

CANVAS = (1920, 1080)
SCALE = 0.5
OFFSET = (760, 500)
"""Where the scene's top-left corner lands in the canvas (somewhere off-centre, as a plaza would)."""


def vtest_frames(video: Path, step: int, limit: int | None = None) -> list[np.ndarray]:
    """Every `step`-th frame of the video, BGR (the first `limit` of them)."""
    frames: list[np.ndarray] = []
    with open_video(video) as container:
        for decoded in decode_frames(container):
            if limit is not None and len(frames) >= limit:
                break
            if decoded.index % step == 0:
                frames.append(decoded.bgr())
    return frames


def surroundings(frames: list[np.ndarray]) -> np.ndarray:
    """The canvas background: the scene without people (per-pixel median), enlarged and blurred."""
    empty = np.median(np.stack(frames[:: max(1, len(frames) // 25)]), axis=0).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(empty, CANVAS), (0, 0), 6)


def far_view(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The frame shrunk by SCALE and pasted into the background at OFFSET."""
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (round(width * SCALE), round(height * SCALE)), interpolation=cv2.INTER_AREA)
    canvas = background.copy()
    x, y = OFFSET
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def to_canvas(boxes: np.ndarray) -> np.ndarray:
    """Full-size frame boxes (x1, y1, x2, y2) as canvas pixels."""
    x, y = OFFSET
    return boxes * SCALE + np.array([x, y, x, y], np.float32)


def scene_zone() -> list[list[int]]:
    """The pasted scene's outline in canvas pixels (a zone an installer would draw)."""
    x, y = OFFSET
    width, height = round(768 * SCALE), round(576 * SCALE)
    return [[x, y], [x + width, y], [x + width, y + height], [x, y + height]]


def write_clip(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """The frames as an MPEG-4 file (what `gateway run` and `gateway replay` read)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height = CANVAS
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 8_000_000
        stream.gop_size = fps
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def match(reference: np.ndarray, found: np.ndarray, min_iou: float) -> int:
    """How many reference boxes a found box matches one-to-one (greedy by IoU)."""
    if len(reference) == 0 or len(found) == 0:
        return 0
    x1 = np.maximum(reference[:, None, 0], found[None, :, 0])
    y1 = np.maximum(reference[:, None, 1], found[None, :, 1])
    x2 = np.minimum(reference[:, None, 2], found[None, :, 2])
    y2 = np.minimum(reference[:, None, 3], found[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_r = (reference[:, 2] - reference[:, 0]) * (reference[:, 3] - reference[:, 1])
    area_f = (found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1])
    iou = inter / np.maximum(area_r[:, None] + area_f[None, :] - inter, 1e-6)
    pairs = sorted(zip(*np.nonzero(iou >= min_iou), strict=True), key=lambda pair: -iou[pair])
    used_r: set[int] = set()
    used_f: set[int] = set()
    for r, f in pairs:
        if r not in used_r and f not in used_f:
            used_r.add(r)
            used_f.add(f)
    return len(used_r)
