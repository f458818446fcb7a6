"""Letterboxing: fit a BGR frame into the network input without distorting people.

Two conventions exist because the two model families were trained differently, and feeding a
model the other family's input costs accuracy silently:

- YOLOX: image in the top-left corner, padding bottom/right, BGR, pixel values 0..255.
- Ultralytics: image centred, padding split on both sides, RGB, pixel values 0..1.

Both pad with grey 114. The tensor is written into one pre-allocated NCHW buffer: only the image
region changes from frame to frame, the padding is refilled only when the frame size changes,
which keeps pre-processing well under a millisecond beside a 25+ ms inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class Convention:
    """How a model family expects its input laid out."""

    name: str
    centred: bool
    rgb: bool
    scale: float


YOLOX = Convention("yolox", centred=False, rgb=False, scale=1.0)
ULTRALYTICS = Convention("ultralytics", centred=True, rgb=True, scale=1.0 / 255.0)


@dataclass(frozen=True, slots=True)
class Transform:
    """Where the source frame landed in the input: input = source * scale + pad."""

    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Source-pixel x1,y1,x2,y2 boxes in input pixels (the inverse of `to_source`)."""
        out = boxes.astype(np.float32, copy=True)
        out *= self.scale
        out[:, 0::2] += self.pad_x
        out[:, 1::2] += self.pad_y
        return out

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Input-pixel x1,y1,x2,y2 boxes in source pixels, clipped to the frame."""
        out = boxes.astype(np.float32, copy=True)
        out[:, 0::2] -= self.pad_x
        out[:, 1::2] -= self.pad_y
        out /= self.scale
        np.clip(out[:, 0::2], 0, self.width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.height, out=out[:, 1::2])
        return out


def fit(width: int, height: int, input_size: tuple[int, int], centred: bool) -> tuple[Transform, int, int]:
    """The transform for a width x height frame, and the size the frame is resized to."""
    in_w, in_h = input_size
    scale = min(in_w / width, in_h / height)
    new_w = min(in_w, max(1, round(width * scale)))
    new_h = min(in_h, max(1, round(height * scale)))
    pad_x = (in_w - new_w) // 2 if centred else 0
    pad_y = (in_h - new_h) // 2 if centred else 0
    return Transform(scale, pad_x, pad_y, width, height), new_w, new_h


class Letterboxer:
    """Turns frames into input tensors for one network size and convention.

    Not re-entrant: the returned tensor is the same buffer every call (the caller runs the model
    on it before the next frame).
    """

    def __init__(self, input_size: tuple[int, int], convention: Convention) -> None:
        self.input_size = input_size
        self.convention = convention
        width, height = input_size
        self._tensor = np.empty((1, 3, height, width), np.float32)
        self._frame_shape: tuple[int, int] | None = None
        self._transform: Transform | None = None
        self._resized_size = (width, height)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, Transform]:
        """The NCHW float32 input tensor for a BGR uint8 frame, and its transform."""
        height, width = frame.shape[:2]
        if self._frame_shape != (height, width):
            self._new_geometry(width, height)
        transform = self._transform
        # _frame_shape starts as None, so the first call always runs _new_geometry, which sets it.
        assert transform is not None
        new_w, new_h = self._resized_size
        resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        # Splitting into contiguous planes first is twice as fast as one strided HWC->CHW copy.
        planes = cv2.split(resized)
        if self.convention.rgb:
            planes = planes[::-1]
        region = self._tensor[0, :, transform.pad_y : transform.pad_y + new_h,
                              transform.pad_x : transform.pad_x + new_w]
        for plane, out in zip(planes, region, strict=True):  # a BGR frame: 3 planes, 3 channels
            if self.convention.scale == 1.0:
                np.copyto(out, plane)
            else:
                np.multiply(plane, np.float32(self.convention.scale), out=out)
        return self._tensor, transform

    def _new_geometry(self, width: int, height: int) -> None:
        """Recompute the transform and refill the padding for a new frame size."""
        transform, new_w, new_h = fit(width, height, self.input_size, self.convention.centred)
        self._tensor.fill(PAD_VALUE * self.convention.scale)
        self._frame_shape = (height, width)
        self._transform = transform
        self._resized_size = (new_w, new_h)
