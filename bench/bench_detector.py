"""Detector path benchmark: gateway replay throughput vs bare onnxruntime `session.run`.

Both sides use the same model, input size and thread count (the detector's own session
options). This machine's speed drifts by up to 2x within a minute, so whole-file rounds compare
different machines. Instead the first `--segment` frames of the video are cut into a clip, and
the two sides run on it in short pairs (bare then replay, replay then bare, ...), a few seconds
each; every pair gives a ratio measured under the same conditions, and the figure is the median
of the pair ratios. The ratio is the target:
replay (decode + masks + letterbox + inference + decode/NMS + tracking + rules + JSON output)
at >= 0.90 of bare inference.

    python bench/bench_detector.py [-c config/demo.yaml] [--segment 200] [--pairs 9]
    gateway bench detector [...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.onnx import cpu_session_options  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.config.models import FileSource  # noqa: E402
from detectors import create_detector  # noqa: E402
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


def cut_clip(source: Path, frames: int, out: Path) -> int:
    """The first `frames` video packets of `source` copied (not re-encoded) into `out`."""
    with av.open(str(source)) as container, av.open(str(out), "w") as clip:
        stream = container.streams.video[0]
        copy = clip.add_stream_from_template(stream)
        copied = 0
        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copy
            clip.mux(packet)
            copied += 1
            if copied >= frames:
                break
    return copied


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    camera = config.camera(args.camera) if args.camera else config.cameras[0]
    source = args.source or (camera.source.file if isinstance(camera.source, FileSource) else None)
    if source is None:
        print("bench detector: give --source (the camera is not a file source)", file=sys.stderr)
        return 1
    detector = create_detector(config.detector.settings())
    threads = config.detector.threads
    width, height = detector.input_size

    pairs: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / f"clip{source.suffix}"
        frames = cut_clip(source, args.segment, clip)
        with open_video(clip) as container:
            clip_fps = frame_rate(container) or 10.0

        def replay_fps() -> float:
            stats = replay(config, camera.id, clip, detector, fps=clip_fps,
                           counts_out=Path(scratch) / "counts.jsonl", events_out=Path(scratch) / "events.jsonl")
            return stats.analysed_fps

        replay_fps(), bare_session_fps(config.detector.model, threads, 20)  # warm up both sides
        for index in range(args.pairs):
            if index % 2 == 0:
                bare = bare_session_fps(config.detector.model, threads, frames)
                pairs.append((bare, replay_fps()))
            else:
                end_to_end = replay_fps()
                pairs.append((bare_session_fps(config.detector.model, threads, frames), end_to_end))
    ratios = sorted(end_to_end / bare for bare, end_to_end in pairs)
    median = ratios[len(ratios) // 2]

    print(f"detector benchmark: {config.detector.model.name} {width}x{height}, {threads} threads, "
          f"{source.name} (first {frames} frames), {args.pairs} interleaved pairs")
    print(f"  bare onnxruntime session.run : {_rounds([bare for bare, _ in pairs])} frames/s")
    print(f"  gateway replay (end to end)  : {_rounds([end for _, end in pairs])} frames/s")
    print(f"  ratio replay / bare per pair : {_rounds(ratios, 3)}")
    print(f"  ratio replay / bare (median) : {median:7.3f}   (target >= 0.90: "
          f"{'met' if median >= 0.90 else 'NOT met'})")
    return 0


def _rounds(values: list[float], digits: int = 1) -> str:
    return ", ".join(f"{value:.{digits}f}" for value in values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, default=REPO / "config" / "demo.yaml")
    parser.add_argument("--camera")
    parser.add_argument("--source", type=Path)
    parser.add_argument("--segment", type=int, default=200, help="frames per run (the clip's length)")
    parser.add_argument("--pairs", type=int, default=9, help="interleaved bare/replay pairs")
    sys.exit(main(parser.parse_args()))
