"""`gateway calibrate count`: fit a camera's counting model from a recording and a few annotated frames.

    gateway calibrate count -c CONFIG --camera ID --source VIDEO --points POINTS.json --out MODEL.json

POINTS.json holds one point per visible person (a click on the head; the body centre works too),
in pixels of VIDEO's frames, for at least 5 frames: `{"<0-based frame index in VIDEO>": [[x, y],
...], ...}`. The recording goes through the camera's own analytics (masks, the detector) at the
camera's analysis rate; the counting background is warmed from the recording's first minutes
before the first frame (an annotated frame 0 has no past: it is compared with a background made
of the frames after it) and then follows the footage as it would live. The fit prints its
cross-validated error and writes MODEL.json (see gateway.analytics.counting.model for the format).

Every input problem is a `CalibrationError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from detectors import Detector
from gateway.analytics import CameraAnalytics
from gateway.analytics.counting import (
    AnnotatedFrame,
    BackgroundSettings,
    CountingModel,
    CrossValidation,
    CrowdCounter,
    TrainingError,
    fit_model,
)
from gateway.analytics.counting.training import MIN_FRAMES
from gateway.calibration.files import camera_perspective, outside_masks, perspective_problem, save_model, warmup_frames
from gateway.calibration.live import PERSPECTIVE_MIN_SCORE
from gateway.config.models import Camera, GatewayConfig
from gateway.video.decode import decode_frames, frame_rate, open_video
from gateway.video.pacing import AnalysisPacer

log = logging.getLogger(__name__)



class CalibrationError(Exception):
    """The inputs cannot give a model; the message names the file and the problem."""


@dataclass(frozen=True)
class CalibrationReport:
    model: CountingModel
    validation: CrossValidation
    frames: int
    people: int
    masked_points: int
    frame_size: tuple[int, int]


def read_points(path: Path) -> dict[int, np.ndarray]:
    """POINTS.json as {frame index: (N, 2) points}; raises CalibrationError naming the problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: points file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CalibrationError(f"{path}: cannot read: {error}") from None
    except json.JSONDecodeError as error:
        raise CalibrationError(f"{path}: not JSON: {error.msg} at line {error.lineno}") from None
    if not isinstance(data, dict):
        raise CalibrationError(f'{path}: expected an object {{"<frame index>": [[x, y], ...], ...}}')
    points: dict[int, np.ndarray] = {}
    for key, value in data.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise CalibrationError(f"{path}: {key!r} is not a frame index (a 0-based whole number)")
        if not isinstance(value, list) or not all(_is_point(p) for p in value):
            raise CalibrationError(f"{path}: frame {key}: expected a list of [x, y] pixel points")
        points[int(key)] = np.asarray(value, dtype=np.float64).reshape(-1, 2)
    if len(points) < MIN_FRAMES:
        raise CalibrationError(f"{path}: {len(points)} annotated frame{'s' if len(points) != 1 else ''}; "
                               f"a counting model needs at least {MIN_FRAMES}: annotate more frames")
    return dict(sorted(points.items()))


def _is_point(value) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def check_inside(points: dict[int, np.ndarray], frame_size: tuple[int, int], path: Path) -> None:
    width, height = frame_size
    for index, frame_points in points.items():
        outside = (frame_points[:, 0] < 0) | (frame_points[:, 0] > width) | \
                  (frame_points[:, 1] < 0) | (frame_points[:, 1] > height)
        if outside.any():
            x, y = frame_points[np.flatnonzero(outside)[0]]
            raise CalibrationError(f"{path}: frame {index}: point [{x:g}, {y:g}] lies outside the "
                                   f"{width}x{height} frame ({int(outside.sum())} such point(s) in this frame)")


