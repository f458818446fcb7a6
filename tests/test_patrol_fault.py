"""`patrol_fault` alerts (pure): start once the patrol cannot move for patrol_fault_after_s, end
when it moves again, repeat while open, and leave an offline camera to `camera_offline`."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.camera.patrol_fault import PatrolFaultWatch
from gateway.config.models import Camera, GatewaySection
from gateway.events import validate_alert
from gateway.events.watch import HEARTBEAT_S
from gateway.onvif.patrol import PatrolStatus

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CAMERA = Camera.model_validate({
    "id": "ptz", "name": "南湖公园球机", "grid_id": "DC-07-01",
    "location": {"address": "南湖公园北门", "lat": 30.265, "lon": 120.162},
    "source": {"onvif": {"host": "10.0.0.7", "user": "admin", "password": "x"}},
    "patrol_fault_after_s": 120, "patrol": [{"preset": "1"}, {"preset": "2"}],
})
GATEWAY = GatewaySection(id="gw-1")
FAILING = PatrolStatus(state="failing", stop=1, preset="2", fault=True, move_failures=9, failing_for_s=130,
                       last_error="10.0.0.7:80: not authorized: wrong user or password")
MOVING_AGAIN = PatrolStatus(state="settling", stop=1, preset="2", moves=1, move_failures=9)


def test_a_patrol_fault_starts_once_and_ends_when_the_patrol_moves_again():
    watch = PatrolFaultWatch(CAMERA, GATEWAY)
    assert watch.observe(PatrolStatus(state="failing", stop=1, preset="2", failing_for_s=60), False, 0, T0) == []
    [start] = watch.observe(FAILING, False, 1, T0)
    payload = start.payload
    validate_alert(payload)
    assert (payload["type"], payload["state"], payload["severity"]) == ("patrol_fault", "start", 2)
    assert payload["title_zh"] == "巡逻中断：南湖公园球机" and payload["count"] is None
    assert payload["started_at"] == (T0 - timedelta(seconds=130)).isoformat(timespec="milliseconds")
    assert payload["details"] == {"patrol_stop": 1, "target_preset": "2", "state": "failing",
                                  "error": "10.0.0.7:80: not authorized: wrong user or password"}
    assert payload["rule"] == {"type": "patrol_fault", "patrol_fault_after_s": 120.0}
    assert watch.open and watch.observe(FAILING, False, 2, T0) == []
    [update] = watch.observe(FAILING, False, 1 + HEARTBEAT_S, T0)
    assert update.payload["state"] == "update" and update.payload["seq"] == 2
    [end] = watch.observe(MOVING_AGAIN, False, 700, T0 + timedelta(seconds=700))
    validate_alert(end.payload)
    assert (end.payload["state"], end.payload["event_id"]) == ("end", payload["event_id"])
    assert end.payload["title_zh"] == "巡逻中断：南湖公园球机（已结束）"
    assert not watch.open and watch.observe(MOVING_AGAIN, False, 701, T0) == []


def test_an_offline_camera_is_left_to_camera_offline_until_it_is_back():
    watch = PatrolFaultWatch(CAMERA, GATEWAY)
    assert watch.observe(FAILING, True, 0, T0) == []
    [start] = watch.observe(FAILING, False, 1, T0)  # back online, still cannot move
    assert start.payload["state"] == "start"


def test_stopping_the_camera_ends_an_open_fault():
    watch = PatrolFaultWatch(CAMERA, GATEWAY)
    watch.observe(FAILING, False, 0, T0)
    [end] = watch.close(5, T0)
    assert end.payload["state"] == "end" and watch.close(6, T0) == []
