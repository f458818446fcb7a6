"""A counting model file that is wrong, hostile or not a file never stops a camera silently.

- `gateway check` names the file and what is wrong, without a traceback, for every shape of bad
  file: wrong schema (`"grid": [1]`), values that overflow later (`region_scale: 1e308`), JSON
  nested 100 000 deep, a 5 000-digit number, /dev/zero, a FIFO. It returns promptly and small.
- `gateway run` with such a file where the page's tool keeps models (which `check` does not
  read) logs one line naming the camera and the file, counts with the detector and raises its
  alerts: no failing frames, no tracebacks.
- A reload onto a FIFO is refused at once, and SIGTERM still stops the gateway.
- A model that breaks while counting (built in code: a file cannot carry it past the checks)
  costs no frame: the camera falls back to the detector with one log line.
- Frames that keep failing for any other reason turn the camera's health to failing.

Processes are real (`gateway check`, `gateway run`, Mosquitto); frames are the sample video.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import REPO, VTEST, YOLOX_NANO
from detectors import Detections
from gateway.analytics import CameraAnalytics
from gateway.analytics.counting import CountingModel
from gateway.analytics.counting.background import BackgroundSettings
from gateway.analytics.counting.perspective import from_ramp
from gateway.api.routes.health import overall_status
from gateway.camera.failures import AnalysisFailures
from gateway.camera.worker import CameraWorker
from gateway.config import load_config
from gateway.video.decode import decode_frames, open_video
from mqtt_broker import Mosquitto, free_port, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from waiting import PATIENCE_S, wait_until

SIZE = (768, 576)
FAST_WARMUP = BackgroundSettings(warmup_samples=2, warmup_interval_s=0.5)
"""The background is ready after half a second: a broken model would fail within a second."""


def good_model(camera: str = "cam1") -> dict:
    model = CountingModel(camera, SIZE, from_ramp(20, 150, SIZE[1]), np.array([0.001, 0.0, 0.0]), np.ones((2, 2)),
                          FAST_WARMUP)
    return model.to_dict()


def with_change(**changes) -> str:
    return json.dumps({**good_model(), **changes})


def write_site(tmp_path: Path, broker_port: int, counting: str, api_port: int | None = None) -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-count, timezone: Asia/Shanghai, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{host: 127.0.0.1, port: {broker_port}, heartbeat_s: 1}}
        api: {{port: {api_port or free_port()}}}
        cameras:
          - id: cam1
            name: 广场
            source: {{file: {VTEST}}}
            fps: 2
            decode: all
            resolution: [768, 576]
            counting: {counting}
            rules:
              - {{type: crowd, min_people: 3, for_s: 1, clear_s: 1}}
        """), encoding="utf-8")
    return config


def small_address_space() -> None:
    """The child may use 1.5 GB of address space: a file read whole into memory fails fast."""
    resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))


# --------------------------------------------------------------------------- gateway check


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BAD_FILES = [
    pytest.param(with_change(grid=[1]), "'grid' must be", id="grid-list"),
    pytest.param(with_change(region_scale=[[1e308, 1], [1, 1]]), "region_scale", id="region-scale-1e308"),
    pytest.param(with_change(weights=[1e308, 0, 0]), "weights", id="weights-1e308"),
    pytest.param(with_change(perspective={"slope": 1e300, "intercept": 0}), "perspective", id="perspective-huge"),
    pytest.param(with_change(background={"warmup_samples": 10**9}), "background", id="background-huge"),
    pytest.param(with_change(background={"min_threshold": "many"}), "background", id="background-text"),
    pytest.param(with_change(background=[1]), "background", id="background-list"),
    pytest.param(with_change(perspective=[1]), "perspective", id="perspective-list"),
    pytest.param(with_change(frame_size=[True, 576]), "frame_size", id="frame-size-bool"),
    pytest.param(with_change(training=nested(50)), "training", id="training-not-a-map"),
    pytest.param('{"format": "gw.counting-model", "weights": ' + nested(100_000) + "}", "nested too deeply",
                 id="deep-nesting"),
    pytest.param('{"format": "gw.counting-model", "version": 1, "weights": [' + "7" * 5000 + "]}",
                 "a number too long", id="5000-digit-int"),
    pytest.param(json.dumps({**good_model(), "training": {"notes": "x" * 3_000_000}}), "too big", id="3-MB"),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_check_names_a_bad_model_file_without_a_traceback(tmp_path: Path, content: str, message: str) -> None:
    model = tmp_path / "models" / "cam1.json"
    model.parent.mkdir()
    model.write_text(content, encoding="utf-8")
    check_refuses(tmp_path, model, message)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_check_refuses_a_model_path_that_is_not_a_regular_file_at_once(tmp_path: Path, kind: str) -> None:
    model = tmp_path / "models" / "cam1.json"
    model.parent.mkdir()
    if kind == "dev-zero":
        model.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(model)
    else:
        model.mkdir()
    check_refuses(tmp_path, model, "not a regular file")


def check_refuses(tmp_path: Path, model: Path, message: str) -> None:
    config = write_site(tmp_path, free_port(), "{mode: model, model: models/cam1.json}")
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if "counting:" in text)
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(config)], capture_output=True,
                            text=True, timeout=PATIENCE_S, cwd=REPO, preexec_fn=small_address_space)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{config}:{line}: cameras[0].counting.model: {model}: " in result.stderr, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr) < 2000  # the error, not the file


# --------------------------------------------------------------------------- gateway run