def calibrate(config: GatewayConfig, camera_id: str, source: Path, points_path: Path, out: Path,
              detector: Detector, folds: int = 5) -> CalibrationReport:
    """Fit and write a counting model (see the module docstring)."""
    camera = config.camera(camera_id)
    points = read_points(points_path)
    frames, boxes, frame_size, analytics, scene = _annotated_features(camera, config, source, points, points_path,
                                                                      detector)
    perspective = camera_perspective(camera, frame_size, boxes)
    if perspective is None:
        raise CalibrationError(f"{source}: {perspective_problem(camera, boxes)}")
    annotated, masked = [], 0
    for index, features in frames.items():
        keep = outside_masks(points[index], analytics.masks)
        masked += int((~keep).sum())
        annotated.append(AnnotatedFrame(features, points[index][keep], label=f"frame {index}"))
    settings = BackgroundSettings()  # what a counter without a model learns with
    training = {"source": Path(source).name, "fitted_at": datetime.now().astimezone().isoformat(timespec="seconds")}
    try:
        result = fit_model(annotated, camera.id, frame_size, perspective, settings, folds=folds, training=training,
                           scene=scene)
    except TrainingError as error:
        raise CalibrationError(f"{points_path}: {error}") from None
    save_model(out, result.model)
    people = sum(len(frame.points) for frame in annotated)
    return CalibrationReport(result.model, result.validation, len(annotated), people, masked, frame_size)


def _annotated_features(camera: Camera, config: GatewayConfig, source: Path, points: dict[int, np.ndarray],
                        points_path: Path, detector: Detector):
    """Run the recording through the camera's analytics up to the last annotated frame: the raw
    counting features of every annotated frame, the confident person boxes seen on the way, and
    the empty scene (background) the features were last taken against, kept with the model."""
    last = max(points)
    features: dict[int, np.ndarray] = {}
    confident: list[np.ndarray] = []
    analytics: CameraAnalytics | None = None
    counter: CrowdCounter | None = None
    decoded_frames = 0
    with open_video(source) as container:
        pacer = AnalysisPacer(camera.fps, frame_rate(container))
        for decoded in decode_frames(container):
            decoded_frames += 1
            annotated = decoded.index in points
            if not (pacer.due(decoded.t) or annotated):
                continue
            image = decoded.bgr()
            if analytics is None or counter is None:
                analytics, counter = _warmed_analytics(camera, config, (image.shape[1], image.shape[0]), source)
                check_inside(points, analytics.frame_size, points_path)
            masked = analytics.prepare(image)
            detections = detector.detect(masked)
            boxes, scores = analytics.unmasked(detections)
            confident.append(boxes[scores >= PERSPECTIVE_MIN_SCORE])  # half-hidden people look shorter
            counter.observe(masked, boxes, decoded.t)
            if annotated and counter.last_features is not None:
                features[decoded.index] = counter.last_features
            if decoded.index >= last:
                break
    if analytics is None:
        raise CalibrationError(f"{source}: no video frame could be decoded")
    missing = [index for index in points if index not in features]
    if missing:
        raise CalibrationError(f"{points_path}: frame {missing[0]} is past the end of {source} "
                               f"({decoded_frames} frames, numbered 0-{decoded_frames - 1})")
    assert counter is not None  # built with the analytics
    return features, np.concatenate(confident), analytics.frame_size, analytics, counter.extractor.background.state()


def _warmed_analytics(camera: Camera, config: GatewayConfig, frame_size: tuple[int, int],
                      source: Path) -> tuple[CameraAnalytics, CrowdCounter]:
    """The camera's analytics with a counter (no model) whose background is warmed from `source`."""
    analytics = CameraAnalytics(camera, config.gateway, frame_size, counting_features=True)
    counter = analytics.counter
    assert counter is not None  # counting_features=True
    extractor = counter.extractor
    extractor.background.warm_from(warmup_frames(
        source, extractor.background.settings, lambda image: extractor.working_gray(analytics.prepare(image))))
    return analytics, counter


def describe(report: CalibrationReport, camera_id: str, source: Path, out: Path) -> str:
    """What `gateway calibrate count` prints."""
    cv = report.validation
    perspective = report.model.perspective
    width, height = report.frame_size
    heights = perspective.to_dict(height)
    origin = {"calibration": "the ground-plane calibration", "detector": "the detector's person boxes",
              "ramp": "counting.person_height_px"}[perspective.source]
    lines = [
        f"camera {camera_id}: {report.frames} annotated frames of {source} ({width}x{height}), "
        f"{report.people} people marked" + (f" ({report.masked_points} in private areas ignored)"
                                           if report.masked_points else ""),
        f"perspective from {origin}: a person is {heights['height_px_top']:g} px tall at the top, "
        f"{heights['height_px_bottom']:g} px at the bottom",
        f"cross-validated ({cv.folds}-fold): MAE {cv.mae:.2f} people, relative error {cv.relative_error:.1%}, "
        f"{cv.within_20:.0%} of frames within ±20 %",
        f"wrote {out}",
    ]
    return "\n".join(lines)
