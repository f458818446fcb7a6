"""`patrol_fault` alerts (pure): start once the patrol cannot move for patrol_fault_after_s, end
when it moves again, repeat while open, leave an offline camera to `camera_offline`, name the stop
that fails, and are logged when (and only when) raised."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.camera.patrol_fault import PatrolFaultWatch
from gateway.config.models import Camera, GatewaySection
from gateway.events import validate_alert
from gateway.events.watch import HEARTBEAT_S
from gateway.status import PatrolStatus

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


def test_the_alert_is_logged_when_it_is_raised_with_how_long_the_patrol_had_failed(caplog):
    """The driver used to log "raising a patrol_fault alert" when its timer crossed the threshold:
    also while the camera was offline (no alert was sent), and with the time of that moment."""
    caplog.set_level(logging.INFO, logger="gateway.camera")
    watch = PatrolFaultWatch(CAMERA, GATEWAY)
    assert watch.observe(FAILING, True, 0, T0) == [] and caplog.records == []  # offline: no alert, no line
    later = replace(FAILING, failing_for_s=412.4)
    [start] = watch.observe(later, False, 1, T0)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.getMessage() == (
        "camera ptz: PTZ patrol cannot reach patrol[1] (preset 2) for 412 s (patrol_fault_after_s 120): "
        "10.0.0.7:80: not authorized: wrong user or password; raising a patrol_fault alert (巡逻中断), "
        "ended when the camera gets there")
    assert start.payload["started_at"] == (T0 - timedelta(seconds=412.4)).isoformat(timespec="milliseconds")
    watch.observe(MOVING_AGAIN, False, 2, T0)
    assert caplog.records[-1].levelno == logging.INFO and "patrol_fault alert ended" in caplog.records[-1].getMessage()


def test_a_stop_failing_while_another_is_watched_is_the_one_the_alert_names():
    watch = PatrolFaultWatch(CAMERA, GATEWAY)
    typo = PatrolStatus(state="watching", stop=0, preset="1", fault=True, moves=9, move_failures=12,
                        failing_for_s=150, failing_stop=1,
                        last_error="10.0.0.7:80: no PTZ preset '2' (presets: 东门 (1), 广场 (3))")
    [start] = watch.observe(typo, False, 0, T0)
    validate_alert(start.payload)
    assert start.payload["details"] == {"patrol_stop": 1, "target_preset": "2", "state": "watching",
                                        "error": "10.0.0.7:80: no PTZ preset '2' (presets: 东门 (1), 广场 (3))"}
