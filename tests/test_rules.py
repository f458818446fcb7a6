"""Rules end to end through CameraAnalytics, on scripted detections with exact expected times.

Frames come every 0.25 s (exact in binary floating point, so 'held for 2 s' is exact). People are
170 px tall, so without calibration 100 px between feet is 1.0 m. Two facts of the pipeline
shape the expected times: a person appearing after the first frame is counted from their second
detection (tentative tracks), and a person no longer detected is still counted for 3 frames
(coasting), so they stop counting on the 4th missed frame.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from detectors.base import Detections
from gateway.analytics import CameraAnalytics, FrameResult
from gateway.analytics.rules.timing import Debounce, Schedule, Timing, Transition
from gateway.config.models import Camera, GatewaySection
from gateway.events import AlertMessage, validate_alert

SHANGHAI = ZoneInfo("Asia/Shanghai")
GATEWAY = GatewaySection(id="gw-test", timezone="Asia/Shanghai")
BASE = datetime(2024, 5, 1, 12, 0, tzinfo=SHANGHAI)
DT = 0.25
HEIGHT = 170.0
FRAME = np.full((1080, 1920, 3), 90, np.uint8)
PLAZA = {"id": "plaza", "name": "东门广场", "polygon": [[0, 0], [960, 0], [960, 1080], [0, 1080]]}


def check(message: AlertMessage) -> None:
    """Every emitted message: schema-valid, JSON-serialisable, raw JPEG equal to the inline one."""
    validate_alert(message.payload)
    json.dumps(message.payload, ensure_ascii=False)
    snapshot = message.payload["snapshot"]
    if snapshot is None:
        assert message.snapshot_jpeg is None
    else:
        assert base64.b64decode(snapshot["data"]) == message.snapshot_jpeg


class Scenario:
    """Feeds scripted people to one camera's analytics and keeps every message with its time."""

    def __init__(self, rules: list[dict], zones: list[dict] | None = None, **camera):
        config = {
            "id": "cam1",
            "name": "东门",
            "grid_id": "G-07",
            "location": {"address": "东门广场", "lat": 30.1, "lon": 120.2},
            "source": {"rtsp": "rtsp://127.0.0.1/s"},
            "resolution": [1920, 1080],
            "zones": zones if zones is not None else [PLAZA],
            "rules": rules,
            **camera,
        }
        self.analytics = CameraAnalytics(Camera.model_validate(config), GATEWAY, (1920, 1080))
        self.messages: list[tuple[float, AlertMessage]] = []

    def frame(self, t: float, people: list[tuple[float, float]], now: datetime | None = None) -> FrameResult:
        boxes = np.array(
            [[x - 0.2 * HEIGHT, y - HEIGHT, x + 0.2 * HEIGHT, y] for x, y in people], np.float32
        ).reshape(-1, 4)
        detections = Detections(boxes, np.full(len(boxes), 0.9, np.float32), np.zeros(len(boxes), np.int32))
        result = self.analytics.process(detections, t, now or BASE + timedelta(seconds=t), FRAME)
        self._keep(t, result.events)
        return result

    def play(self, start: float, stop: float, people) -> None:
        """Frames from start (inclusive) to stop (exclusive); `people(t)` gives positions."""
        for i in range(round((stop - start) / DT)):
            t = start + i * DT
            self.frame(t, people(t))

    def close(self, t: float) -> None:
        self._keep(t, self.analytics.close_all(t, BASE + timedelta(seconds=t)))

    def _keep(self, t: float, messages: list[AlertMessage]) -> None:
        for message in messages:
            check(message)
            self.messages.append((t, message))

    def log(self) -> list[tuple]:
        """(t, state, seq, count, member ids) per message, for exact comparisons."""
        return [
            (t, m.state, m.seq, m.payload["count"], sorted(p["track_id"] for p in m.payload["members"]))
            for t, m in self.messages
        ]

    def payloads(self) -> list[dict]:
        return [m.payload for _, m in self.messages]


def at(seconds: float) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def row(n: int, x0: float = 100, y: float = 800, spacing: float = 100) -> list[tuple[float, float]]:
    return [(x0 + spacing * i, y) for i in range(n)]


# --------------------------------------------------------------------------- the timing machine


def test_debounce_holds_for_and_clears():
    debounce = Debounce(Timing(for_s=1.0, clear_s=0.5, cooldown_s=2.0))
    steps = [(0.0, True), (0.5, True), (1.0, True), (1.25, False), (1.5, True)]
    steps += [(1.75, False), (2.0, False), (2.25, False)]
    transitions = [debounce.step(cond, t) for t, cond in steps]
    assert transitions == [None, None, Transition.START, None, None, None, None, Transition.END]
    assert debounce.cooldown_until == 4.25
    assert [debounce.step(True, t) for t in (3.0, 4.0, 4.25)] == [None, None, Transition.START]


