"""The page's 标注人数 tool end to end: `gateway run` as a real process (real detector, the Mall
crowd clip as a live camera, real Mosquitto), its API over real HTTP, and the page in headless
Chromium, the way an installer fits a camera's counting model without a recording.

The browser (a 1366x768 laptop) opens the tool while the camera's counting background still
warms up (the panel counts down, the buttons it cannot use look it), takes five live snapshots,
each shown whole at 1x, and on each clicks every annotated head of that frame (the frame is
recognised among the clip's 800 frames; one snapshot is marked at 2x zoom, and one mark is
removed and put back by clicking it), saves, fits, reads the cross-validated error with what it
means and the before/after count, and the running camera then counts with the model: no restart.
Undo and redo restore exactly the marks there were, from the buttons and from the keyboard.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap

import cv2
import httpx
import numpy as np
import pytest

from conftest import REPO, SHARED, YOLOX_NANO
from gateway.analytics.counting import CountingModel
from mqtt_broker import Mosquitto, free_port
from waiting import PATIENCE_S, wait_until
from web_support import browser  # noqa: F401  (fixture)
from web_support import wait_until as page_wait

MALL = SHARED / "data" / "mall-train"
VIDEO = MALL / "mall_train_0001-0800_2fps.mp4"
TOKEN = "counting-test-token-5d1e8b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WARMUP_PATIENCE_S = 300.0
"""The counting background learns from about 95 s of live frames before the first snapshot."""
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def clip_frames() -> np.ndarray:
    """The clip's 800 frames, small and grey: to recognise which frame a snapshot shows."""
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (160, 120), interpolation=cv2.INTER_AREA))
    assert len(frames) == 800
    return np.stack(frames).astype(np.float32)


