"""Tiled detection on real video: a far view built from vtest.avi (tests/far_view.py).

The reference is what the same detector finds on the original full-size frames, mapped into the
1920×1080 canvas: tiling must find those people again where the scene is four times smaller in
area. Scored one-to-one at IoU ≥ 0.5 on every 20th frame (40 frames, ~300 people).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, VTEST, YOLOX_NANO
from detectors import DetectorSettings, create_detector
from detectors.tiling import detect_tiled
from far_view import CANVAS, far_view, match, scene_zone, surroundings, to_canvas, vtest_frames, write_clip
from gateway.camera.tiling import plan_tiling
from gateway.config.tiling import TilingSection
from mqtt_broker import mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from test_service import alerts, camera_health, start_gateway, wait_until, write_config  # noqa: F401
from waiting import PATIENCE_S

MIN_IOU = 0.5


@pytest.fixture(scope="module")
def detector():
    detector = create_detector(DetectorSettings(model=YOLOX_NANO, threads=2))
    yield detector
    detector.close()


class Scenes:
    """Every 20th frame with its reference boxes (canvas pixels); far views are built on demand
    (a few ms each) so the module holds 40 small frames, not 40 full-HD pictures."""

    def __init__(self, detector) -> None:
        self.frames = vtest_frames(VTEST, step=20)
        self.background = surroundings(self.frames)
        self.references = [to_canvas(detector.detect(frame).boxes) for frame in self.frames]

    def __iter__(self):
        for frame, reference in zip(self.frames, self.references, strict=True):
            yield far_view(frame, self.background), reference


@pytest.fixture(scope="module")
def scenes(detector) -> Scenes:
    return Scenes(detector)


def score(detector, scenes: Scenes, plan) -> tuple[float, float]:
    """(recall, precision) of the detector with `plan` against the reference."""
    hits = references = found = 0
    for picture, reference in scenes:
        boxes = detect_tiled(detector, picture, plan).boxes
        hits += match(reference, boxes, MIN_IOU)
        references += len(reference)
        found += len(boxes)
    return hits / references, hits / max(found, 1)


def plan_for(detector, **tiling):
    return plan_tiling(TilingSection(**tiling), CANVAS, None, detector.input_size).plan


def test_auto_tiling_finds_the_far_view_people_that_the_whole_frame_misses(detector, scenes) -> None:
    plan = plan_for(detector, mode="auto", min_person_px=30, region="frame")
    recall, precision = score(detector, scenes, plan)
    print(f"far view, tiling auto (min_person_px 30): {plan.grid[0]}x{plan.grid[1]} tiles + whole frame = "
          f"{plan.inferences} runs; recall {recall:.3f}, precision {precision:.3f}")
    assert recall >= 0.85 and precision >= 0.85

    off_recall, _ = score(detector, scenes, None)
    print(f"far view, tiling off: recall {off_recall:.3f}")
    assert off_recall <= 0.1, "the far view must be out of reach without tiling, or this test proves nothing"


def test_zones_region_tiles_only_the_plaza_and_still_finds_its_people(detector, scenes) -> None:
    import cv2

    watched = np.zeros((CANVAS[1], CANVAS[0]), np.uint8)
    cv2.fillPoly(watched, [np.asarray(scene_zone(), np.int32)], 255)
    plan = plan_tiling(TilingSection(mode="auto", min_person_px=30), CANVAS, watched, detector.input_size).plan
    whole = plan_for(detector, mode="auto", min_person_px=30, region="frame")
    assert plan.inferences < whole.inferences / 3
    recall, precision = score(detector, scenes, plan)
    print(f"far view, tiling auto over the zone: {plan.inferences} runs; recall {recall:.3f}, "
          f"precision {precision:.3f}")
    assert recall >= 0.85 and precision >= 0.85


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    """The first 12 s of vtest.avi at 5 fps, as itself (768x576) and as the far view (1920x1080)."""
    frames = vtest_frames(VTEST, step=2, limit=60)
    background = surroundings(vtest_frames(VTEST, step=20))
    folder = tmp_path_factory.mktemp("clips")
    return (write_clip(frames, folder / "near.mp4", fps=5),
            write_clip([far_view(frame, background) for frame in frames], folder / "far.mp4", fps=5))


def site(tmp_path: Path, tiling: str, source: Path, resolution: tuple[int, int], extra: str = "") -> Path:
    config = tmp_path / f"site-{len(list(tmp_path.glob('site*.yaml')))}.yaml"
    config.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-test, timezone: Asia/Shanghai, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 2}}
        cameras:
          - id: far
            source: {{file: {source}}}
            fps: 2
            decode: all
            resolution: [{resolution[0]}, {resolution[1]}]
            tiling: {tiling}
        """) + extra, encoding="utf-8")
    return config


def replay_counts(config: Path, source: Path, out: Path, *extra: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "gateway", "replay", "-c", str(config), "--camera", "far",
                             "--source", str(source), "--counts-out", str(out), *extra],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in out.open()]