def test_schedule_windows_across_midnight_in_the_gateway_timezone():
    night = Schedule(["22:00-06:00"], SHANGHAI)
    local = lambda h, m: datetime(2024, 5, 1, h, m, tzinfo=SHANGHAI)  # noqa: E731
    assert [night.active(local(h, m)) for h, m in [(21, 59), (22, 0), (23, 59), (0, 0), (5, 59), (6, 0), (12, 0)]] == [
        False, True, True, True, True, False, False,
    ]
    # 14:30 UTC is 22:30 in Shanghai.
    assert night.active(datetime(2024, 5, 1, 14, 30, tzinfo=timezone.utc))
    office = Schedule(["08:00-12:00", "13:00-17:30"], SHANGHAI)
    assert [office.active(local(h, m)) for h, m in [(7, 59), (8, 0), (12, 30), (17, 29), (17, 30)]] == [
        False, True, False, True, False,
    ]
    assert Schedule(["00:00-24:00"], SHANGHAI).active(local(23, 59))
    assert Schedule([], SHANGHAI).active(local(3, 0))


# --------------------------------------------------------------------------- crowd


def test_crowd_start_updates_and_end_at_exact_times():
    scenario = Scenario(
        [{"type": "crowd", "zone": "plaza", "min_people": 3, "for_s": 2, "clear_s": 1,
          "updates": {"min_change": 2, "min_change_share": 0, "settle_s": 0, "every_s": 10}}]
    )
    two, three, five = row(2), row(3), row(5)
    scenario.play(0.0, 1.0, lambda t: two)
    scenario.play(1.0, 5.0, lambda t: three)  # third person counted from 1.25
    scenario.play(5.0, 17.0, lambda t: five)  # two more counted from 5.25
    scenario.play(17.0, 20.0, lambda t: two)  # three leave: counted until 17.5, gone at 17.75
    assert scenario.log() == [
        (3.25, "start", 1, 3, [1, 2, 3]),
        (5.25, "update", 2, 5, [1, 2, 3, 4, 5]),  # count moved by min_change
        (15.25, "update", 3, 5, [1, 2, 3, 4, 5]),  # every_s heartbeat
        (18.75, "end", 4, 2, [1, 2]),
    ]
    start, grew, heartbeat, end = scenario.payloads()
    assert len({p["event_id"] for p in scenario.payloads()}) == 1
    assert start["started_at"] == at(1.25) and start["updated_at"] == at(3.25) and start["ended_at"] is None
    assert end["ended_at"] == at(17.75) and end["peak_count"] == 5
    assert start["title_zh"] == "人数超限：东门广场 3人"
    assert end["title_zh"] == "人数超限：东门广场 5人（已结束）"
    assert start["snapshot"] is not None and grew["snapshot"] is not None  # the peak rose
    assert heartbeat["snapshot"] is None and end["snapshot"] is None
    assert start["rule"]["min_people"] == 3 and start["zone_id"] == "plaza" and start["grid_id"] == "G-07"
    assert start["density_per_m2"] is None  # not calibrated


def test_by_default_an_update_reports_a_change_that_lasted_and_ignores_one_that_did_not():
    scenario = Scenario([{"type": "crowd", "zone": "plaza", "min_people": 3, "for_s": 0, "clear_s": 1}])
    crowd = lambda n: lambda t: row(n, x0=40, spacing=60)  # noqa: E731 - all inside the plaza
    scenario.play(0.0, 2.0, crowd(10))
    scenario.play(2.0, 3.0, crowd(13))  # three more for a second: not an update
    scenario.play(3.0, 5.0, crowd(10))
    scenario.play(5.0, 12.0, crowd(14))  # four more from 5.0, for good: one update, 3 s later
    assert [entry[:4] for entry in scenario.log()] == [(0.0, "start", 1, 10), (8.0, "update", 2, 14)]


def test_a_person_missed_for_one_to_three_frames_neither_ends_nor_restarts_an_event():
    scenario = Scenario([{"type": "crowd", "zone": "plaza", "min_people": 3, "for_s": 1, "clear_s": 0}])
    missing = {2, 10, 11, 20, 21, 22}  # frames without the third person: 1, 2 and 3 in a row
    dips = []
    for i in range(24):
        people = row(3)[:2] if i in missing else row(3)
        dips.append(scenario.frame(i * DT, people).zone_counts["plaza"])
    scenario.play(6.0, 8.0, lambda t: [])
    assert [c for i, c in enumerate(dips) if i in missing] == [2] * 6  # the detector did miss them
    # Held since t=0 (the miss at frame 2 did not reset for_s); gone at the 4th missed frame.
    assert scenario.log() == [(1.0, "start", 1, 3, [1, 2, 3]), (6.75, "end", 2, 0, [])]