@pytest.fixture(scope="module")
def heads() -> list[np.ndarray]:
    points = json.loads((MALL / "points.json").read_text())
    return [np.asarray(points[f"seq_{k + 1:06d}.jpg"]).reshape(-1, 2) for k in range(800)]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    work = tmp_path_factory.mktemp("counting-web")
    broker = Mosquitto(work / "broker")
    broker.start()
    port = free_port()
    config = work / "site.yaml"
    config.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-count, timezone: Asia/Shanghai, data_dir: {work / 'data'}}}
        detector: {{model: {YOLOX_NANO}, input_size: 416, threads: 2}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}}}
        api: {{bind: 127.0.0.1, port: {port}, token: {TOKEN}}}
        cameras:
          - id: mall
            name: 商场中庭
            source: {{file: {VIDEO}, loop: true}}
            fps: 2
            resolution: [640, 480]
        """), encoding="utf-8")
    log_path = work / "gateway.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)], cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=PATIENCE_S) as client:
            def streaming() -> bool:
                if process.poll() is not None:
                    pytest.fail(f"gateway exited ({process.returncode}):\n{log_path.read_text()}")
                try:
                    return client.get("/api/cameras/mall").json().get("frame_size") == [640, 480]
                except httpx.HTTPError:
                    return False
            wait_until(streaming, 4 * PATIENCE_S, "the mall camera to stream", step=0.5)
            yield {"url": url, "client": client, "data_dir": work / "data", "log": log_path}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(2 * PATIENCE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(PATIENCE_S)
        broker.kill()


# --------------------------------------------------------------------------- over HTTP


def test_counting_api_over_http_refuses_what_it_cannot_do(gateway) -> None:
    client: httpx.Client = gateway["client"]
    assert client.get("/api/cameras/nope/counting").status_code == 404
    started = client.post("/api/cameras/mall/counting/start", headers={"Origin": gateway["url"]})
    assert started.status_code == 200 and started.json()["mode"] == "detector"
    early = client.post("/api/cameras/mall/counting/snapshots", headers={"Origin": gateway["url"]})
    assert early.status_code == 409 and "camera mall" in early.json()["detail"]
    assert "warming up" in early.json()["detail"] or "no analysed frame" in early.json()["detail"]
    fit = client.post("/api/cameras/mall/counting/fit", headers={"Origin": gateway["url"]})
    assert fit.status_code == 409
    assert fit.json()["detail"] == \
        "camera mall: 0 annotated snapshots; a counting model needs at least 5: annotate 5 more"
    assert client.get("/api/cameras/mall/counting/snapshots/not-an-id").status_code == 422
    missing = client.put("/api/cameras/mall/counting/snapshots/20260101120000-abcdef/points",
                         json={"points": [[1, 2]]}, headers={"Origin": gateway["url"]})
    assert missing.status_code == 404 and "no snapshot" in missing.json()["detail"]
    with httpx.Client(base_url=gateway["url"], timeout=PATIENCE_S) as anonymous:
        assert anonymous.get("/api/cameras/mall/counting").status_code == 401
        assert anonymous.post("/api/cameras/mall/counting/fit").status_code == 401


# --------------------------------------------------------------------------- in the browser


def open_tool(browser, gateway):  # noqa: F811  (browser: the shared fixture)
    """A laptop's page on the 标注人数 tool, its errors collected."""
    context = browser.new_context(viewport=LAPTOP, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{gateway['url']}/?token={TOKEN}")
    page.click("#tab-installer")
    page.click("#inst-tool-count")
    assert page.locator("#count-panel").is_visible() and not page.locator("#inst-copy").is_visible()
    return context, page, errors


def see_the_warm_up_count_down(page) -> None:
    """While the background learns: a countdown that runs, and buttons that look unusable."""
    page_wait(page, "() => !document.querySelector('#count-warmup').hidden")
    seconds = int(re.search(r"(\d+)", page.locator("#count-warmup-text").inner_text()).group(1))
    assert "秒" in page.locator("#count-warmup-text").inner_text() and seconds > 0
    page_wait(page, "s => Number(/(\\d+)/.exec(document.querySelector('#count-warmup-text').textContent)[1]) < s",
              seconds)
    look = page.evaluate("""() => ['#count-take', '#count-fit'].map(id => {
        const s = getComputedStyle(document.querySelector(id));
        return [s.cursor, s.backgroundColor, s.borderStyle]; })""")
    assert look == [["not-allowed", "rgba(0, 0, 0, 0)", "dashed"]] * 2, look


def assert_whole_picture_on_screen(page) -> None:
    """At 1x the annotation picture fits the window: every head can be reached without scrolling."""
    left, top, right, bottom, width, height, hidden_x, hidden_y = page.evaluate("""() => {
        const r = document.querySelector('#count-img').getBoundingClientRect();
        const box = document.querySelector('#count-scroll');
        return [r.left, r.top, r.right, r.bottom, innerWidth, innerHeight,
                box.scrollWidth - box.clientWidth, box.scrollHeight - box.clientHeight]; }""")
    assert 0 <= left and 0 <= top and right <= width and bottom <= height, (left, top, right, bottom)
    assert hidden_x <= 1 and hidden_y <= 1 and (right - left) > 0.5 * width


def marks(page) -> list[tuple[str, str]]:
    return page.evaluate("() => [...document.querySelectorAll('#count-svg circle.head')]"
                         ".map(c => [c.getAttribute('cx'), c.getAttribute('cy')])")


def which_frame(jpeg: bytes, clip_frames: np.ndarray) -> int:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA).astype(np.float32)
    differences = np.abs(clip_frames - small).mean(axis=(1, 2))
    best = int(np.argmin(differences))
    assert differences[best] < 4.0, f"the snapshot matches no frame (the closest differs by {differences[best]:.1f})"
    return best


def click_head(page, x: float, y: float) -> None:
    """Bring the head into view in the (zoomable) stage, then click it with the mouse."""
    page.evaluate("""([x, y]) => {
        const img = document.querySelector('#count-img'), box = document.querySelector('#count-scroll');
        const scale = img.getBoundingClientRect().width / img.naturalWidth;
        box.scrollLeft = x * scale - box.clientWidth / 2; box.scrollTop = y * scale - box.clientHeight / 2;
    }""", [x, y])
    rect = page.evaluate("() => { const r = document.querySelector('#count-img').getBoundingClientRect();"
                         " return [r.left, r.top, r.width, r.height]; }")
    page.mouse.click(rect[0] + x * rect[2] / 640, rect[1] + y * rect[3] / 480)


def too_close_at_full_view(page, points: np.ndarray) -> bool:
    """Two heads closer than a click's reach (6 screen pixels, and a margin) without zoom."""
    scale = page.evaluate("() => document.querySelector('#count-img').getBoundingClientRect().width / 640")
    gaps = np.hypot(*(points[:, None] - points[None]).transpose(2, 0, 1)) + np.eye(len(points)) * 1e9
    return bool(gaps.min() * scale < 8)


