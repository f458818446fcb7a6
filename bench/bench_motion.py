"""Motion gating benchmark: inference calls with the gate vs always-on, and no missed entry.

The clip is built from vtest.avi so that the scene is static for a long stretch and then a
person walks into the analysed zone:

1. `--static-s` seconds of the empty scene (a background plate: the per-pixel median of the
   video, so nobody is in it) with fresh sensor noise on every frame;
2. the real video from its start. The zone is the lawn at the lower left: people walk across
   the rest of the scene (masked out of the gate) and a couple walks onto the lawn ~54 s in.

The clip is encoded with x264 (so compression flicker is part of the test) and decoded with
the gateway's decoder, paced at the analysis fps. An oracle (YOLOX-Nano, the test model) runs
on every analysed frame: that is the always-on pipeline. The gated pipeline runs it only when
the gate passes and otherwise keeps its last answer. Reported: calls (always-on vs gated,
overall and on the static stretch), the first frame with a person in the zone (it must be
passed), and how many analysed frames the gated pipeline saw a different zone count.

    python bench/bench_motion.py [--fps 2] [--sensitivity 0.5] [--max-skip-s 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.video.decode import decode_frames, open_video  # noqa: E402
from gateway.video.motion import MotionGate, region_mask  # noqa: E402
from gateway.video.pacing import AnalysisPacer  # noqa: E402

VTEST = REPO.parent / "shared" / "data" / "vtest.avi"
MODEL = REPO.parent / "shared" / "models" / "yolox_nano.onnx"
ZONE = np.array([[0, 300], [300, 350], [420, 576], [0, 576]], np.int32)
"""The lawn at the lower left (pixels of the 768x576 frame); empty until a couple walks in
from the bottom edge at ~53 s of the real video."""


# --------------------------------------------------------------------------- the clip


def build_clip(static_s: float, real_frames: int, noise: float, out: Path) -> Path:
    if out.exists():
        return out
    container = open_video(VTEST)
    frames = [decoded.bgr() for decoded in decode_frames(container)]
    container.close()
    plate = np.median(np.stack(frames[::8]), axis=0).astype(np.uint8)
    rng = np.random.default_rng(7)
    height, width = plate.shape[:2]
    encoder = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
         "-s", f"{width}x{height}", "-r", "10", "-i", "-", "-c:v", "libx264", "-preset", "veryfast",
         "-bf", "0", "-g", "20", "-pix_fmt", "yuv420p", "-f", "matroska", str(out)],
        stdin=subprocess.PIPE)
    assert encoder.stdin is not None
    for _ in range(int(static_s * 10)):
        noisy = plate.astype(np.float32) + rng.normal(0, noise, plate.shape)
        encoder.stdin.write(np.clip(noisy, 0, 255).astype(np.uint8).tobytes())
    for frame in frames[:real_frames]:
        encoder.stdin.write(frame.tobytes())
    encoder.stdin.close()
    if encoder.wait() != 0:
        raise SystemExit("ffmpeg failed to encode the benchmark clip")
    return out


# --------------------------------------------------------------------------- the oracle


class YoloxPersons:
    """Person boxes from YOLOX-Nano (raw grid output), the same model the tests use.

    Kept minimal and local so the benchmark measures the gate, not the detector package."""

    def __init__(self, model: Path, size: int = 416, threshold: float = 0.3):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.size, self.threshold = size, threshold
        grids, strides = [], []
        for stride in (8, 16, 32):
            cells = size // stride
            ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
            grids.append(np.stack([xs, ys], -1).reshape(-1, 2))
            strides.append(np.full((cells * cells, 1), stride))
        self.grid = np.concatenate(grids).astype(np.float32)
        self.stride = np.concatenate(strides).astype(np.float32)
        self.calls = 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        height, width = image.shape[:2]
        scale = min(self.size / height, self.size / width)
        resized = cv2.resize(image, (int(width * scale), int(height * scale)))
        canvas = np.full((self.size, self.size, 3), 114, np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        out = self.session.run(None, {self.session.get_inputs()[0].name: blob})[0][0]
        centres = (out[:, :2] + self.grid) * self.stride
        sizes = np.exp(out[:, 2:4]) * self.stride
        scores = out[:, 4] * out[:, 5]
        keep = scores >= self.threshold
        boxes = np.concatenate([centres - sizes / 2, sizes], 1)[keep] / scale
        picked = cv2.dnn.NMSBoxes(boxes.tolist(), scores[keep].tolist(), self.threshold, 0.45)
        boxes = boxes[np.array(picked, int).reshape(-1)]
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)


def persons_in_zone(boxes: np.ndarray) -> int:
    """People whose feet (bottom centre of the box) stand in the zone."""
    return sum(cv2.pointPolygonTest(ZONE.astype(np.float32), (float((x1 + x2) / 2), float(y2)), False) >= 0
               for x1, _, x2, y2 in boxes)


# --------------------------------------------------------------------------- the run


@dataclass
class Tally:
    analysed: int = 0
    passed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def run(args: argparse.Namespace) -> int:
    cache = Path(tempfile.gettempdir()) / "gateway-bench"
    cache.mkdir(exist_ok=True)
    clip = build_clip(args.static_s, args.real_frames, args.noise,
                      cache / f"motion-{args.static_s:g}s-{args.real_frames}f-n{args.noise:g}.mkv")
    mask = region_mask((576, 768), [ZONE], grow_up_px=args.grow_up_px)
    gate = MotionGate(mask, sensitivity=args.sensitivity, max_skip_s=args.max_skip_s)
    oracle = YoloxPersons(MODEL)
    pacer = AnalysisPacer(args.fps, 10)
    still, static, total = Tally(), Tally(), Tally()
    gated_count = 0
    first_entry: tuple[float, bool, str] | None = None
    stale = 0
    entry_seen = False

    container = open_video(clip)
    for decoded in decode_frames(container):
        if not pacer.due(decoded.t):
            continue
        image = decoded.bgr()
        truth = persons_in_zone(oracle(image))
        decision = gate.check(image, decoded.t)
        if decision.run:
            gated_count = truth
        if truth and not entry_seen:
            entry_seen = True
            first_entry = (decoded.t, decision.run, decision.reason)
        stale += gated_count != truth
        if args.verbose and (truth or decision.run):
            print(f"    t={decoded.t:6.1f} truth={truth} run={decision.run} {decision.reason} changed={decision.changed_fraction:.5f}")
        stretches = [total] + ([] if entry_seen else [static]) + ([still] if decoded.t < args.static_s else [])
        for tally in stretches:
            tally.analysed += 1
            tally.passed += decision.run
            tally.reasons[decision.reason] = tally.reasons.get(decision.reason, 0) + 1
    container.close()

    print(f"motion gating benchmark: {clip.name}, analysed at {args.fps:g} fps, "
          f"sensitivity {args.sensitivity:g}, max_skip_s {args.max_skip_s:g}")
    print(f"  gate thresholds: pixel change > {gate.pixel_threshold}, "
          f"area >= {gate.area_fraction * 100:.3f} % of the frame, inside the zone "
          f"(grown {args.grow_up_px} px upwards) only")
    print(f"  {'stretch':<34} {'always-on':>10} {'gated':>7} {'fewer':>7}")
    for name, tally in (("empty scene + sensor noise", still), ("static (before anyone enters zone)", static),
                        ("whole clip", total)):
        print(f"  {name:<34} {tally.analysed:>10} {tally.passed:>7} "
              f"{tally.analysed / max(tally.passed, 1):>6.1f}x   {dict(sorted(tally.reasons.items()))}")
    static_ratio = static.analysed / max(static.passed, 1)
    print(f"  skip ratio (whole clip): {gate.skip_ratio:.3f}")
    if first_entry is None:
        print("  no person entered the zone: the clip is wrong")
        return 1
    t, passed, reason = first_entry
    print(f"  first analysed frame with a person in the zone: t={t:.1f} s, gate "
          f"{'PASSED (' + reason + ')' if passed else 'SKIPPED it'}")
    print(f"  analysed frames where the gated zone count differed from always-on: {stale}")
    ok = static_ratio >= 5 and passed
    print(f"  target >= 5x fewer calls on the static stretch and the entry passed: "
          f"{'met' if ok else 'NOT met'} ({static_ratio:.1f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=2.0, help="analysis fps")
    parser.add_argument("--sensitivity", type=float, default=0.5)
    parser.add_argument("--max-skip-s", type=float, default=5.0)
    parser.add_argument("--static-s", type=float, default=30.0, help="seconds of empty scene first")
    parser.add_argument("--real-frames", type=int, default=620, help="frames of vtest.avi after it")
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma, grey levels")
    parser.add_argument("--grow-up-px", type=int, default=60,
                        help="extend the zone upwards for the gate (bodies above feet)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every passed or occupied frame")
    sys.exit(run(parser.parse_args()))