def test_cooldown_delays_the_next_start():
    scenario = Scenario([{"type": "intrusion", "zone": "plaza", "for_s": 0, "clear_s": 0, "cooldown_s": 5}])
    scenario.play(0.0, 1.0, lambda t: row(1))
    scenario.play(1.0, 3.0, lambda t: [])  # gone at 1.75: end, cooldown until 6.75
    scenario.play(3.0, 8.0, lambda t: row(1))
    assert [entry[:3] for entry in scenario.log()] == [(0.0, "start", 1), (1.75, "end", 2), (6.75, "start", 1)]
    first, _, second = scenario.payloads()
    assert first["event_id"] != second["event_id"]
    assert second["started_at"] == at(3.0)  # the condition held since 3.0; cooldown held it back


# --------------------------------------------------------------------------- schedules (intrusion)


def test_intrusion_schedule_across_midnight_in_shanghai():
    """Wall clock (now) and rule clock (t) are separate: a night is played in a few seconds."""
    scenario = Scenario(
        [{"type": "intrusion", "zone": "plaza", "schedule": ["22:00-06:00"], "for_s": 0, "clear_s": 0, "severity": 3}]
    )
    evening = datetime(2024, 5, 1, 21, 59, 58, tzinfo=SHANGHAI).astimezone(timezone.utc)
    morning = datetime(2024, 5, 2, 5, 59, 58, tzinfo=SHANGHAI).astimezone(timezone.utc)
    for i in range(32):
        wall = (evening if i < 16 else morning) + timedelta(seconds=(i % 16) * DT)
        scenario.frame(i * DT, row(1), now=wall)
    assert [entry[:3] for entry in scenario.log()] == [(2.0, "start", 1), (6.0, "end", 2)]
    start, end = scenario.payloads()
    assert start["updated_at"] == "2024-05-01T22:00:00.000+08:00"
    assert end["ended_at"] == "2024-05-02T06:00:00.000+08:00"
    assert start["title_zh"] == "区域入侵：东门广场 1人" and start["severity"] == 3


# --------------------------------------------------------------------------- gathering


def test_gathering_forms_grows_splits_and_dissolves():
    scenario = Scenario(
        [{"type": "gathering", "min_people": 3, "radius_m": 1.5, "for_s": 2, "clear_s": 1,
          "updates": {"min_change": 1, "min_change_share": 0, "settle_s": 0, "every_s": 60}}],
        zones=[],
    )
    stay = row(4, x0=200)  # tracks 1-4, 1 m apart
    joiners = row(3, x0=600)  # 1 m beyond them

    def walkers(t: float) -> list[tuple[float, float]]:
        """The joiners walk off to the right at 1.4 m/s from t=6 to t=9, then stand."""
        shift = 140 * min(max(t - 5.75, 0), 3.25)
        return [(x + shift, y) for x, y in joiners]

    scenario.play(0.0, 3.0, lambda t: stay)
    scenario.play(3.0, 6.0, lambda t: stay + joiners)  # counted from 3.25: one gathering of 7
    scenario.play(6.0, 12.0, lambda t: stay + walkers(t))  # split at 6.25 (gap 1.7 m)
    scenario.play(12.0, 14.0, lambda t: walkers(t))  # the first group leaves: gone at 12.75

    def dispersing(t: float) -> list[tuple[float, float]]:
        spread = 140 * (t - 13.75)
        (x1, y), (x2, _), (x3, _) = walkers(t)
        return [(x1 - spread, y), (x2, y), (x3 + spread, y)]

    scenario.play(14.0, 16.0, dispersing)  # 1.7 m apart at 14.25: the second group dissolves
    assert scenario.log() == [
        (2.0, "start", 1, 4, [1, 2, 3, 4]),
        (3.25, "update", 2, 7, [1, 2, 3, 4, 5, 6, 7]),
        (6.25, "update", 3, 4, [1, 2, 3, 4]),  # the larger share keeps the identity
        (8.25, "start", 1, 3, [5, 6, 7]),  # the split-off group is a new gathering
        (13.75, "end", 4, 0, []),
        (15.25, "end", 2, 0, []),
    ]
    first = {m.event_id for _, m in scenario.messages[:3]} | {scenario.messages[4][1].event_id}
    second = {scenario.messages[3][1].event_id, scenario.messages[5][1].event_id}
    assert len(first) == len(second) == 1 and first != second
    payloads = scenario.payloads()
    assert payloads[0]["title_zh"] == "人员聚集：东门 4人"  # whole frame: the camera's name
    assert payloads[4]["peak_count"] == 7 and payloads[4]["title_zh"] == "人员聚集：东门 7人（已结束）"
    assert payloads[1]["snapshot"] is not None and payloads[2]["snapshot"] is None