def test_installer_annotates_fits_and_the_camera_counts_with_the_model(
        gateway, browser, clip_frames, heads) -> None:  # noqa: F811  (browser: the shared fixture)
    client: httpx.Client = gateway["client"]
    context, page, errors = open_tool(browser, gateway)
    # opened while the background still learns: the panel counts down, then allows snapshots by itself
    page_wait(page, "() => /正在学习空场景背景|正在启动/.test(document.querySelector('#count-status').textContent)")
    assert page.locator("#count-take").is_disabled()
    see_the_warm_up_count_down(page)
    try:
        page_wait(page, "() => !document.querySelector('#count-take').disabled", timeout=WARMUP_PATIENCE_S)
    except AssertionError as error:
        status = page.locator("#count-status").inner_text()
        raise AssertionError(f"{error}; the panel says: {status}; API: {client.get('/api/cameras/mall/counting').text}"
                             f"\n{gateway['log'].read_text()[-2000:]}") from None

    clicked: dict[str, np.ndarray] = {}
    for round_ in range(5):
        before = page.evaluate("() => document.querySelectorAll('#count-shots button').length")
        page.click("#count-take")
        page_wait(page, f"() => document.querySelectorAll('#count-shots button').length === {before + 1}"
                        " && !document.querySelector('#count-img').hidden")
        shot_id = page.evaluate("() => document.querySelector('#count-shots button.on').dataset.id")
        assert_whole_picture_on_screen(page)
        jpeg = client.get(f"/api/cameras/mall/counting/snapshots/{shot_id}/image.jpg").content
        frame = which_frame(jpeg, clip_frames)
        if round_ == 1 or too_close_at_full_view(page, heads[frame]):
            page.click("#count-zoom button[data-zoom='2']")  # small far heads: mark them zoomed in
        for x, y in heads[frame]:
            click_head(page, x, y)
        marks = page.evaluate("() => document.querySelectorAll('#count-svg circle.head').length")
        assert marks == len(heads[frame])
        if round_ == 0:  # a mistaken mark comes off with a second click, and goes back on
            x, y = heads[frame][0]
            click_head(page, x, y)
            assert page.evaluate("() => document.querySelectorAll('#count-svg circle.head').length") == marks - 1
            click_head(page, x, y)
        chip = page.locator("#count-shots button.on")
        assert re.fullmatch(rf"#\d+ · 未保存 {marks}", chip.inner_text())  # not "未标注": marked, not saved yet
        page.click("#count-zoom button[data-zoom='1']")
        page.click("#count-save")
        page_wait(page, "() => document.querySelector('#count-save').disabled")
        assert re.fullmatch(rf"#\d+ · {marks} 人", chip.inner_text())
        clicked[shot_id] = heads[frame]

    page_wait(page, "() => document.querySelector('#count-need').dataset.annotated === '5'"
                    " && !document.querySelector('#count-fit').disabled")
    page.click("#count-fit")
    page_wait(page, "() => !document.querySelector('#count-result').hidden", timeout=2 * PATIENCE_S)
    cv_text = page.locator("#count-cv").inner_text()
    compare = page.locator("#count-compare").inner_text()
    status_text = page.locator("#count-status").inner_text()  # the fit shows at once, applied or not yet
    assert "尚未拟合" not in status_text and "5 帧" in status_text, status_text
    assert cv_text.startswith("交叉验证误差：") and "5 帧" in cv_text and "常见人数" in cv_text, cv_text
    verdict = page.locator("#count-verdict").inner_text()
    assert re.match(r"^(良好|尚可|偏大)：", verdict), verdict  # what the error means for this scene
    help_text = page.locator("#count-help").inner_text()
    assert "交叉验证误差" in help_text and "10%" in help_text and "auto" in help_text
    assert compare.startswith("最新一帧：标注 ") and "检测器" in compare and "模型" in compare, compare
    assert "counting: {mode: auto, model: " in page.locator("#count-yaml").inner_text()
    print(f"\n{cv_text}\n{compare}")

    for shot_id, expected in clicked.items():  # the marks landed where they were clicked, zoomed or not
        saved = np.asarray(client.get(f"/api/cameras/mall/counting/snapshots/{shot_id}").json()["points"])
        nearest = np.hypot(*(expected[:, None] - saved[None]).transpose(2, 0, 1)).min(axis=1)
        assert saved.shape == expected.shape and nearest.max() <= 1.5

    model = CountingModel.from_dict(json.loads((gateway["data_dir"] / "counting" / "mall.json").read_text()))
    assert model.camera_id == "mall" and model.frame_size == (640, 480) and model.training["frames"] == 5

    def counting_with_the_model() -> dict | None:
        status = client.get("/api/cameras/mall/counting").json()
        return status if status["active_mode"] == "auto" and status["estimated"] is not None else None
    status = wait_until(counting_with_the_model, PATIENCE_S, "the camera to count with the new model", step=0.5)
    assert status["model"]["frames"] == 5 and status["model"]["cross_validation"]["mae"] > 0
    assert status["estimated"] > status["detected"]  # the dense scene the detector cannot separate
    page_wait(page, "() => !/尚未拟合/.test(document.querySelector('#count-status').textContent)"
                    " && /5 帧/.test(document.querySelector('#count-status').textContent)")
    page.click("#lang")
    assert page.locator("#count-cv").inner_text().startswith("Cross-validated error:")
    assert "10 %" in page.locator("#count-help").inner_text() and page.locator("#count-verdict").inner_text()
    context.close()
    assert not errors, errors


