"""A counting camera across a restart, live: `gateway run` as a real process (real detector, the
Mall crowd clip as the camera, real Mosquitto), its API over real HTTP, then SIGTERM and a
second `gateway run` on the same data directory.

- The camera starts from the background a previous run kept in data_dir (seeded here as that
  run would have left it), so the installer can take snapshots at once instead of waiting for a
  warm-up; five snapshots are marked with the clip's annotated heads and fitted through the API.
- Its live counts, whole picture and zone, with their source, are in `GET /api/cameras` and on
  the retained `gw/<id>/cameras/mall/counts` (valid gw.counts/1; a new subscriber gets them).
- Restarted, the gateway counts with the model fitted on the page without anyone editing the
  YAML, from the background it kept at stop, from its first frames; the counting API says the
  model was fitted on the page, and `gateway check` says so too, while a YAML that says
  `mode: detector` or names another model still wins.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from conftest import REPO, SHARED, YOLOX_NANO
from gateway.analytics.counting import BackgroundSettings
from gateway.analytics.counting.background import EmptyScene
from gateway.analytics.counting.bootstrap import empty_scene
from gateway.analytics.counting.features import FeatureExtractor
from gateway.calibration.kept import KeptBackground, kept_path, save_kept
from gateway.events import validate_counts
from mqtt_broker import Mosquitto, Subscriber, free_port
from test_counting_web import which_frame  # the snapshot as a frame of the clip
from waiting import PATIENCE_S, wait_until

MALL = SHARED / "data" / "mall-train"
VIDEO = MALL / "mall_train_0001-0800_2fps.mp4"
TOKEN = "counting-live-token-7c2e41"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COUNTS_TOPIC = "gw/gw-live/cameras/mall/counts"


def clip() -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The clip's frames small and grey (to recognise a snapshot), 20 counting pictures spread over
    its first 95 s, and the annotated heads of every frame."""
    capture = cv2.VideoCapture(str(VIDEO))
    extractor = FeatureExtractor((640, 480))
    small, working = [], []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        small.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (160, 120), interpolation=cv2.INTER_AREA))
        if index % 10 == 0 and index < 200:
            working.append(extractor.working_gray(frame))
        index += 1
    points = json.loads((MALL / "points.json").read_text())
    heads = [np.asarray(points[f"seq_{k + 1:06d}.jpg"]).reshape(-1, 2) for k in range(len(small))]
    return np.stack(small).astype(np.float32), working, heads


