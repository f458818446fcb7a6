"""Tiled detection's overhead: the tiled path against bare `session.run` × the same tiles.

The frame is the far view of the tests (vtest.avi at half size in a 1920×1080 picture,
tests/far_view.py), cut by `tiling: auto` with min_person_px 30 over the whole frame. The bare
side runs the detector's own session on pre-made input tensors, one per run of the plan (the
tiles and the whole-frame pass), so what the ratio shows is everything tiling adds: cropping,
letterboxing each tile, decoding each output, mapping boxes back and merging across tiles.
Alternating rounds, best of each side (a load spike cannot decide the ratio). Target ≤ 1.10.

    python bench/bench_tiling.py [--frames 20] [--rounds 3] [--region frame|zones]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from detectors import DetectorSettings, create_detector  # noqa: E402
from detectors.onnx import OnnxDetector  # noqa: E402
from detectors.tiling import detect_tiled  # noqa: E402
from far_view import CANVAS, far_view, surroundings, vtest_frames  # noqa: E402
from gateway.camera.tiling import plan_tiling  # noqa: E402
from gateway.config.tiling import TilingSection  # noqa: E402

SHARED = REPO.parent / "shared"


def main(args: argparse.Namespace) -> int:
    detector = create_detector(DetectorSettings(model=args.model, threads=args.threads))
    assert isinstance(detector, OnnxDetector)
    frames = vtest_frames(args.video, step=max(1, 795 // args.frames))[: args.frames]
    background = surroundings(frames)
    pictures = [far_view(frame, background) for frame in frames]
    section = TilingSection(mode="auto", min_person_px=30, region="frame")
    plan = plan_tiling(section, CANVAS, None, detector.input_size).plan
    assert plan is not None
    session, name = detector._session, detector._input_name  # the detector's own session and options
    assert session is not None
    width, height = detector.input_size
    tensors = [np.random.default_rng(i).uniform(0, 255, (1, 3, height, width)).astype(np.float32)
               for i in range(plan.inferences)]

    def bare() -> float:
        began = time.perf_counter()
        for _ in pictures:
            for tensor in tensors:
                session.run(None, {name: tensor})
        return (time.perf_counter() - began) / len(pictures)

    def tiled() -> float:
        began = time.perf_counter()
        for picture in pictures:
            detect_tiled(detector, picture, plan)
        return (time.perf_counter() - began) / len(pictures)

    bare(), tiled()  # warm caches and thread pools
    bare_rounds, tiled_rounds = [], []
    for _ in range(args.rounds):
        bare_rounds.append(bare())
        tiled_rounds.append(tiled())
    best_bare, best_tiled = min(bare_rounds), min(tiled_rounds)
    print(f"tiling benchmark: {args.model.name} {width}x{height}, {args.threads} threads, far view "
          f"{CANVAS[0]}x{CANVAS[1]}, {len(pictures)} frames, best of {args.rounds} alternating rounds")
    print(f"  plan                         : {plan.grid[0]}x{plan.grid[1]} tiles of "
          f"{plan.tiles[0].width}x{plan.tiles[0].height} + whole frame = {plan.inferences} runs per frame")
    print(f"  bare session.run x {plan.inferences:<2}       : {best_bare * 1000:7.1f} ms per frame")
    print(f"  tiled detection (end to end) : {best_tiled * 1000:7.1f} ms per frame")
    ratio = best_tiled / best_bare
    print(f"  ratio tiled / bare           : {ratio:7.3f}   (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "vtest.avi")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    sys.exit(main(parser.parse_args()))