def test_undo_and_redo_restore_exactly_the_marks_there_were(gateway, browser) -> None:  # noqa: F811
    context, page, errors = open_tool(browser, gateway)
    page_wait(page, "() => !document.querySelector('#count-take').disabled", timeout=WARMUP_PATIENCE_S)
    before = page.evaluate("() => document.querySelectorAll('#count-shots button').length")
    page.click("#count-take")
    page_wait(page, f"() => document.querySelectorAll('#count-shots button').length === {before + 1}"
                    " && !document.querySelector('#count-img').hidden")
    for x, y in [(100, 100), (320, 240), (540, 380)]:
        click_head(page, x, y)
    three = marks(page)
    click_head(page, 320, 240)  # the middle mark comes off
    assert marks(page) == [three[0], three[2]]
    page.click("#count-undo")  # back exactly where it was, and no other mark goes
    assert marks(page) == three
    page.click("#count-undo")  # the last mark added
    assert marks(page) == three[:2]
    page.click("#count-redo")
    assert marks(page) == three
    page.click("#count-redo")
    assert marks(page) == [three[0], three[2]] and page.locator("#count-redo").is_disabled()
    page.click("#count-clear")
    assert marks(page) == []
    page.keyboard.press("Control+z")  # the keys work in the tool on screen
    assert marks(page) == [three[0], three[2]]
    page.keyboard.press("Control+z")
    assert marks(page) == three
    page.keyboard.press("Control+Shift+z")
    assert marks(page) == [three[0], three[2]]
    page.keyboard.press("Control+y")
    assert marks(page) == []
    page.click("#count-delete")
    page_wait(page, f"() => document.querySelectorAll('#count-shots button').length === {before}")
    context.close()
    assert not errors, errors


# --------------------------------------------------------------------------- over HTTP, warm


def test_points_are_checked_against_the_snapshot(gateway) -> None:
    client: httpx.Client = gateway["client"]
    origin = {"Origin": gateway["url"]}
    wait_until(lambda: client.get("/api/cameras/mall/counting").json()["warmup_left_s"] == 0, WARMUP_PATIENCE_S,
               "the counting background to warm up", step=1.0)
    shot = client.post("/api/cameras/mall/counting/snapshots", headers=origin)
    assert shot.status_code == 201, shot.text
    shot_id = shot.json()["id"]
    image = client.get(f"/api/cameras/mall/counting/snapshots/{shot_id}/image.jpg")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
    path = f"/api/cameras/mall/counting/snapshots/{shot_id}/points"
    outside = client.put(path, json={"points": [[10, 10], [700, 5]]}, headers=origin)
    assert outside.status_code == 422 and outside.json()["detail"] == [
        {"loc": ["body", "points"], "msg": "points[1]: [700, 5] lies outside the 640x480 picture",
         "type": "value_error"}]  # shaped like every validation error of the API
    assert client.put(path, json={"points": [[1, 2, 3]]}, headers=origin).status_code == 422
    assert client.put(path, json={"points": "many"}, headers=origin).status_code == 422
    assert client.put(path, json={"points": [[5, 5]], "extra": 1}, headers=origin).status_code == 422
    saved = client.put(path, json={"points": [[5.5, 6.5]]}, headers=origin)
    assert saved.status_code == 200 and saved.json()["points"] == [[5.5, 6.5]]
    assert client.get(f"/api/cameras/mall/counting/snapshots/{shot_id}").json()["points"] == [[5.5, 6.5]]
    assert client.delete(f"/api/cameras/mall/counting/snapshots/{shot_id}", headers=origin).status_code == 204
    assert client.get(f"/api/cameras/mall/counting/snapshots/{shot_id}").status_code == 404
