"""Shared parts of the web API and page tests: a `GatewayView` over real frames, real alerts,
and the app served by a real uvicorn on a free loopback port.

* Frames: decoded from ../shared/data/vtest.avi (768x576) once per session.
* People: the real YOLOX-Nano detector on those frames (cached), drawn on the live snapshots
  and used as the members of the alerts.
* Alerts: `gateway.events.OpenEvent` messages with real evidence JPEGs, validated against the
  gw.alert/1 schema, queued in a real `Outbox` and recorded in the `EventHistory`, the way the
  service does it.
* The "north" camera's URL carries a password (`PASSWORD`); its view deliberately returns the
  raw URL in `source` and `last_error`, so the tests prove the API redacts on its own.
"""

from __future__ import annotations

import functools
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import playwright.sync_api as playwright_api  # pip install playwright; never `playwright install`: Debian's browser
import pytest
from pydantic import SecretStr

from detectors import DetectorSettings, create_detector
from detectors.base import Detections
from gateway.api.app import create_app
from gateway.api.metrics import GatewayMetrics
from gateway.api.server import make_server
from gateway.config.models import ApiSection, Camera
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import CaseLedger
from gateway.delivery.outbox import Outbox
from gateway.events import (
    AlertMessage,
    AlertSource,
    AlertSubject,
    Evidence,
    OpenEvent,
    Reading,
    UpdatePolicy,
    take_snapshot,
    validate_alert,
)
from gateway.events.snapshot import encode_bounded, render
from gateway.status import CameraStatus, ZoneOutline
from gateway.video.decode import decode_frames, open_video
from waiting import PATIENCE_S

REPO = Path(__file__).resolve().parent.parent
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"
MODEL = REPO.parent / "shared" / "models" / "yolox_nano.onnx"
TZ = ZoneInfo("Asia/Shanghai")
TOKEN = "test-token-7f3a9c2e51b84d06"
PASSWORD = "Pa55w0rd-NorthGate"
GATEWAY_ID = "gw-dongmen"
FRAME_INDEXES = tuple(range(0, 300, 12))
SIGN = [[20, 100], [60, 100], [60, 150], [20, 150]]
"""An information sign the detector takes for a person (see tests/test_analytics_video.py): masked."""

CAMERAS = [
    Camera.model_validate({
        "id": "gate", "name": "东门广场", "grid_id": "DM-03", "resolution": [768, 576],
        "location": {"address": "东门街道人民路 18 号广场", "lat": 30.2741, "lon": 120.1551},
        "source": {"rtsp": "rtsp://viewer:${X}@192.0.2.10:554/Streaming/Channels/102"
                   .replace("${X}", "plain-gate-pass")},
        "masks": [{"name": "information sign", "polygon": SIGN}],
        "zones": [{"id": "plaza", "name": "广场中心", "polygon": [[200, 150], [740, 150], [740, 560], [200, 560]]}],
        "rules": [{"type": "gathering", "zone": "plaza", "min_people": 3}],
    }),
    Camera.model_validate({
        "id": "market", "name": "农贸市场入口", "grid_id": "DM-07", "coordinates": "normalized",
        "location": {"address": "东门街道菜市场北门"},
        "source": {"file": "vtest.avi"},
        "zones": [{"id": "entrance", "name": "入口通道", "polygon": [[0.1, 0.2], [0.9, 0.2], [0.9, 0.95], [0.1, 0.95]]}],
        "rules": [{"type": "crowd", "zone": "entrance", "min_people": 4}],
    }),
    Camera.model_validate({
        "id": "north", "name": "北门停车场", "grid_id": "DM-11",
        "location": {"address": "北门停车场出入口"},
        "source": {"rtsp": f"rtsp://admin:{PASSWORD}@192.0.2.11:554/cam/realmonitor?channel=1&subtype=1"},
    }),
]


# --------------------------------------------------------------------------- real frames and people