@pytest.mark.parametrize("content", [
    pytest.param(with_change(grid=[1]), id="grid-list"),
    pytest.param(with_change(region_scale=[[1e308, 1], [1, 1]]), id="region-scale-1e308"),
])
def test_run_with_a_bad_model_file_counts_with_the_detector_and_says_so_once(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, content: str) -> None:  # noqa: F811
    """The file the page's tool writes (`check` does not read it): one warning, then alerts."""
    centre = subscriber_factory(mosquitto.port, ["gw/gw-count/#"])
    model = tmp_path / "data" / "counting" / "cam1.json"
    model.parent.mkdir(parents=True)
    model.write_text(content, encoding="utf-8")
    api_port = free_port()
    config = write_site(tmp_path, mosquitto.port, "{mode: model}", api_port)
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)], cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            def crowd_started() -> bool:
                return any(m.json().get("state") == "start" for m in centre.received("gw/gw-count/events/cam1"))

            assert centre.wait_for(lambda _m: crowd_started(), 3 * PATIENCE_S), log_path.read_text()[-3000:]
            health = httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=PATIENCE_S)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(2 * PATIENCE_S)
    text = log_path.read_text()
    start = next(m.json() for m in centre.received("gw/gw-count/events/cam1") if m.json()["state"] == "start")
    assert start["count_source"] == "detector"
    assert text.count("camera cam1: counting model unusable") == 1, text[-3000:]
    assert f"{model}: " in text and "counting with the detector instead" in text
    assert "analysis failed" not in text and "Traceback" not in text, text[-3000:]
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_a_reload_onto_a_fifo_is_refused_at_once_and_sigterm_still_stops(tmp_path: Path) -> None:
    model = tmp_path / "models" / "cam1.json"
    model.parent.mkdir()
    model.write_text(json.dumps(good_model()), encoding="utf-8")
    config = write_site(tmp_path, free_port(), "{mode: model, model: models/cam1.json}")
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)], cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "counting in model mode" in log_path.read_text(), 2 * PATIENCE_S,
                       "the camera to count with its model")
            model.unlink()
            os.mkfifo(model)
            process.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload rejected" in log_path.read_text(), PATIENCE_S, "the reload to be refused")
            process.send_signal(signal.SIGTERM)
            assert process.wait(2 * PATIENCE_S) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(PATIENCE_S)
    assert "not a regular file" in log_path.read_text()


# --------------------------------------------------------------------------- while counting


def sample_frames(count: int) -> list[tuple[float, np.ndarray]]:
    with open_video(VTEST) as container:
        frames = []
        for decoded in decode_frames(container):
            frames.append((decoded.t, decoded.bgr()))
            if len(frames) == count:
                return frames
    return frames


def test_a_model_that_breaks_while_counting_falls_back_to_the_detector_without_losing_a_frame(
        tmp_path: Path, caplog) -> None:
    config = load_config(write_site(tmp_path, free_port(), "{mode: model}"))
    camera = config.cameras[0]
    overflowing = CountingModel("cam1", SIZE, from_ramp(20, 150, SIZE[1]), np.array([0.001, 0.0, 0.0]),
                                np.full((2, 2), 1e308), FAST_WARMUP)
    analytics = CameraAnalytics(camera, config.gateway, SIZE, counting_model=overflowing)
    nobody = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    results = []
    with caplog.at_level(logging.WARNING):
        for t, image in sample_frames(20):
            masked = analytics.prepare(image)
            results.append(analytics.process(nobody, t=t, now=datetime.now(), frame=masked, counting_image=masked))
    failures = [result.counting_failure for result in results if result.counting_failure]
    assert len(failures) == 1 and "not a finite number" in failures[0]
    assert all(result.count_source == "detector" and result.estimated is None for result in results)
    assert analytics.counter is not None and analytics.counter.model is None  # given up, not retried every frame


def test_frames_that_keep_failing_turn_the_cameras_health_to_failing_and_back(tmp_path: Path, caplog) -> None:
    config = load_config(write_site(tmp_path, free_port(), "{mode: detector}"))
    worker = CameraWorker(config.cameras[0], config.gateway)
    with caplog.at_level(logging.INFO, logger="gateway.camera"):
        for _ in range(20):
            worker.analysis_failed(ValueError("cannot convert float NaN to integer"))
        status = worker.status()
        assert status.analysis_failing and "ValueError: cannot convert float NaN to integer" in status.analysis_error
        worker.analysis_succeeded()
        assert not worker.status().analysis_failing
    lines = [r.getMessage() for r in caplog.records if "camera cam1" in r.getMessage()]
    assert len([line for line in lines if "analysis failed" in line]) == 1  # one line for 20 failures
    assert any("health is failing" in line for line in lines) and any("works again" in line for line in lines)
    assert overall_status(failed_workers=[], failing_cameras=["cam1"], degraded=False) == "failing"
    assert overall_status(failed_workers=[], failing_cameras=[], degraded=True) == "degraded"


def test_failure_policy_logs_each_kind_once_per_window_and_counts_consecutive_failures() -> None:
    failures = AnalysisFailures(failing_after=3, remind_s=300)
    first = failures.failed(ValueError("a"), now=0.0)
    assert first.log and first.consecutive == 1 and not first.failing_now
    assert not failures.failed(ValueError("b"), now=1.0).log        # same kind (type and place), text varies
    third = failures.failed(ValueError("c"), now=2.0)
    assert third.failing_now and failures.failing                    # turned failing on the third
    assert failures.failed(KeyError("k"), now=3.0).log                # another kind: its own line
    assert not failures.failed(ValueError("d"), now=200.0).log
    reminder = failures.failed(ValueError("e"), now=400.0)
    assert reminder.log and reminder.repeats == 3                     # 3 more since the last line
    assert failures.succeeded() == 6 and not failures.failing          # 6 failed frames in a row, now fine
