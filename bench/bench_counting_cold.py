"""Counts after a restart, and steady counts, on the Mall clip: before and after, measured in one run.

Protocol (issue 20): a counting model is calibrated by the real `calibrate` on 20 annotated
frames of video frames 0-399; frames 400-799 are cut into their own file (ffmpeg, stream copy)
and every figure is scored against the annotations of those 400 frames (200 s at 2 fps), over
the whole file and over its first 100 s.

1. Starting into the crowd.
   replay: the real `replay` of the held-out file. Before: the model file without its empty
     scene, so the background is learnt from the file's first 95 s (a median, as before this
     change). After: the model file as calibration now writes it, with its scene.
   live restart: a camera's real live counting path (LiveCounting + CameraAnalytics, detections
     of the same detector, the file's clock) restarted at frame 400. Before: no kept background
     and the old warm-up (the detector counts for 95 s, then a median that takes the people
     standing still as floor). After: the background the same camera kept when it stopped at
     frame 399 (it ran on frames 0-399 first; gateway.calibration.kept); also a cold start with
     the model's scene, and a cold start with neither (the warm-up that inpaints people the
     detector sees standing still).
   Printed: MAE and bias of the count the camera reports (what the rules use) and of the model's
   own estimate, over the file and its first 100 s, and how long until the model counts.

2. Steady counts, on the whole clip with crowd rules (the whole picture >= 36 people, the left
   zone >= 24): frame-to-frame jitter of the count the rules use (mean |change| between frames),
   its MAE on frames 400-799, and the alert messages per event. Before: estimates as they come
   (CountSwitch with SmoothingSettings.off(), no dwell) and updates on `min_change: 2`. After:
   the defaults (steady counts, `min_change_share: 0.1`, `settle_s: 3`). Also for a model fitted
   on 6 frames, as in the page, whose estimates jump more.

    python bench/bench_counting_cold.py [--model ../shared/models/yolox_nano.onnx]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import gateway.analytics.counting.bootstrap as bootstrap  # noqa: E402
from detectors import Detections, DetectorSettings, create_detector  # noqa: E402
from gateway.analytics import CameraAnalytics  # noqa: E402
from gateway.analytics.counting import CountSwitch  # noqa: E402
from gateway.analytics.counting.smoothing import SmoothingSettings  # noqa: E402
from gateway.calibration.calibrate import calibrate  # noqa: E402
from gateway.calibration.live import LiveCounting  # noqa: E402
from gateway.checks import check_site  # noqa: E402
from gateway.replay import replay  # noqa: E402
from gateway.video.decode import decode_frames, open_video  # noqa: E402

SHARED = REPO.parent / "shared"
MALL = SHARED / "data" / "mall-train"
VIDEO = MALL / "mall_train_0001-0800_2fps.mp4"
TRAIN = list(range(0, 400, 20))
PAGE_FRAMES = [0, 80, 160, 240, 320, 380]
HELD = 400
FIRST_100_S = 200
START = datetime(2026, 5, 1, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
RULES = """\
    rules:
      - {{type: crowd, id: crowd-all, min_people: 36, for_s: 5, clear_s: 10{updates}}}
      - {{type: crowd, id: crowd-left, zone: left, min_people: 24, for_s: 5, clear_s: 10{updates}}}
"""


def config_text(work: Path, model: str, updates: str = "") -> str:
    return f"""\
gateway: {{id: bench, timezone: Asia/Shanghai, data_dir: {work / 'data'}}}
detector: {{model: {ARGS.model}, input_size: 416, threads: 2}}
cameras:
  - id: mall
    source: {{file: {VIDEO}}}
    fps: 2
    resolution: [640, 480]
    counting: {{mode: auto, model: {model}}}
    zones:
      - {{id: left, name: 左侧通道, polygon: [[0, 0], [400, 0], [400, 480], [0, 480]]}}