class Gateway:
    """`gateway run -c config` with its output in a log file."""

    def __init__(self, config: Path, log_path: Path):
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)], cwd=REPO,
                                            stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(2 * PATIENCE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(PATIENCE_S)


def streaming(client: httpx.Client, gateway: Gateway) -> bool:
    if gateway.process.poll() is not None:
        pytest.fail(f"gateway exited ({gateway.process.returncode}):\n{gateway.log()}")
    try:
        return client.get("/api/cameras/mall").json().get("frame_size") == [640, 480]
    except httpx.HTTPError:
        return False


def counting(client: httpx.Client) -> dict:
    return client.get("/api/cameras/mall/counting").json()


def check(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(config)], capture_output=True,
                          text=True, timeout=PATIENCE_S * 4, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("counting-live")
    broker = Mosquitto(work / "broker")
    broker.start()
    port = free_port()
    config = work / "site.yaml"
    text = textwrap.dedent(f"""\
        gateway: {{id: gw-live, timezone: Asia/Shanghai, data_dir: {work / 'data'}}}
        detector: {{model: {YOLOX_NANO}, input_size: 416, threads: 2}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, counts_every_s: 1}}
        api: {{bind: 127.0.0.1, port: {port}, token: {TOKEN}}}
        cameras:
          - id: mall
            name: 商场中庭
            source: {{file: {VIDEO}, loop: true}}
            fps: 2
            resolution: [640, 480]
            zones:
              - {{id: left, name: 左侧通道, polygon: [[0, 0], [400, 0], [400, 480], [0, 480]]}}
        #COUNTING
        """)
    config.write_text(text.replace("#COUNTING", ""), encoding="utf-8")
    frames, working, heads = clip()
    scene = EmptyScene(empty_scene(working), np.full(working[0].shape, 4.0, np.float32))
    seeded = time.time() - 60  # a run that stopped a minute ago kept this
    save_kept(kept_path(work / "data", "mall"), KeptBackground("mall", (640, 480), BackgroundSettings(), seeded, scene))
    subscriber = Subscriber(broker.port, [COUNTS_TOPIC])
    gateways: list[Gateway] = []
    try:
        yield {"work": work, "config": config, "text": text, "url": f"http://127.0.0.1:{port}", "frames": frames,
               "heads": heads, "broker": broker, "subscriber": subscriber, "gateways": gateways, "seeded": seeded}
    finally:
        for gateway in gateways:
            gateway.stop()
        subscriber.close()
        broker.kill()


def start(site: dict, name: str) -> tuple[Gateway, httpx.Client]:
    gateway = Gateway(site["config"], site["work"] / f"{name}.log")
    site["gateways"].append(gateway)
    client = httpx.Client(base_url=site["url"], headers=AUTH, timeout=PATIENCE_S)
    wait_until(lambda: streaming(client, gateway), 4 * PATIENCE_S, "the mall camera to stream", step=0.5)
    return gateway, client


def test_a_model_fitted_on_the_page_counts_after_a_restart_from_the_kept_background(site) -> None:
    gateway, client = start(site, "first")
    origin = {"Origin": site["url"]}
    started = client.post("/api/cameras/mall/counting/start", headers=origin).json()
    assert started["model"] is None and started["model_after_restart"] == "the detector (no counting model)"
    wait_until(lambda: "counting background from" in gateway.log(), PATIENCE_S, "the kept background to be used")

    marked: set[int] = set()

    def annotate_a_new_frame() -> bool:
        shot = client.post("/api/cameras/mall/counting/snapshots", headers=origin)
        if shot.status_code != 201:
            return False  # no analysed frame with features yet
        shot_id = shot.json()["id"]
        frame = which_frame(client.get(f"/api/cameras/mall/counting/snapshots/{shot_id}/image.jpg").content,
                            site["frames"])
        if frame in marked:
            assert client.delete(f"/api/cameras/mall/counting/snapshots/{shot_id}", headers=origin).status_code == 204
            return False
        saved = client.put(f"/api/cameras/mall/counting/snapshots/{shot_id}/points",
                           json={"points": site["heads"][frame].tolist()}, headers=origin)
        assert saved.status_code == 200, saved.text
        marked.add(frame)
        return True

    for _ in range(5):  # counts at once: the kept background needs no warm-up
        wait_until(annotate_a_new_frame, PATIENCE_S, "a snapshot of a new frame", step=0.5)
    fit = client.post("/api/cameras/mall/counting/fit", headers=origin)
    assert fit.status_code == 200, fit.text
    fitted = fit.json()
    assert fitted["kept"] is True and fitted["kept_note"] == "camera mall counts with this model after a restart too"
    model_file = site["work"] / "data" / "counting" / "mall.json"
    assert Path(fitted["model_path"]) == model_file
    assert json.loads(model_file.read_text())["scene"]["encoding"] == "png16+base64"

    status = wait_until(lambda: (s := counting(client))["estimated"] is not None and s, PATIENCE_S,
                        "the camera to count with the model", step=0.5)
    assert status["active_mode"] == "auto" and status["model"]["source"] == "page"
    assert status["model"]["source_text"].startswith("fitted on the page 20")
    assert status["model_after_restart"] == f"auto mode with {model_file} (page)"

    camera = wait_until(lambda: (c := client.get("/api/cameras").json()[0])["counts"] and
                        c["counts"]["estimated"] is not None and c, PATIENCE_S, "live counts with the model", step=0.5)
    counts = camera["counts"]
    assert counts["mode"] == "auto" and counts["source"] in ("detector", "model") and not counts["stale"]
    assert set(counts["zones"]) == {"left"} and counts["zones"]["left"]["name"] == "左侧通道"
    assert counts["zones"]["left"]["count"] <= counts["count"] + 1

    subscriber: Subscriber = site["subscriber"]
    assert subscriber.wait_for(lambda ms: any(json.loads(m.payload)["mode"] == "auto" for m in ms), PATIENCE_S)
    for message in subscriber.received(COUNTS_TOPIC):
        validate_counts(message.json())
    late = Subscriber(site["broker"].port, [COUNTS_TOPIC], persistent=False)  # retained: a newcomer gets it at once
    try:
        assert late.wait_for(lambda ms: len(ms) >= 1, PATIENCE_S)
        first = late.received()[0]
        assert first.retain and first.json()["camera_id"] == "mall" and first.json()["gateway_id"] == "gw-live"
    finally:
        late.close()

    kept = kept_path(site["work"] / "data", "mall")
    gateway.stop()
    assert gateway.process.returncode == 0, gateway.log()[-3000:]
    with np.load(kept) as data:
        assert float(data["saved_at"]) > site["seeded"] + 30  # written again at stop

    before = len(subscriber.received(COUNTS_TOPIC))
    second, client = start(site, "second")
    log = second.log()
    assert f"counting in auto mode with {model_file} (fitted on the page 20" in log, log[-3000:]
    assert "counting background from" in log and "kept" in log
    status = wait_until(lambda: (s := counting(client))["estimated"] is not None and s, PATIENCE_S,
                        "the restarted camera to count with the model", step=0.5)
    assert status["warmup_left_s"] == 0 and status["model"]["source"] == "page"
    assert status["estimated"] > status["detected"]  # the dense scene the detector cannot separate
    assert subscriber.wait_for(lambda ms: len([m for m in ms if m.topic == COUNTS_TOPIC]) > before, PATIENCE_S)

    print("\n" + check(site["config"]))
    assert f"camera mall: counts in auto mode with {model_file} (fitted on the page 20" in check(site["config"])


def test_the_yaml_still_wins_over_a_model_fitted_on_the_page(site) -> None:
    model_file = site["work"] / "data" / "counting" / "mall.json"
    if not model_file.exists():
        pytest.fail("the page's model was not fitted (see the test before)")
    detector = site["work"] / "detector.yaml"
    detector.write_text(site["text"].replace("#COUNTING", "    counting: {mode: detector}"), encoding="utf-8")
    assert (f"camera mall: counts with the detector (counting.mode is detector in the configuration; "
            f"the model fitted on the page ({model_file}) is not used)") in check(detector)
    other = site["work"] / "models" / "mall-installer.json"
    other.parent.mkdir(exist_ok=True)
    shutil.copyfile(model_file, other)
    named = site["work"] / "named.yaml"
    named.write_text(site["text"].replace("#COUNTING", f"    counting: {{model: {other}}}"), encoding="utf-8")
    assert f"camera mall: counts in auto mode with {other} (named in the configuration;" in check(named)
