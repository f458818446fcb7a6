"""Detector path benchmark: gateway replay throughput vs bare onnxruntime `session.run`.

Both sides use the same model, input size and thread count (the detector's own session
options), measured in the same run in alternating rounds (bare, replay, bare, replay, ...);
each side's figure is its best round, so a passing load spike on a shared machine cannot
decide the ratio. The ratio is the target:
replay (decode + masks + letterbox + inference + decode/NMS + tracking + rules + JSON output)
at ≥ 0.90 of bare inference.

    python bench/bench_detector.py [-c config/demo.yaml] [--frames N]
    gateway bench detector [...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.onnx import cpu_session_options  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.config.models import FileSource  # noqa: E402
from gateway.detection import load_detector  # noqa: E402
from gateway.replay import replay  # noqa: E402
from gateway.video.decode import frame_rate, open_video  # noqa: E402


def bare_session_fps(model: Path, threads: int, frames: int) -> float:
    """session.run alone on one pre-made input tensor, with the detector's session options."""
    session = ort.InferenceSession(str(model), cpu_session_options(threads),
                                   providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [dim if isinstance(dim, int) else 1 for dim in spec.shape]
    tensor = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    for _ in range(5):
        session.run(None, {spec.name: tensor})
    began = time.perf_counter()
    for _ in range(frames):
        session.run(None, {spec.name: tensor})
    return frames / (time.perf_counter() - began)


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    camera = config.camera(args.camera) if args.camera else config.cameras[0]
    source = args.source or (camera.source.file if isinstance(camera.source, FileSource) else None)
    if source is None:
        print("bench detector: give --source (the camera is not a file source)", file=sys.stderr)
        return 1
    with open_video(source) as container:
        total = container.streams.video[0].frames or 0
        source_fps = frame_rate(container) or 10.0
    frames = args.frames or total or 300
    detector = load_detector(config.detector)
    threads = config.detector.threads
    width, height = detector.input_size

    bare_rounds, replay_rounds = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            bare_rounds.append(bare_session_fps(config.detector.model, threads, frames))
            stats = replay(config, camera.id, source, detector, fps=source_fps,
                           counts_out=Path(scratch) / "counts.jsonl",
                           events_out=Path(scratch) / "events.jsonl")
            replay_rounds.append(stats.analysed_fps)
    bare, end_to_end = max(bare_rounds), max(replay_rounds)
    ratio = end_to_end / bare

    print(f"detector benchmark: {config.detector.model.name} {width}x{height}, {threads} threads, "
          f"{source.name} ({stats.frames_analysed} frames), best of {args.rounds} alternating rounds")
    print(f"  bare onnxruntime session.run : {bare:7.2f} frames/s  (rounds: {_rounds(bare_rounds)})")
    print(f"  gateway replay (end to end)  : {end_to_end:7.2f} frames/s  (rounds: {_rounds(replay_rounds)})")
    print(f"  ratio replay / bare          : {ratio:7.3f}   (target >= 0.90: "
          f"{'met' if ratio >= 0.90 else 'NOT met'})")
    return 0


def _rounds(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, default=REPO / "config" / "demo.yaml")
    parser.add_argument("--camera")
    parser.add_argument("--source", type=Path)
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    sys.exit(main(parser.parse_args()))