@functools.cache
def frames() -> dict[int, np.ndarray]:
    """Frames FRAME_INDEXES of vtest.avi as BGR arrays (decoded once)."""
    wanted, out = set(FRAME_INDEXES), {}
    container = open_video(VTEST)
    try:
        for decoded in decode_frames(container):
            if decoded.index in wanted:
                out[decoded.index] = decoded.bgr()
            if decoded.index >= max(wanted):
                break
    finally:
        container.close()
    return out


@functools.cache
def people() -> dict[int, Detections]:
    """The real detector's people on every cached frame (outside the sign mask)."""
    detector = create_detector(DetectorSettings(model=MODEL, threads=2))
    try:
        result = {}
        for index, frame in frames().items():
            found = detector.detect(frame)
            feet_x = (found.boxes[:, 0] + found.boxes[:, 2]) / 2
            feet_y = found.boxes[:, 3]
            in_sign = (feet_x >= 20) & (feet_x <= 60) & (feet_y >= 100) & (feet_y <= 150)
            result[index] = found.select(~in_sign)
        return result
    finally:
        detector.close()


def _frame_for(camera_id: str, index: int) -> np.ndarray:
    frame = frames()[index]
    return frame[:, ::-1].copy() if camera_id == "market" else frame  # a second "camera": mirrored


