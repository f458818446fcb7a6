"""Counting models on disk, and a counting background warmed from a recording: the I/O around
the pure `gateway.analytics.counting` package.

- `load_model(path, camera_id, frame_size)`: read and check a model file; every problem is a
  `ModelFileError` naming the file and what is wrong (missing, not a regular file, too big,
  unreadable, not JSON, not a counting model, values out of range, another camera, another
  frame size). Nothing a file holds gets past it as an exception of another kind.
- `save_model(path, model)`: write it atomically (`write_atomically`: a crash never leaves half
  a file).
- `warmup_frames(source, ...)`: frames spread over the first minutes of a recording, for a
  background that exists from the recording's first frame (replay, calibration).
- `camera_perspective(camera, frame_size, boxes)`: how tall people are at each row of a camera,
  from its ground-plane calibration, else the detector's boxes, else its configured ramp.
- `outside_masks(points, masks)`: annotated people outside the private areas (the only ones a
  model can count).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from gateway.analytics.counting import BackgroundSettings, CountingModel, ModelFormatError, Perspective
from gateway.analytics.counting.perspective import MIN_BOXES, from_boxes, from_ground_plane, from_ramp
from gateway.analytics.geometry import GroundPlane, Region, ground_model
from gateway.config.models import Camera, GatewayConfig
from gateway.video.decode import decode_frames, open_video

log = logging.getLogger(__name__)

CANDIDATES_PER_SAMPLE = 4
"""Warm-up keeps this many candidate frames per background sample, so a recording shorter than
the warm-up span still gives samples spread over all of it."""


MAX_MODEL_BYTES = 1024 * 1024
"""A fitted model is a few kB (its training record included)."""


class ModelFileError(ValueError):
    """A counting model file cannot be used; the message names the file and the problem."""


def load_model(path: Path, camera_id: str, frame_size: tuple[int, int] | None = None) -> CountingModel:
    """The model in `path`, checked against the camera (and its frame size when given)."""
    text = read_model_text(Path(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: not a counting model (not JSON: {error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise ModelFileError(f"{path}: not a counting model (JSON nested too deeply)") from None
    except ValueError:  # an integer of thousands of digits (Python refuses to convert it)
        raise ModelFileError(f"{path}: not a counting model (a number too long to read)") from None
    try:
        model = CountingModel.from_dict(data)
        model.check_fits(camera_id, frame_size)
    except ModelFormatError as error:
        raise ModelFileError(f"{path}: {error}") from None
    except RecursionError:
        raise ModelFileError(f"{path}: not a counting model (nested too deeply)") from None
    return model


def read_model_text(path: Path) -> str:
    """The text of a model file. Refused, with the reason, before anything is read: a missing
    file, anything but a regular file (a FIFO would block a reload forever, /dev/zero never
    ends), a file over `MAX_MODEL_BYTES`; then text that is not UTF-8."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: counting model file not found") from None
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read the counting model: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ModelFileError(f"{path}: not a regular file (a directory, pipe or device): refused")
    if info.st_size > MAX_MODEL_BYTES:
        raise ModelFileError(f"{path}: the file is too big for a counting model ({info.st_size:,} bytes; "
                             f"models are a few kB, at most {MAX_MODEL_BYTES:,})")
    try:
        # O_NONBLOCK: had the file been swapped for a FIFO since the stat, opening it still returns.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ModelFileError(f"{path}: not a regular file (a directory, pipe or device): refused")
            raw = handle.read(MAX_MODEL_BYTES + 1)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read the counting model: {error.strerror}") from None
    if len(raw) > MAX_MODEL_BYTES:
        raise ModelFileError(f"{path}: the file is too big for a counting model (over {MAX_MODEL_BYTES:,} bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ModelFileError(f"{path}: not a counting model (not UTF-8 text, byte {error.start})") from None


def save_model(path: Path, model: CountingModel) -> None:
    """Write `model` to `path` atomically."""
    write_atomically(Path(path), (json.dumps(model.to_dict(), ensure_ascii=False, indent=1) + "\n").encode("utf-8"))


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so that a crash or power cut leaves the old file or the new one, never half
    of one: a temporary file in the same folder, synced, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def warmup_frames(source: Path, settings: BackgroundSettings,
                  shrink: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """`settings.warmup_samples` frames of a recording, `warmup_interval_s` apart from its start
    (spread evenly over the whole recording when it is shorter), each passed through `shrink`
    (e.g. mask and make the small grey counting picture). Raises VideoOpenError."""
    spacing = settings.warmup_interval_s / CANDIDATES_PER_SAMPLE
    limit = settings.warmup_s
    candidates: list[np.ndarray] = []
    next_t = 0.0
    with open_video(source) as container:
        for decoded in decode_frames(container):
            if decoded.t + 1e-6 < next_t:
                continue
            candidates.append(shrink(decoded.bgr()))
            next_t = decoded.t + spacing
            if decoded.t >= limit:
                break
    if not candidates:
        return []
    picks = np.linspace(0, len(candidates) - 1, min(settings.warmup_samples, len(candidates)))
    return [candidates[int(round(i))] for i in picks]


def camera_perspective(camera: Camera, frame_size: tuple[int, int], boxes: np.ndarray) -> Perspective | None:
    """The ground-plane calibration, else the detector's confident person boxes, else the
    configured `counting.person_height_px` ramp; None when none of them can tell."""
    ground = ground_model(camera, frame_size)
    if isinstance(ground, GroundPlane):
        perspective = from_ground_plane(ground.to_ground, frame_size)
        if perspective is not None:
            return perspective
    perspective = from_boxes(boxes, frame_size[1])
    if perspective is not None:
        return perspective
    ramp = camera.counting.person_height_px
    if ramp is None:
        return None
    scale = frame_size[1] / camera.resolution[1] if camera.resolution and camera.coordinates == "pixels" else 1.0
    return from_ramp(ramp[0] * scale, ramp[1] * scale, frame_size[1])


def perspective_problem(camera: Camera, boxes: np.ndarray) -> str:
    """Why `camera_perspective` found nothing, and what the installer can do about it."""
    return (f"cannot tell how tall people are at each row of camera {camera.id}: the detector saw {len(boxes)} "
            f"clear person boxes ({MIN_BOXES} spread over the picture are needed); set counting.person_height_px: "
            f"[top, bottom] for this camera (a standing person's height in pixels at the top and bottom row) "
            f"or a ground-plane calibration")


def outside_masks(points: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """bool per point: not inside a private area (those are never analysed, so never counted)."""
    keep = np.ones(len(points), bool)
    for mask in masks:
        keep &= ~Region(mask).contains(points)
    return keep


def model_file_problems(config: GatewayConfig) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every configured counting model that cannot be used (for `gateway check`): it must be a
    counting model of that camera, fitted on the camera's `resolution` when that is set."""
    for index, camera in enumerate(config.cameras):
        if camera.counting.model is None:
            continue
        try:
            load_model(camera.counting.model, camera.id, camera.resolution)
        except ModelFileError as error:
            yield ("cameras", index, "counting", "model"), str(error)
        except Exception as error:  # noqa: BLE001 - `check` reports a file, it does not crash on one
            yield ("cameras", index, "counting", "model"), (f"{camera.counting.model}: cannot be read as a counting "
                                                            f"model ({type(error).__name__})")
