"""The counting model on the Mall clip: its cost against the detector, and its accuracy.

Cost. A camera that counts with a model pays, per analysed frame, for the counter: shrinking
the frame to the small grey working picture, comparing it with the background (and learning,
at most once a second), pooling the features per cell and applying the model. Target: at most
10 % of one YOLOX-Nano inference (416x416, 2 threads, through the gateway's detector) on the
same 640x480 frames, measured in the same run. The two sides alternate in rounds over the same
frames (0.5 s apart in video time, the clip's 2 fps, so the background learns every other
frame as it would live) and each side's best round counts, as timeit does: on a shared machine
other processes slow the two-threaded detector more than the one-threaded counter.

Accuracy, the same protocol as tests/test_counting_mall.py but in-process: the clip goes through
the camera's analytics (masks, detector, tracker) with a counter keeping its background warm
from the clip's first minutes; a model is fitted on 20 annotated frames taken from video frames
0-399 and every frame of 400-799 is scored. The detector-only figures are the confirmed tracks
seen per frame, what `gateway replay` reports as `persons` with detector counting.

    python bench/bench_counting.py [--rounds 5] [--frames 40] [--model ../shared/models/yolox_nano.onnx]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors import DetectorSettings, create_detector  # noqa: E402
from gateway.analytics import CameraAnalytics  # noqa: E402
from gateway.analytics.counting import AnnotatedFrame, CrowdCounter, fit_model  # noqa: E402
from gateway.analytics.counting.perspective import from_boxes  # noqa: E402
from gateway.calibration.files import warmup_frames  # noqa: E402
from gateway.config.models import Camera, GatewaySection  # noqa: E402
from gateway.video.decode import decode_frames, open_video  # noqa: E402

SHARED = REPO.parent / "shared"
MALL = SHARED / "data" / "mall-train"
VIDEO = MALL / "mall_train_0001-0800_2fps.mp4"
GATEWAY = GatewaySection(id="bench", timezone="Asia/Shanghai")
CAMERA = Camera.model_validate({"id": "mall", "source": {"file": str(VIDEO)}, "fps": 2, "resolution": [640, 480]})
TRAIN = list(range(0, 400, 20))
TEST = range(400, 800)


def annotations() -> list[np.ndarray]:
    points = json.loads((MALL / "points.json").read_text())
    return [np.asarray(points[f"seq_{k + 1:06d}.jpg"]).reshape(-1, 2) for k in range(800)]


def run_clip(detector) -> tuple[list[np.ndarray], list[int], np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(features per frame, detector persons per frame, confident boxes, first frames, their boxes)."""
    analytics = CameraAnalytics(CAMERA, GATEWAY, (640, 480), counting_features=True)
    extractor = analytics.counter.extractor
    extractor.background.warm_from(warmup_frames(VIDEO, extractor.background.settings, extractor.working_gray))
    start = datetime(2026, 5, 1, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    features, persons, confident, sample, sample_boxes = [], [], [], [], []
    with open_video(VIDEO) as container:
        for decoded in decode_frames(container):
            image = decoded.bgr()
            detections = detector.detect(image)
            result = analytics.process(detections, decoded.t, start + timedelta(seconds=decoded.t), image,
                                       counting_image=image)
            features.append(analytics.counter.last_features)
            persons.append(result.detected)
            boxes, scores = analytics.unmasked(detections)
            confident.append(boxes[scores >= 0.5])
            if 400 <= decoded.index < 400 + ARGS.frames:
                sample.append(image)
                sample_boxes.append(boxes)
    return features, persons, np.concatenate(confident), sample, sample_boxes


def figures(values: np.ndarray, truth: np.ndarray) -> str:
    errors = values - truth
    return f"MAE {np.abs(errors).mean():.2f} people, {(np.abs(errors) <= 0.2 * truth).mean():.1%} within ±20 %"


def timed_rounds(detector, counter: CrowdCounter, frames: list[np.ndarray], boxes: list[np.ndarray],
                 rounds: int) -> tuple[float, float]:
    """Best round's mean ms per frame of (detector, counter), alternating rounds."""
    detect_best = count_best = float("inf")
    t = 1000.0
    for _ in range(rounds):
        began = time.perf_counter()
        for frame in frames:
            detector.detect(frame)
        detect_best = min(detect_best, (time.perf_counter() - began) * 1000 / len(frames))
        began = time.perf_counter()
        for frame, frame_boxes in zip(frames, boxes, strict=True):
            t += 0.5
            counter.observe(frame, frame_boxes, t)
        count_best = min(count_best, (time.perf_counter() - began) * 1000 / len(frames))
    return detect_best, count_best


def main() -> None:
    detector = create_detector(DetectorSettings(model=ARGS.model, threads=2, input_size=(416, 416)))
    truth = annotations()
    features, persons, confident, sample, sample_boxes = run_clip(detector)
    perspective = from_boxes(confident, 480)
    fitted = fit_model([AnnotatedFrame(features[k], truth[k]) for k in TRAIN], "mall", (640, 480), perspective)
    counter = CrowdCounter((640, 480), model=fitted.model)
    counts = np.array([len(points) for points in truth], float)
    estimated = np.array([counter.estimate(features[k]).total for k in TEST])
    cv = fitted.validation
    print(f"mall clip, model fitted on {len(TRAIN)} frames of 0-399 (cross-validated {cv.folds}-fold: "
          f"MAE {cv.mae:.2f}, relative error {cv.relative_error:.1%})")
    print(f"every frame of 400-799 ({len(TEST)} frames, mean {counts[400:].mean():.1f} people):")
    print(f"  counting model: {figures(estimated, counts[400:])}")
    print(f"  detector only:  {figures(np.array(persons[400:], float), counts[400:])}")
    counter.warm_from(sample[:1])
    detect_ms, count_ms = timed_rounds(detector, counter, sample, sample_boxes, ARGS.rounds)
    print(f"cost on 640x480 frames (best of {ARGS.rounds} alternating rounds of {len(sample)} frames):")
    print(f"  detector (yolox_nano 416, 2 threads) {detect_ms:.1f} ms/frame, counter {count_ms:.2f} ms/frame: "
          f"ratio {count_ms / detect_ms:.3f} (target <= 0.10)")
    detector.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=40, help="frames per timing round")
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    ARGS = parser.parse_args()
    main()