def _boxes_for(camera_id: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    found = people()[index]
    boxes = found.boxes.copy()
    if camera_id == "market":
        boxes[:, [0, 2]] = 768 - boxes[:, [2, 0]]
    return boxes, found.scores


def _zone_pixels(camera: Camera) -> list[ZoneOutline]:
    zones = []
    for zone in camera.zones:
        scale = (768, 576) if camera.coordinates == "normalized" else (1, 1)
        zones.append(ZoneOutline(zone.id, zone.name, [(x * scale[0], y * scale[1]) for x, y in zone.polygon]))
    return zones


# --------------------------------------------------------------------------- the view


class DemoView:
    """`GatewayView` over real frames: two streaming cameras cycle through vtest.avi, one is down."""

    def __init__(self, gateway_id: str = GATEWAY_ID, gateway_name: str = "东门街道综治中心网关", *,
                 router: Any = None, outputs: dict[str, Any] | None = None) -> None:
        """router: a started `AlertRouter` whose health (every output, the disk) the view reports;
        outputs: sinks by name to report instead (a publisher alone, for /metrics)."""
        self.gateway_id = gateway_id
        self.gateway_name = gateway_name
        self.started = time.monotonic()
        self.detector_alive = True
        self.snapshot_calls = 0
        self.router = router
        self.outputs = outputs or {}

    def _index(self) -> int:
        step = int((time.monotonic() - self.started) / 1.0)
        return FRAME_INDEXES[step % len(FRAME_INDEXES)]

    def cameras(self) -> list[CameraStatus]:
        out = []
        for camera in CAMERAS:
            raw_url = camera.source.rtsp if hasattr(camera.source, "rtsp") else str(camera.source.file)
            down = camera.id == "north"
            out.append(CameraStatus(
                id=camera.id, name=camera.name, grid_id=camera.grid_id, address=camera.location.address,
                state="backoff" if down else "streaming",
                analysed_fps=0.0 if down else 2.0, decoded_fps=0.0 if down else 0.5,
                last_frame_age_s=None if down else 0.4, reconnects=7 if down else 0,
                last_error=f"{raw_url}: cannot open: Connection refused" if down else None,
                skip_ratio=None if down else 0.35,
                frame_size=None if down else (768, 576),
                zones=_zone_pixels(camera),
                masks=[ZoneOutline("", m.name, [tuple(p) for p in m.polygon]) for m in camera.masks],
                source=raw_url,  # deliberately NOT redacted: the API must do it
                resolution=camera.resolution, coordinates=camera.coordinates,
            ))
        return out

    def camera_snapshot(self, camera_id: str) -> bytes | None:
        camera = next((c for c in CAMERAS if c.id == camera_id), None)
        if camera is None or camera_id == "north":
            return None
        self.snapshot_calls += 1
        index = self._index()
        boxes, _ = _boxes_for(camera_id, index)
        evidence = Evidence(
            boxes, np.arange(1, len(boxes) + 1), np.zeros(len(boxes), bool),
            zones=tuple(np.asarray(z.polygon, np.float32) for z in _zone_pixels(camera)),
            masks=[np.asarray(m.polygon, np.float32) for m in camera.masks],
            caption=(f"{camera_id}  {len(boxes)} persons  frame {index}",),
        )
        jpeg, _, _ = encode_bounded(render(_frame_for(camera_id, index), evidence), max_width=768)
        return jpeg

    def has_camera(self, camera_id: str) -> bool:
        return any(camera.id == camera_id for camera in CAMERAS)

    def camera_online(self, camera_id: str) -> bool:
        return self.has_camera(camera_id) and camera_id != "north"

    def health(self) -> dict[str, Any]:
        if self.router is not None:
            return self.router.health()
        return {"outputs": {name: {"alive": sink.alive, **sink.health()} for name, sink in self.outputs.items()},
                "disk_full": False}

    def failed_workers(self) -> list[str]:
        dead = [] if self.detector_alive else ["analysis thread is dead"]
        return dead + (self.router.failures() if self.router is not None else [])

    def readiness(self) -> dict[str, bool]:
        checks = {"detector": self.detector_alive}
        checks.update({f"camera:{c.id}": True for c in CAMERAS})  # reader threads alive (north retries)
        return checks


# --------------------------------------------------------------------------- real alerts


@dataclass
class LiveEvent:
    camera: Camera
    event: OpenEvent
    zone: ZoneOutline | None
    t: float = 0.0


class Alerts:
    """Builds real alert messages and delivers them as the service does: through the alert router
    when there is one, else into the outbox (if any), the case ledger and the history."""

    def __init__(self, outbox: Outbox | None, history: EventHistory, ledger: CaseLedger, router=None) -> None:
        self.outbox = outbox
        self.history = history
        self.ledger = ledger
        self.router = router

    def start(self, camera_id: str, event_type: str, frame_index: int, *, severity: int = 3,
              ago_s: float = 0.0) -> tuple[LiveEvent, AlertMessage]:
        camera = next(c for c in CAMERAS if c.id == camera_id)
        zone = _zone_pixels(camera)[0] if camera.zones else None
        loc = camera.location
        source = AlertSource(GATEWAY_ID, camera.id, camera.name, camera.grid_id, loc.address, loc.lat, loc.lon,
                             (768, 576))
        rule = {"type": event_type, "zone": zone.id if zone else None, "min_people": 3, "for_s": 5}
        subject = AlertSubject(event_type, severity, zone.name if zone else camera.name,
                               zone.id if zone else None, zone.name if zone else None,
                               f"{event_type}-{zone.id if zone else 'frame'}", rule)
        now = datetime.now(TZ) - timedelta(seconds=ago_s)
        live = LiveEvent(camera, OpenEvent(source, subject, UpdatePolicy(min_change=1, every_s=60),
                                           now - timedelta(seconds=5)), zone)
        message = live.event.start(self._reading(camera_id, frame_index), live.t, now,
                                   lambda: self._picture(live, frame_index, now))
        self.deliver(message)
        return live, message

    def update(self, live: LiveEvent, frame_index: int) -> AlertMessage:
        live.t += 5
        now = datetime.now(TZ)
        reading = self._reading(live.camera.id, frame_index)
        live.event.observe(reading.count or 0, live.t)
        message = live.event.update(reading, live.t, now, lambda: self._picture(live, frame_index, now))
        self.deliver(message)
        return message

    def end(self, live: LiveEvent) -> AlertMessage:
        live.t += 5
        now = datetime.now(TZ)
        message = live.event.end(Reading(0), live.t, now, now - timedelta(seconds=2))
        self.deliver(message)
        return message

    def deliver(self, message: AlertMessage) -> None:
        validate_alert(message.payload)
        if self.router is not None:
            self.router.route([message])
            return
        if self.outbox is not None:
            topic = f"gw/{GATEWAY_ID}/events/{message.payload['camera_id']}"
            self.outbox.put(topic, message.payload, message.event_id, message.seq, message.state)
        self.ledger.note_events([message])
        self.history.record(message)

    @staticmethod
    def _reading(camera_id: str, frame_index: int) -> Reading:
        boxes, scores = _boxes_for(camera_id, frame_index)
        members = [{"track_id": i + 1, "box": [round(float(v), 1) for v in box], "score": round(float(s), 3)}
                   for i, (box, s) in enumerate(zip(boxes, scores))]
        return Reading(len(members), members)

    @staticmethod
    def _picture(live: LiveEvent, frame_index: int, now: datetime):
        boxes, _ = _boxes_for(live.camera.id, frame_index)
        evidence = Evidence(
            boxes, np.arange(1, len(boxes) + 1), np.ones(len(boxes), bool),
            zones=(np.asarray(live.zone.polygon, np.float32),) if live.zone else (),
            masks=[np.asarray(m.polygon, np.float32) for m in live.camera.masks],
            hull=live.event.subject.type == "gathering",
            caption=(f"{live.event.subject.type} {len(boxes)} persons", now.strftime("%Y-%m-%d %H:%M:%S")),
        )
        return take_snapshot(_frame_for(live.camera.id, frame_index), evidence, now)


# --------------------------------------------------------------------------- serving


@dataclass
class Served:
    url: str
    view: DemoView
    history: EventHistory
    ledger: CaseLedger
    outbox: Outbox | None
    alerts: Alerts
    metrics: GatewayMetrics
    app: object


@contextmanager
def serve(data_dir: Path, token: str | None = TOKEN, publisher_factory=None, router=None,
          **app_options) -> Iterator[Served]:
    """The app on a real uvicorn bound to a free 127.0.0.1 port, stopped on exit.

    publisher_factory(outbox) -> publisher: an MQTT output over an outbox of its own, reported by
    the view for /metrics' MQTT series (started by the caller).
    router: a started `AlertRouter` (its history and case ledger are served, its outputs' health
    is in /healthz and /metrics, page acks reach the centre through its ledger); the caller stops it.
    """
    if router is not None:
        history, ledger, outbox = router.history, router.ledger, None
        view = DemoView(router=router)
    else:
        history = EventHistory(data_dir)
        ledger = CaseLedger(data_dir, history=history, timezone=TZ)
        outbox = Outbox.in_dir(data_dir) if publisher_factory else None
        view = DemoView(outputs={"mqtt": publisher_factory(outbox)} if publisher_factory else None)
    metrics = GatewayMetrics(view=view, history=history)
    settings = ApiSection(bind="127.0.0.1", port=8080, token=SecretStr(token) if token else None)
    app = create_app(view, history, ledger, settings, metrics=metrics, timezone="Asia/Shanghai", **app_options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = make_server(app, settings, port=port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", view, history, ledger, outbox, Alerts(outbox, history, ledger, router),
                     metrics, app)
    finally:
        server.should_exit = True
        thread.join(timeout=PATIENCE_S)
        sock.close()
        if router is None:
            history.close()
            ledger.close()
            if outbox is not None:
                outbox.close()
        if thread.is_alive():
            raise RuntimeError(f"the API server did not stop within {PATIENCE_S:.0f} s")


# --------------------------------------------------------------------------- the browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright, one per test module."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing (apt-get install chromium; .ci/setup installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def wait_until(page, script: str, arg=None, timeout: float = PATIENCE_S) -> None:
    """Poll a JS expression (run through the debugger protocol: the page's CSP forbids eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {script}")
        page.wait_for_timeout(50)
