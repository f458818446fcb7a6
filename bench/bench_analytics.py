"""Analytics cost per analysed frame (tracker + zones + rules + event messages), against the detector.

Synthetic scene on a 1920x1080 camera: a quarter of the people stand in groups of four (so
gatherings open and stay open), the rest walk at 0.5-1.5 m/s and bounce off the frame edges;
box heights follow a simple perspective; detections jitter by a pixel or two and 5 % are missed
each frame. Rules: crowd, gathering (zone and whole frame), growth, loitering and intrusion.
Snapshots are excluded (no frame is passed), payloads are built. Frames are analysed at 2 fps,
the live default.

The detector figure is measured in the same run: YOLOX-Nano at 416x416 with 2 threads through
the gateway's detector (letterbox + session.run + decode) on a vtest.avi frame, with the bare
session.run time alongside. Target: at 50 people the analytics take < 10 % of the detector.

Both figures are the best of `--repeats` blocks (each block's median), as timeit does: on a
shared machine other processes slow the two-threaded detector far more than the one-threaded
analytics, and the best block is the closest to the machine's own speed for both.

    python bench/bench_analytics.py [--frames 400] [--repeats 3] [--model ../shared/models/yolox_nano.onnx]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors import DetectorSettings, create_detector  # noqa: E402
from detectors.base import Detections  # noqa: E402
from detectors.onnx import open_session  # noqa: E402
from gateway.analytics import CameraAnalytics  # noqa: E402
from gateway.config.models import Camera, GatewaySection  # noqa: E402

SHARED = REPO.parent / "shared"
WIDTH, HEIGHT = 1920, 1080
FPS = 2.0
GATEWAY = GatewaySection(id="bench", timezone="Asia/Shanghai")
CAMERA = {
    "id": "bench",
    "name": "bench",
    "source": {"rtsp": "rtsp://127.0.0.1/bench"},
    "resolution": [WIDTH, HEIGHT],
    "masks": [{"name": "window", "polygon": [[0, 0], [200, 0], [200, 150], [0, 150]]}],
    "zones": [
        {"id": "plaza", "polygon": [[0, 300], [1400, 250], [1700, 1080], [0, 1080]]},
        {"id": "gate", "polygon": [[1400, 200], [1920, 200], [1920, 1080], [1500, 1080]]},
    ],
    "rules": [
        {"type": "crowd", "zone": "plaza", "min_people": 20},
        {"type": "gathering", "zone": "plaza", "min_people": 4, "radius_m": 2.0},
        {"type": "gathering", "min_people": 3, "radius_m": 1.5},
        {"type": "growth", "zone": "plaza", "delta": 10, "window_s": 20},
        {"type": "loitering", "zone": "gate", "for_s": 30},
        {"type": "intrusion", "zone": "gate", "min_people": 1},
    ],
}


class Crowd:
    """People to detect: standing groups and walkers, with perspective-scaled boxes."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.rng = rng
        groups = n // 4 // 4
        centres = rng.uniform([300, 400], [1500, 1000], (groups, 2))
        standing = np.repeat(centres, 4, axis=0) + rng.normal(0, 40, (groups * 4, 2))
        walking = rng.uniform([250, 250], [WIDTH - 50, HEIGHT - 10], (n - len(standing), 2))
        self.position = np.vstack([standing, walking])
        speed_m = np.r_[np.zeros(len(standing)), rng.uniform(0.5, 1.5, len(walking))]
        heading = rng.uniform(0, 2 * np.pi, n)
        self.velocity_m = speed_m[:, None] * np.c_[np.cos(heading), np.sin(heading)]

    def heights(self) -> np.ndarray:
        return 60 + 0.15 * self.position[:, 1]

    def step(self, dt: float) -> None:
        pixels_per_m = self.heights() / 1.7
        self.position += self.velocity_m * pixels_per_m[:, None] * dt
        for axis, low, high in ((0, 50, WIDTH - 50), (1, 250, HEIGHT - 5)):
            out = (self.position[:, axis] < low) | (self.position[:, axis] > high)
            self.velocity_m[out, axis] *= -1
            self.position[:, axis] = np.clip(self.position[:, axis], low, high)

    def detections(self) -> Detections:
        seen = self.rng.random(len(self.position)) > 0.05
        x, y = self.position[seen].T
        h = self.heights()[seen]
        boxes = np.c_[x - 0.2 * h, y - h, x + 0.2 * h, y] + self.rng.normal(0, 1.5, (len(x), 4))
        scores = self.rng.uniform(0.35, 0.95, len(x))
        return Detections(boxes.astype(np.float32), scores.astype(np.float32), np.zeros(len(x), np.int32))


def analytics_ms(n: int, frames: int) -> tuple[float, int]:
    """Median ms per analysed frame, and the number of alert messages produced."""
    rng = np.random.default_rng(n)
    crowd = Crowd(n, rng)
    analytics = CameraAnalytics(Camera.model_validate(CAMERA), GATEWAY, (WIDTH, HEIGHT))
    start = datetime(2024, 5, 1, 12, tzinfo=ZoneInfo("Asia/Shanghai"))
    samples, messages = [], 0
    for index in range(frames):
        t = index / FPS
        detections = crowd.detections()
        began = time.perf_counter()
        result = analytics.process(detections, t, start + timedelta(seconds=t))
        samples.append(time.perf_counter() - began)
        messages += len(result.events)
        crowd.step(1 / FPS)
    return statistics.median(samples[20:]) * 1000, messages


def detector_ms(model: Path, runs: int, repeats: int) -> tuple[float, float]:
    """Best block median of (detect, bare session.run) ms on a vtest.avi frame."""
    capture = cv2.VideoCapture(str(SHARED / "data" / "vtest.avi"))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit("cannot read ../shared/data/vtest.avi")
    detector = create_detector(DetectorSettings(model=model, threads=2, input_size=(416, 416)))
    session = open_session(model, 2)  # the bare baseline: session.run on an input already made
    feed = {session.get_inputs()[0].name: np.full((1, 3, 416, 416), 114.0, np.float32)}
    detect, inference = [], []
    for _ in range(repeats):
        block, block_inference = [], []
        for _ in range(runs):
            began = time.perf_counter()
            detector.detect(frame)
            block.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            session.run(None, feed)
            block_inference.append((time.perf_counter() - began) * 1000)
        detect.append(statistics.median(block))
        inference.append(statistics.median(block_inference))
    detector.close()
    return min(detect), min(inference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    args = parser.parse_args()
    detect, session_run = detector_ms(args.model, 30, args.repeats)
    print(f"detector (yolox_nano 416, 2 threads): detect {detect:.1f} ms/frame, session.run {session_run:.1f} ms")
    print(f"{'people':>6}  {'analytics ms/frame':>18}  {'/ detect':>8}  {'/ session.run':>13}  messages")
    for n in (10, 50, 200):
        runs = [analytics_ms(n, args.frames) for _ in range(args.repeats)]
        ms, messages = min(ms for ms, _ in runs), runs[0][1]
        print(f"{n:>6}  {ms:>18.2f}  {ms / detect:>8.1%}  {ms / session_run:>13.1%}  {messages:>8}")
    print("target: at 50 people < 10 % of the detector")


if __name__ == "__main__":
    main()
