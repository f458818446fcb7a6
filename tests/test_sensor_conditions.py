"""Video rules conditioned on sensors: `when_sensor` arms a rule only while a sensor is active;
`escalate` raises an open alert's severity while a sensor is active (sent as an update)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from detectors.base import Detections
from gateway.analytics import CameraAnalytics
from gateway.config.models import Camera
from test_rules import BASE, DT, FRAME, GATEWAY, HEIGHT, PLAZA, check


def analytics(rules: list[dict]) -> CameraAnalytics:
    camera = Camera.model_validate({
        "id": "yard", "name": "设备间", "source": {"rtsp": "rtsp://127.0.0.1/s"},
        "resolution": [1920, 1080], "zones": [PLAZA], "rules": rules})
    return CameraAnalytics(camera, GATEWAY, (1920, 1080))


def run(camera: CameraAnalytics, seconds: float, people: int, sensors: dict[str, bool], start: float):
    """Frames every DT with `people` standing still; returns (t, payload) of every message."""
    messages = []
    boxes = np.array([[100 + 200 * i, 500, 100 + 200 * i + 0.4 * HEIGHT, 500 + HEIGHT]
                      for i in range(people)], np.float32).reshape(-1, 4)
    detections = Detections(boxes, np.full(people, 0.9, np.float32), np.zeros(people, np.int32))
    for i in range(round(seconds / DT)):
        t = start + i * DT
        result = camera.process(detections, t, BASE + timedelta(seconds=t), FRAME, sensors=sensors)
        for message in result.events:
            check(message)
            messages.append((t, message.payload))
    return messages


def test_intrusion_is_armed_only_while_the_door_is_open() -> None:
    camera = analytics([{"type": "intrusion", "zone": "plaza", "for_s": 1, "clear_s": 1,
                         "when_sensor": "yard-door"}])
    assert run(camera, 5, 1, {"yard-door": False}, 0.0) == []
    opened = run(camera, 3, 1, {"yard-door": True}, 5.0)
    assert [(t, p["state"]) for t, p in opened] == [(6.0, "start")]
    closed = run(camera, 3, 1, {}, 8.0)  # the door closed (a missing sensor counts as inactive)
    assert [(t, p["state"]) for t, p in closed] == [(9.0, "end")]


def test_crowd_severity_rises_while_the_sos_button_is_active() -> None:
    camera = analytics([{"type": "crowd", "zone": "plaza", "min_people": 3, "for_s": 0, "clear_s": 1,
                         "severity": 2, "escalate": {"sensor": "sos-1", "severity": 4}}])
    calm = run(camera, 2, 3, {"sos-1": False}, 0.0)
    assert [(p["state"], p["severity"]) for _t, p in calm] == [("start", 2)]
    pressed = run(camera, 2, 3, {"sos-1": True}, 2.0)
    assert [(t, p["state"], p["severity"]) for t, p in pressed] == [(2.0, "update", 4)]
    assert pressed[0][1]["details"]["escalated_by"] == "sos-1"
    released = run(camera, 1, 3, {"sos-1": False}, 4.0)
    assert [(p["state"], p["severity"]) for _t, p in released] == [("update", 2)]
    assert {p["event_id"] for _t, p in calm + pressed + released} == {calm[0][1]["event_id"]}