def test_gateway_replay_with_tiling_auto_counts_the_far_view_like_the_near_one(
        tmp_path: Path, clips: tuple[Path, Path]) -> None:
    """The whole frame path (decode, tiles, tracker, counts): the far view tiled over its plaza
    zone counts what the near view counts untiled; untiled, the far view counts nobody."""
    near, far = clips
    zone = f"\n    zones: [{{id: plaza, polygon: {scene_zone()}}}]\n"
    tiled = replay_counts(site(tmp_path, "{mode: auto, min_person_px: 30}", far, CANVAS, extra=zone), far,
                          tmp_path / "tiled.jsonl", "--fps", "5")
    untiled = replay_counts(site(tmp_path, "{mode: 'off'}", far, CANVAS, extra=zone), far,
                            tmp_path / "off.jsonl", "--fps", "5")
    reference = replay_counts(site(tmp_path, "{mode: 'off'}", near, (768, 576)), near,
                              tmp_path / "near.jsonl", "--fps", "5")
    assert len(tiled) == len(untiled) == len(reference) == 60
    far_mean = np.mean([line["detected"] for line in tiled])
    near_mean = np.mean([line["detected"] for line in reference])
    off_mean = np.mean([line["detected"] for line in untiled])
    print(f"gateway replay, people per frame: far view tiled {far_mean:.2f}, far view untiled {off_mean:.2f}, "
          f"near view {near_mean:.2f}")
    assert abs(far_mean - near_mean) <= 0.15 * near_mean
    assert off_mean <= 0.1 * near_mean


def test_tiling_auto_keeps_the_counts_of_a_near_view(tmp_path: Path) -> None:
    """On the original vtest.avi (people 60–120 px) tiling adds nothing to find but must not
    double-count: the tiled replay counts what the untiled one counts."""
    tiled = replay_counts(site(tmp_path, "{mode: auto}", VTEST, (768, 576)), VTEST, tmp_path / "tiled.jsonl")
    untiled = replay_counts(site(tmp_path, "{mode: 'off'}", VTEST, (768, 576)), VTEST, tmp_path / "off.jsonl")
    assert len(tiled) == len(untiled) > 100
    tiled_mean = np.mean([line["detected"] for line in tiled])
    untiled_mean = np.mean([line["detected"] for line in untiled])
    per_frame = np.mean([abs(a["detected"] - b["detected"]) for a, b in zip(tiled, untiled, strict=True)])
    print(f"vtest.avi: mean detected {tiled_mean:.2f} tiled vs {untiled_mean:.2f} untiled; "
          f"mean per-frame difference {per_frame:.2f}")
    assert abs(tiled_mean - untiled_mean) <= 0.1 * untiled_mean
    assert per_frame <= 1.0


def test_gateway_run_with_tiling_auto_alerts_on_the_far_view_crowd(
        tmp_path: Path, clips: tuple[Path, Path], mosquitto, subscriber_factory, start_gateway) -> None:
    """`gateway run` on the far view as a live camera: the crowd alert arrives with the people
    counted, and the heartbeat shows the tiled cost (tiles per frame, time per frame)."""
    _near, far = clips
    sub = subscriber_factory(mosquitto.port, ["gw/#"])
    camera = textwrap.dedent(f"""\
        - id: far
          source: {{file: {far}}}
          fps: 2
          decode: all
          resolution: [{CANVAS[0]}, {CANVAS[1]}]
          tiling: {{mode: auto, min_person_px: 30}}
          zones: [{{id: plaza, polygon: {scene_zone()}}}]
          rules:
            - {{type: crowd, zone: plaza, min_people: 3, for_s: 1, clear_s: 1}}
        """)
    gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto.port, camera, tmp_path / "data"))
    wait_until(lambda: any(a["state"] == "start" for a in alerts(sub, "far")), 2 * PATIENCE_S,
               "the far view's crowd alert", gateway)
    start = next(a for a in alerts(sub, "far") if a["state"] == "start")
    assert start["type"] == "crowd" and start["count"] >= 3
    wait_until(lambda: (camera_health(sub, "far") or {}).get("inference_ms_per_frame") is not None,
               PATIENCE_S, "a heartbeat with the camera's detector time", gateway)
    health = camera_health(sub, "far")
    assert health["tiles_per_frame"] == 2  # one tile over the plaza + the whole-frame pass
    assert "tiled detection: 1×1 tiles" in gateway.log()
    assert gateway.stop() == 0


def test_frames_smaller_than_the_configured_resolution_are_a_warning_not_a_crash(tmp_path: Path) -> None:
    """A tiled camera set up for the main stream that gets the sub stream: the replay runs and
    the log says what is wrong and what to do."""
    config = site(tmp_path, "{mode: grid, grid: [4, 2]}", VTEST, CANVAS)
    result = subprocess.run([sys.executable, "-m", "gateway", "replay", "-c", str(config), "--camera", "far",
                             "--source", str(VTEST), "--fps", "0.5", "--counts-out", str(tmp_path / "c.jsonl")],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "camera far: tiling: frames arrive at 768x576, smaller than the configured resolution 1920x1080" \
        in result.stderr
    assert "analyse the camera's main stream" in result.stderr
    assert "camera far: tiled detection: 4×2 tiles" in result.stderr