def test_two_gatherings_in_one_zone_are_two_events():
    scenario = Scenario([{"type": "gathering", "zone": "plaza", "min_people": 3, "radius_m": 1.5, "for_s": 1}])
    groups = row(3, x0=100) + row(3, x0=600)  # 3 m apart
    scenario.play(0.0, 2.0, lambda t: groups)
    starts = [m for _, m in scenario.messages if m.state == "start"]
    assert [scenario.log()[i][:4] for i in range(2)] == [(1.0, "start", 1, 3), (1.0, "start", 1, 3)]
    assert starts[0].event_id != starts[1].event_id
    members = [{p["track_id"] for p in m.payload["members"]} for m in starts]
    assert members == [{1, 2, 3}, {4, 5, 6}]


def test_people_walking_past_each_other_do_not_gather():
    scenario = Scenario([{"type": "gathering", "min_people": 3, "radius_m": 1.5, "for_s": 3}], zones=[])

    def passers(t: float) -> list[tuple[float, float]]:
        d = 250 * t  # three walkers converge on x=1000 and walk on
        return [(500 + d, 800), (1500 - d, 820), (1000, 300 + d)]

    scenario.play(0.0, 4.0, passers)
    assert scenario.messages == []


# --------------------------------------------------------------------------- growth, loitering


def test_growth_fires_on_a_fast_rise_only():
    scenario = Scenario(
        [{"type": "growth", "zone": "plaza", "delta": 3, "window_s": 5, "for_s": 0, "clear_s": 1}]
    )
    scenario.play(0.0, 2.0, lambda t: row(2))
    scenario.play(2.0, 10.0, lambda t: row(5))  # +3 counted at 2.25
    # A slow rise: one more person every 3 s never adds 3 within 5 s.
    scenario.play(10.0, 22.0, lambda t: row(5 + int((t - 10) // 3) + 1))
    # Last count of 2 was at t=2.0: it leaves the 5 s window after 7.0; false at 7.25, ended 1 s later.
    assert scenario.log() == [(2.25, "start", 1, 5, [1, 2, 3, 4, 5]), (8.25, "end", 2, 5, [1, 2, 3, 4, 5])]
    assert scenario.payloads()[0]["title_zh"] == "人数激增：东门广场 5人"


def test_loitering_is_one_event_per_track():
    scenario = Scenario([{"type": "loitering", "zone": "plaza", "for_s": 5, "clear_s": 1}])
    a, b, outside = (800, 800), (400, 600), (1500, 800)

    def walk_out(t: float) -> tuple[float, float]:
        return (a[0] + 250 * max(t - 9.75, 0), a[1])  # crosses x=960 at t=10.5

    scenario.play(0.0, 2.0, lambda t: [a, outside])
    scenario.play(2.0, 14.0, lambda t: [walk_out(t), outside, b])  # b counted from 2.25
    scenario.close(14.0)
    assert scenario.log() == [
        (5.0, "start", 1, 1, [1]),
        (7.25, "start", 1, 1, [3]),
        (11.5, "end", 2, 0, []),
        (14.0, "end", 2, 1, [3]),  # shut down: the last reading
    ]
    payloads = scenario.payloads()
    assert payloads[0]["event_id"] == payloads[2]["event_id"] != payloads[1]["event_id"]
    assert payloads[2]["ended_at"] == at(10.5) and payloads[0]["started_at"] == at(0.0)
    assert payloads[0]["title_zh"] == "人员徘徊：东门广场 1人"


# --------------------------------------------------------------------------- density


CALIBRATED = {
    # 1 px = 1 cm on the ground (a camera looking straight down, for easy numbers).
    "calibration": {
        "image_points": [[0, 1080], [1920, 1080], [1920, 0], [0, 0]],
        "ground_points_m": [[0, 0], [19.2, 0], [19.2, 10.8], [0, 10.8]],
    }
}
SQUARE = {"id": "square", "name": "小广场", "polygon": [[0, 0], [400, 0], [400, 400], [0, 400]]}  # 16 m²


def grid(n: int) -> list[tuple[float, float]]:
    return [(40 + 80 * (i % 5), 170 + 40 * (i // 5)) for i in range(n)]


@pytest.mark.parametrize("people, fires", [(18, True), (12, False)])
def test_crowd_density_when_calibrated(people: int, fires: bool):
    scenario = Scenario(
        [{"type": "crowd", "zone": "square", "min_density_per_m2": 1.0, "for_s": 0}], zones=[SQUARE], **CALIBRATED
    )
    result = scenario.frame(0.0, grid(people))
    assert result.zone_counts == {"square": people}
    if fires:
        (start,) = scenario.payloads()
        assert start["density_per_m2"] == pytest.approx(18 / 16, abs=1e-3)
        assert start["title_zh"] == "人数超限：小广场 18人"
    else:
        assert scenario.messages == []
