"""How tall must a person be at the model input to be found? The measurement behind `tiling: auto`.

Reference: the detector's people on vtest.avi's full-size frames. Each frame is then shrunk by a
factor and pasted into a grey canvas of the original size, so the model input scale stays the
same and only the people get smaller. A reference person counts as found when a detection
overlaps its shrunk box (IoU ≥ 0.5). Recall is printed per bin of the person's height *at the
model input*; `detectors.tiling.RELIABLE_INPUT_PX` is the smallest height with recall ≥ 0.85.

    python bench/bench_person_size.py [--model ../shared/models/yolox_nano.onnx] [--step 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors import DetectorSettings, create_detector  # noqa: E402
from gateway.video.decode import decode_frames, open_video  # noqa: E402

SCALES = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0)
BINS = (8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 64, 128)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` with every box of `b` (x1, y1, x2, y2)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)


def main(args: argparse.Namespace) -> int:
    detector = create_detector(DetectorSettings(model=args.model, threads=2))
    found = np.zeros(len(BINS) + 1)
    total = np.zeros(len(BINS) + 1)
    with open_video(args.video) as container:
        for decoded in decode_frames(container):
            if decoded.index % args.step:
                continue
            frame = decoded.bgr()
            height, width = frame.shape[:2]
            input_scale = min(detector.input_size[0] / width, detector.input_size[1] / height)
            reference = detector.detect(frame).boxes
            for scale in SCALES:
                canvas = np.full_like(frame, 114)
                small = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
                canvas[:small.shape[0], :small.shape[1]] = small
                expected = reference * scale
                seen = detector.detect(canvas).boxes
                matched = (iou_matrix(expected, seen).max(axis=1) >= 0.5) if len(seen) \
                    else np.zeros(len(expected), bool)
                at_input = (expected[:, 3] - expected[:, 1]) * input_scale
                bins = np.searchsorted(BINS, at_input)
                np.add.at(total, bins, 1)
                np.add.at(found, bins, matched)
    print(f"person height at the model input ({args.model.name}, {detector.input_size[0]}x{detector.input_size[1]}) "
          f"-> recall against the full-size reference ({args.video.name}, every {args.step}th frame)")
    edges = (0, *BINS)
    for index, (count, hits) in enumerate(zip(total, found, strict=True)):
        if count:
            upper = f"{BINS[index]:>4}" if index < len(BINS) else " inf"
            print(f"  {edges[index]:>4}-{upper} px : recall {hits / count:5.2f}  ({int(count)} people)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO.parent / "shared" / "models" / "yolox_nano.onnx")
    parser.add_argument("--video", type=Path, default=REPO.parent / "shared" / "data" / "vtest.avi")
    parser.add_argument("--step", type=int, default=10)
    sys.exit(main(parser.parse_args()))