""" + RULES.format(updates=updates)


def load(work: Path, name: str, text: str, models: bool = True):
    """The configuration in `text`, checked as `gateway check` does (the model file too, unless
    it is about to be calibrated)."""
    path = work / name
    path.write_text(text, encoding="utf-8")
    config, issues = check_site(path, counting_models=models)
    assert config is not None, issues
    return config


def truth() -> np.ndarray:
    points = json.loads((MALL / "points.json").read_text())
    return np.array([len(points[f"seq_{k + 1:06d}.jpg"]) for k in range(800)], float)


@dataclass
class Run:
    persons: np.ndarray
    estimated: np.ndarray
    messages: dict[str, int]
    """Alert messages per event id."""


def figures(label: str, run: Run, counts: np.ndarray) -> str:
    def one(values: np.ndarray) -> str:
        errors = values - counts
        first = errors[:FIRST_100_S]
        known = ~np.isnan(first)
        return (f"MAE {np.nanmean(np.abs(errors)):5.2f} (first 100 s {np.nanmean(np.abs(first)):5.2f}, "
                f"bias {np.nanmean(first):+5.2f})" if known.any() else "no count")
    counting = np.flatnonzero(~np.isnan(run.estimated))
    starts = f"model counts from {counting[0] / 2:5.1f} s" if len(counting) else "never"
    return f"  {label:<46} reported {one(run.persons)} | model {one(run.estimated)} | {starts}"


def detections_of_clip(detector) -> list[Detections]:
    found = []
    with open_video(VIDEO) as container:
        for decoded in decode_frames(container):
            found.append(detector.detect(decoded.bgr()))
    return found


def live_run(config, found: list[Detections], frames: range, live: LiveCounting | None = None,
             switch: CountSwitch | None = None) -> tuple[Run, LiveCounting, CameraAnalytics]:
    """The camera's live counting path over `frames` of the clip (the file's clock, no threads)."""
    camera = config.camera("mall")
    live = live or LiveCounting(camera, config.gateway.data_dir)
    analytics = CameraAnalytics(camera, config.gateway, (640, 480), counting_model=live.model_for((640, 480)),
                                counting_mode=live.mode)
    if switch is not None:
        analytics.switch = switch
    persons, estimated, messages = [], [], {}
    with open_video(VIDEO) as container:
        for decoded in decode_frames(container):
            if decoded.index not in frames:
                continue
            t = (decoded.index - frames.start) * 0.5
            now = START + timedelta(seconds=t)
            image = decoded.bgr()
            live.prepare(analytics)
            result = analytics.process(found[decoded.index], t=t, now=now, frame=image, counting_image=image)
            live.record(analytics, image, result, now)
            persons.append(result.persons)
            estimated.append(np.nan if result.estimated is None else result.estimated)
            for message in result.events:
                messages[message.event_id] = messages.get(message.event_id, 0) + 1
    return Run(np.array(persons, float), np.array(estimated, float), messages), live, analytics


def replay_run(config, held: Path, detector, out: Path) -> Run:
    replay(config, "mall", held, detector, counts_out=out, start_at=START)
    rows = [json.loads(line) for line in out.open()]
    return Run(np.array([row["persons"] for row in rows], float),
               np.array([np.nan if row["estimated"] is None else row["estimated"] for row in rows], float), {})


def cold_start(work: Path, counts: np.ndarray, detector, found: list[Detections]) -> None:
    points = json.loads((MALL / "points.json").read_text())
    (work / "points.json").write_text(json.dumps({str(k): points[f"seq_{k + 1:06d}.jpg"] for k in TRAIN}))
    config = load(work, "calibrate.yaml", config_text(work, "model.json"), models=False)
    calibrate(config, "mall", VIDEO, work / "points.json", work / "model.json", detector)
    model = json.loads((work / "model.json").read_text())
    model.pop("scene")
    (work / "model-without-scene.json").write_text(json.dumps(model))
    held = work / "held-out.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "200", "-i", str(VIDEO), "-c", "copy",
                    "-avoid_negative_ts", "make_zero", str(held)], check=True)
    held_counts = counts[HELD:]
    with_scene = load(work, "with-scene.yaml", config_text(work, "model.json"))
    without = load(work, "without-scene.yaml", config_text(work, "model-without-scene.json"))
    print("1. Frames 400-799 as a camera that starts into the crowd "
          f"(mean {held_counts.mean():.1f} people; MAE against the annotations, the first 100 s apart)")
    print(" replay of the held-out file")
    print(figures("before: scene learnt from the file's first 95 s", replay_run(
        without, held, detector, work / "before.jsonl"), held_counts))
    print(figures("after: from the model's empty scene", replay_run(
        with_scene, held, detector, work / "after.jsonl"), held_counts))

    print(" live camera restarted at frame 400")
    covered_share = bootstrap.COVERED_SHARE
    bootstrap.COVERED_SHARE = 2.0  # nothing is inpainted: the warm-up as it was before this change
    print(figures("before: no kept background, old warm-up", live_run(without, found, range(HELD, 800))[0],
                  held_counts))
    bootstrap.COVERED_SHARE = covered_share
    print(figures("cold, no scene: warm-up inpainting the boxes", live_run(without, found, range(HELD, 800))[0],
                  held_counts))
    print(figures("cold, from the model's empty scene", live_run(with_scene, found, range(HELD, 800))[0],
                  held_counts))
    _, first_live, first_analytics = live_run(with_scene, found, range(0, HELD))
    first_live.save(first_analytics)  # as a camera that stops at frame 399
    print(figures("after: from the background kept at the stop", live_run(with_scene, found, range(HELD, 800))[0],
                  held_counts))


def steady_counts(work: Path, counts: np.ndarray, detector, found: list[Detections]) -> None:
    points = json.loads((MALL / "points.json").read_text())
    (work / "page-points.json").write_text(json.dumps({str(k): points[f"seq_{k + 1:06d}.jpg"] for k in PAGE_FRAMES}))
    config = load(work, "page-calibrate.yaml", config_text(work, "page-model.json"), models=False)
    calibrate(config, "mall", VIDEO, work / "page-points.json", work / "page-model.json", detector)
    old_updates = ", updates: {min_change: 2, min_change_share: 0, settle_s: 0}"
    print("2. Steady counts on the whole clip (crowd rules: picture >= 36, left zone >= 24); "
          "jitter = mean |change| of the count the rules use between frames")
    for label, model in (("model from 20 frames", "model.json"), ("model from 6 frames (as on the page)",
                                                                   "page-model.json")):
        for when, updates, switch in (("before", old_updates, CountSwitch("auto", SmoothingSettings.off(), 0.0)),
                                      ("after ", "", None)):
            config = load(work, f"steady-{when.strip()}.yaml", config_text(work, model, updates))
            (work / "data" / "counting" / "mall.background.npz").unlink(missing_ok=True)
            run, _, _ = live_run(config, found, range(0, 800), switch=switch)
            held = run.persons[HELD:]
            per_event = list(run.messages.values())
            print(f"  {label:<36} {when}: jitter {np.abs(np.diff(held)).mean():.2f} people/frame, "
                  f"MAE {np.abs(held - counts[HELD:]).mean():.2f}; {len(per_event)} events, "
                  f"{sum(per_event)} messages, {np.mean(per_event) if per_event else 0:.1f} per event "
                  f"(most {max(per_event, default=0)})")
    print(f"  annotations themselves: jitter {np.abs(np.diff(counts[HELD:])).mean():.2f} people/frame")


def main() -> None:
    began = time.perf_counter()
    detector = create_detector(DetectorSettings(model=ARGS.model, threads=2, input_size=(416, 416)))
    counts = truth()
    found = detections_of_clip(detector)
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as folder:
        work = Path(folder)
        cold_start(work, counts, detector, found)
        steady_counts(work, counts, detector, found)
    detector.close()
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    ARGS = parser.parse_args()
    main()
