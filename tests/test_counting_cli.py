"""Counting models from the installer's side: `gateway calibrate count`, `gateway check` and
`gateway replay` as real processes, on the sample video.

- On the sparse sample scene a model fitted for it (7 frames annotated by hand, in
  tests/data/vtest_points.json) changes nothing under `counting: auto`: the counts the rules use
  stay the detector's on every frame, while the model runs (it has an estimate for every frame).
- Bad input is refused with the file and the problem named: points outside the frame, frames
  past the end of the video, too few frames, files that are not JSON; model files that are
  missing, corrupt, for another camera or another resolution (at `check`, exit 2).
- At run time a model that cannot be used is a warning naming the camera and the file, and the
  camera counts with the detector: never a crash, never a silent zero.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, VTEST, VTEST_H264, YOLOX_NANO
from gateway.analytics.counting import CountingModel
from gateway.analytics.counting.perspective import from_ramp
from gateway.calibration.files import save_model
from gateway.events import validate_alert
from rtsp_fixtures import transcode_h264

POINTS = Path(__file__).resolve().parent / "data" / "vtest_points.json"
DEMO = (REPO / "config" / "demo.yaml").read_text(encoding="utf-8")


def gateway(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=1800, cwd=REPO)


def demo_config(folder: Path, counting: str) -> Path:
    """The demo configuration with absolute paths, its data in `folder`, and a counting key."""
    text = DEMO.replace("../../shared/models/yolox_nano.onnx", str(YOLOX_NANO))
    text = text.replace("../../shared/data/vtest_h264.mp4", str(VTEST_H264)).replace("data_dir: ../data",
                                                                             f"data_dir: {folder / 'data'}")
    anchor = "    resolution: [768, 576]          # polygons below are pixels of this frame\n"
    assert anchor in text
    text = text.replace(anchor, anchor + f"    counting: {counting}\n")
    path = folder / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def synthetic_model(camera: str = "demo", size: tuple[int, int] = (768, 576)) -> CountingModel:
    return CountingModel(camera, size, from_ramp(20, 150, size[1]), np.array([0.001, 0.0, 0.0]), np.ones((2, 2)))


@pytest.fixture(scope="module")
def clip() -> Path:
    """The first 40 frames of the sample video: quick to run through calibration."""
    return transcode_h264(VTEST, 10, 10, frames=40)


# --------------------------------------------------------------------------- a sparse scene


@pytest.fixture(scope="module")
def sparse(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("sparse")
    config = demo_config(work, "{mode: auto, model: model.json}")
    calibrated = gateway("calibrate", "count", "-c", str(config), "--camera", "demo", "--source", str(VTEST),
                         "--points", str(POINTS), "--out", str(work / "model.json"))
    assert calibrated.returncode == 0, calibrated.stderr
    checked = gateway("check", "-c", str(config))
    assert checked.returncode == 0, checked.stderr
    replayed = gateway("replay", "-c", str(config), "--camera", "demo", "--source", str(VTEST),
                       "--counts-out", str(work / "counts.jsonl"), "--events-out", str(work / "events.jsonl"))
    assert replayed.returncode == 0, replayed.stderr
    return {"calibrate": calibrated, "replay": replayed,
            "counts": [json.loads(line) for line in (work / "counts.jsonl").open()],
            "events": [json.loads(line) for line in (work / "events.jsonl").open()]}


def test_auto_leaves_a_sparse_scene_to_the_detector(sparse: dict) -> None:
    print("\n" + sparse["calibrate"].stdout)
    counts = sparse["counts"]
    assert len(counts) == 795
    assert all(row["estimated"] is not None for row in counts), "the model did not run on every frame"
    assert all(row["persons"] == row["detected"] == len(row["boxes"]) for row in counts)
    estimated = np.array([row["estimated"] for row in counts])
    detected = np.array([row["detected"] for row in counts])
    print(f"estimate - detector count on the sparse scene: mean {np.mean(estimated - detected):+.2f}, "
          f"range {np.min(estimated - detected):+.1f} .. {np.max(estimated - detected):+.1f}")
    assert sparse["events"], "the demo rules raised nothing"
    for payload in sparse["events"]:
        validate_alert(payload)
        assert payload["count_source"] == "detector"


# --------------------------------------------------------------------------- bad input to calibrate


def calibrate(config: Path, source: Path, points: Path, out: Path) -> subprocess.CompletedProcess:
    return gateway("calibrate", "count", "-c", str(config), "--camera", "demo", "--source", str(source),
                   "--points", str(points), "--out", str(out))


def five_frames(extra: dict | None = None) -> dict:
    points = {str(k): [[100.0 + k, 200.0]] for k in range(5)}
    return points | (extra or {})


@pytest.mark.parametrize("points, message", [
    (five_frames({"2": [[100, 200], [800, 10]]}), r"frame 2: point \[800, 10\] lies outside the 768x576 frame"),
    (five_frames({"39": [[10, 10]], "400": [[10, 10]]}),
     r"frame 400 is past the end of .* \(40 frames, numbered 0-39\)"),
    ({str(k): [[10, 10]] for k in range(3)}, r"3 annotated frames; a counting model needs at least 5"),
    (five_frames({"x1": [[1, 2]]}), r"'x1' is not a frame index"),
    (five_frames({"3": [[1, 2, 3]]}), r"frame 3: expected a list of \[x, y\] pixel points"),
    ([[1, 2]], r"expected an object"),
])
def test_calibrate_refuses_bad_points_naming_the_file(tmp_path: Path, clip: Path, points, message) -> None:
    config = demo_config(tmp_path, "{mode: auto}")
    path = write_json(tmp_path / "points.json", points)
    result = calibrate(config, clip, path, tmp_path / "model.json")
    assert result.returncode == 1
    assert str(path) in result.stderr and re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "model.json").exists()


def test_calibrate_refuses_a_points_file_that_is_not_json(tmp_path: Path, clip: Path) -> None:
    config = demo_config(tmp_path, "{mode: auto}")
    path = tmp_path / "points.json"
    path.write_text("{'0': [[1, 2]]", encoding="utf-8")
    result = calibrate(config, clip, path, tmp_path / "model.json")
    assert result.returncode == 1 and f"{path}: not JSON" in result.stderr
    missing = calibrate(config, clip, tmp_path / "nope.json", tmp_path / "model.json")
    assert missing.returncode == 1 and "nope.json: points file not found" in missing.stderr


# --------------------------------------------------------------------------- bad model files at check


@pytest.mark.parametrize("content, message", [
    (None, "counting model file not found"),
    ("not json at all", "not a counting model (not JSON"),
    ({"format": "gw.counting-model", "version": 1, "camera_id": "demo"}, "'frame_size' must be [width, height]"),
    (synthetic_model(camera="gate").to_dict(), "fitted for camera 'gate', not 'demo'"),
    (synthetic_model(size=(640, 480)).to_dict(), "fitted on 640x480 frames, not 768x576"),
])
def test_check_names_the_model_file_and_its_problem(tmp_path: Path, content, message) -> None:
    model = tmp_path / "models" / "demo.json"
    if content is not None:
        model.parent.mkdir()
        model.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    config = demo_config(tmp_path, "{mode: auto, model: models/demo.json}")
    line = config.read_text().splitlines().index("    counting: {mode: auto, model: models/demo.json}") + 1
    result = gateway("check", "-c", str(config))
    assert result.returncode == 2
    assert f"{config}:{line}: cameras[0].counting.model: {model}: {message}" in result.stderr, result.stderr


def test_check_accepts_a_good_model(tmp_path: Path) -> None:
    save_model(tmp_path / "demo.json", synthetic_model())
    config = demo_config(tmp_path, "{mode: model, model: demo.json}")
    result = gateway("check", "-c", str(config))
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- bad model files at run time


@pytest.mark.parametrize("content, problem", [
    ("{broken", "not a counting model (not JSON"),
    (json.dumps(synthetic_model(size=(640, 480)).to_dict()), "fitted on 640x480 frames, not 768x576"),
])
def test_replay_with_an_unusable_model_warns_and_counts_with_the_detector(
        tmp_path: Path, clip: Path, content: str, problem: str) -> None:
    # No `model:` key: the file the page's tool writes is used, which `check` does not read.
    model = tmp_path / "data" / "counting" / "demo.json"
    model.parent.mkdir(parents=True)
    model.write_text(content, encoding="utf-8")
    config = demo_config(tmp_path, "{mode: auto}")
    result = gateway("replay", "-c", str(config), "--camera", "demo", "--source", str(clip),
                     "--counts-out", str(tmp_path / "counts.jsonl"))
    assert result.returncode == 0, result.stderr
    assert f"camera demo: counting model unusable: {model}: {problem}" in result.stderr
    assert "; counting with the detector instead" in result.stderr
    counts = [json.loads(line) for line in (tmp_path / "counts.jsonl").open()]
    assert len(counts) >= 10  # the raw H.264 clip plays at 25 fps: 10 fps analysis takes some frames
    assert all(row["estimated"] is None and row["persons"] == row["detected"] for row in counts)
    assert sum(row["persons"] for row in counts) > 0  # counted, not silently zero


def test_auto_without_any_model_says_so_and_counts_with_the_detector(tmp_path: Path, clip: Path) -> None:
    config = demo_config(tmp_path, "{mode: auto}")
    result = gateway("replay", "-c", str(config), "--camera", "demo", "--source", str(clip),
                     "--counts-out", str(tmp_path / "counts.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "camera demo: counting.mode is auto but no model is fitted yet" in result.stderr
    assert "counting with the detector until one is fitted" in result.stderr
