"""PTZ: presets by token, name or number, PTZ status, the pure PatrolPlan, and the patrol driver
against the fake camera (SOAP, WS-Security digests) and a third-party emulator (ipycam)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from gateway.backoff import Backoff
from gateway.config.models import OnvifSettings, PatrolStop
from gateway.onvif.patrol import AWAY, MOVING, SETTLING, WATCHING, Failing, MoveFailures, PatrolPlan
from gateway.onvif.patrol_driver import PatrolDriver
from gateway.onvif.ptz import (
    GENERIC_PAN_TILT_SPACE,
    PresetNotFound,
    PtzController,
    PtzPosition,
    PtzPreset,
    PtzStatus,
    find_preset,
    reached,
)
from gateway.onvif.session import OnvifLoop, OnvifNotSupported, OnvifSoapFault
from onvif_device import FakeOnvifDevice, FakePreset, FaultSpec

PRESETS = [FakePreset("1", "Gate", 0.1, -0.2, 0.0), FakePreset("2", "Plaza", 0.5, 0.0, 0.3),
           FakePreset("7", "东门")]
NUMBERED = [FakePreset(f"PresetToken_{n}", f"Preset {n}", 0.2 * n, -0.1 * n, 0.1 * n) for n in (1, 2, 3)]
WAIT_S = 30.0


def stops() -> list[PatrolStop]:
    return [PatrolStop(preset="Gate", dwell_s=30, settle_s=3, zones=["gate"]),
            PatrolStop(preset="2", dwell_s=20, settle_s=0, zones=[])]


# --------------------------------------------------------------------------- the plan (pure)


def test_a_visit_moves_until_the_camera_is_there_then_settles_and_watches():
    plan = PatrolPlan(stops(), move_s=2, start=100.0)
    for t in (100.0, 102.0, 500.0):  # no fixed move time: moving until the driver says arrived
        state = plan.state_at(t)
        assert (state.index, state.phase, state.visit, state.phase_ends_at) == (0, MOVING, 0, None)
        assert not state.analysing
    plan.arrived(510.0)
    assert plan.state_at(511).phase == SETTLING and not plan.state_at(511).analysing
    watching = plan.state_at(513)
    assert watching.phase == WATCHING and watching.analysing and watching.zones == ("gate",)
    assert (watching.phase_started_at, watching.phase_ends_at) == (513, 543)
    assert not plan.due(542.9) and plan.due(543)
    second = plan.advance(543)
    assert (second.index, second.phase, second.visit, second.preset, second.zones) == (1, MOVING, 1, "2", ())
    plan.arrived(544)
    assert plan.state_at(544).phase == WATCHING  # settle_s 0: straight to watching
    assert plan.advance(564).index == 0 and plan.state_at(564).visit == 2


def test_a_stop_that_cannot_be_reached_is_given_up_after_its_time():
    plan = PatrolPlan(stops(), move_s=2, start=0)
    assert plan.stop_length(0) == 2 + 3 + 30
    assert not plan.due(34.9) and plan.due(35)


def test_turned_away_is_a_new_view_without_analysis_until_the_stop_is_over():
    plan = PatrolPlan(stops(), move_s=2, start=0)
    plan.arrived(1)
    assert plan.state_at(10).analysing
    plan.turned_away(10)
    away = plan.state_at(11)
    assert (away.phase, away.visit, away.index, away.phase_ends_at) == (AWAY, 1, 0, 34)
    plan.arrived(12)  # a move confirmed late does not bring the old view back
    assert plan.state_at(13).phase == AWAY and not plan.due(33.9) and plan.due(34)
    assert plan.advance(34).visit == 2


def test_bad_plans_are_refused():
    with pytest.raises(ValueError):
        PatrolPlan([])
    with pytest.raises(ValueError):
        PatrolPlan(stops(), move_s=-1)
    with pytest.raises(ValueError):
        PatrolPlan([SimpleNamespace(preset="1", dwell_s=0, settle_s=0)])


def test_the_view_carries_the_cameras_own_preset_once_the_move_is_confirmed():
    plan = PatrolPlan(stops(), move_s=2, start=0)
    assert (plan.state_at(1).preset_token, plan.state_at(1).preset_label) == (None, "Gate")
    plan.arrived(2, token="7", name="东门")
    state = plan.state_at(3)
    assert (state.preset, state.preset_token, state.preset_name, state.preset_label) == ("Gate", "7", "东门", "东门")
    second = plan.advance(40)
    assert (second.preset_token, second.preset_label) == (None, "2")  # not there yet
    plan.arrived(41, token="PresetToken_2", name="")  # a camera that names no preset
    assert (plan.state_at(42).preset_token, plan.state_at(42).preset_label) == ("PresetToken_2", "2")


def test_a_patrol_that_moves_nowhere_fails_from_its_first_failure():
    failures = MoveFailures()
    assert failures.worst(0) is None and not failures.failing(0)
    failures.failed(0, 10, "not authorized")
    failures.failed(1, 40, "not authorized")
    assert failures.worst(70) == Failing(60, 1, "not authorized")  # stalled: every stop fails
    assert failures.failing(0) and failures.failing(1)
    assert failures.reached(0) == 10  # stop 0 had failed since 10
    assert failures.worst(70) == Failing(0, 1, "not authorized") and not failures.failing(0)
    assert failures.reached(1) == 40 and failures.worst(80) is None


def test_one_stop_that_fails_every_round_keeps_failing_while_the_others_are_reached():
    """The field case: a preset typo warned every round and never raised 巡逻中断, because the
    other stop's arrival restarted the timer."""
    failures = MoveFailures()
    failures.failed(1, 10, "no PTZ preset 'Roof'")
    failures.failed(1, 11, "no PTZ preset 'Roof'")
    assert failures.reached(0) is None  # the other stop had not failed
    assert failures.worst(500) == Failing(1, 1, "no PTZ preset 'Roof'")  # not past its last failure
    assert not failures.failing(0) and failures.failing(1)
    failures.failed(1, 130, "no PTZ preset 'Roof'")
    failures.reached(0)
    assert failures.worst(200) == Failing(120, 1, "no PTZ preset 'Roof'")


def test_a_stop_that_failed_once_and_was_reached_next_round_is_forgotten():
    failures = MoveFailures()
    failures.failed(1, 10, "timeout")
    failures.reached(0)
    failures.reached(1)
    assert failures.worst(1000) is None


def test_patrol_keys_in_the_config(tmp_path):
    """`preset: 3` unquoted is the number 3 as text; the timing keys come from `defaults` too and
    bad values are located errors."""
    from gateway.config import check_config

    path = tmp_path / "site.yaml"
    path.write_text("""\
gateway: {id: gw}
detector: {model: model.onnx}
defaults: {patrol_fault_after_s: 300}
cameras:
  - id: ptz
    source: {onvif: {host: 10.0.0.7, user: admin, password: x}}
    patrol_move_s: 4
    patrol: [{preset: 3}, {preset: 东门}]
  - id: bad
    source: {onvif: {host: 10.0.0.8, user: admin, password: x}}
    patrol_move_timeout_s: 0
    patrol: [{preset: ""}]
""", encoding="utf-8")
    (tmp_path / "model.onnx").write_bytes(b"")
    config, issues = check_config(path)
    assert config is None
    messages = [str(issue) for issue in issues]
    assert any(":11: cameras[1].patrol_move_timeout_s: " in m and "greater than 0" in m for m in messages)
    assert any(":12: cameras[1].patrol[0].preset: " in m for m in messages)
    path.write_text(path.read_text(encoding="utf-8").split("  - id: bad")[0], encoding="utf-8")
    config, issues = check_config(path)
    assert issues == []
    camera = config.cameras[0]
    assert [stop.preset for stop in camera.patrol] == ["3", "东门"]
    assert (camera.patrol_move_s, camera.patrol_move_timeout_s, camera.patrol_fault_after_s) == (4, 20, 300)


# --------------------------------------------------------------------------- presets and status (pure)


def test_find_preset_by_token_name_or_case():
    presets = [PtzPreset("1", "Gate"), PtzPreset("2", "Plaza"), PtzPreset("Gate", "other")]
    assert find_preset(presets, "2").name == "Plaza"
    assert find_preset(presets, "Gate").token == "Gate"  # a token wins over a name
    assert find_preset(presets, "plaza").token == "2"
    with pytest.raises(PresetNotFound, match=r"no PTZ preset 'Roof' \(presets: Gate \(1\), Plaza \(2\)"):
        find_preset(presets, "Roof", "cam:80")


@pytest.mark.parametrize("presets, token", [
    ([PtzPreset("PresetToken_1", "Preset 1"), PtzPreset("PresetToken_3", "Preset 3")], "PresetToken_3"),
    ([PtzPreset("Preset_2", ""), PtzPreset("Preset_3", ""), PtzPreset("Preset_13", "")], "Preset_3"),
    ([PtzPreset("a1b2", "预置点 1"), PtzPreset("c3d4", "预置点 3")], "c3d4"),
    ([PtzPreset("3", "预置点 5"), PtzPreset("5", "预置点 3")], "3"),  # Hikvision: the token is the number
    ([PtzPreset("PresetToken_03", "Lake")], "PresetToken_03"),
])
def test_a_number_is_the_number_the_camera_gives_its_preset(presets, token):
    assert find_preset(presets, "3").token == token


def test_a_number_that_matches_two_presets_is_an_error_not_a_guess():
    presets = [PtzPreset("PresetToken_3", "东门"), PtzPreset("PresetToken_7", "预置点 3")]
    with pytest.raises(PresetNotFound, match=r"'3' is ambiguous: .*东门 \(PresetToken_3\), 预置点 3 "
                                             r"\(PresetToken_7\); write the preset's token or its exact name"):
        find_preset(presets, "3")
    assert find_preset(presets, "PresetToken_7").name == "预置点 3"
    with pytest.raises(PresetNotFound, match="no PTZ preset '4'"):
        find_preset(presets, "4")


def test_reached_needs_idle_and_the_presets_position_where_both_are_known():
    preset = PtzPreset("1", "Gate", PtzPosition(0.5, -0.2, 0.3))
    assert reached(PtzStatus(False, PtzPosition(0.5, -0.2, 0.3)), preset) is True
    assert reached(PtzStatus(False, PtzPosition(0.51, -0.21, 0.31)), preset) is True  # within the tolerance
    assert reached(PtzStatus(True, PtzPosition(0.5, -0.2, 0.3)), preset) is False  # still moving
    assert reached(PtzStatus(False, PtzPosition(0.1, -0.2, 0.3)), preset) is False  # stopped elsewhere
    assert reached(PtzStatus(None, PtzPosition(0.5, -0.2, 0.3)), preset) is True  # position only
    assert reached(PtzStatus(False), preset) is True  # MoveStatus only
    assert reached(PtzStatus(None), preset) is None  # nothing usable: the timer decides
    assert reached(PtzStatus(False, PtzPosition(0.3, 0.0)), PtzPreset("2", "")) is True  # preset without position
    wrapped = PtzPreset("3", "", PtzPosition(0.99, 0.0))
    assert reached(PtzStatus(False, PtzPosition(-0.99, 0.0)), wrapped) is True  # pan wraps at +-1 (360 degrees)
    degrees = PtzStatus(False, PtzPosition(180.0, 10.0, pan_tilt_space="SphericalPositionSpaceDegrees"))
    generic = PtzPosition(0.5, 0.1, pan_tilt_space=GENERIC_PAN_TILT_SPACE)
    assert reached(degrees, PtzPreset("4", "", generic)) is True  # other spaces: not compared


# --------------------------------------------------------------------------- against the fake camera


@pytest.fixture(scope="module")
def loop():
    with OnvifLoop("test-ptz") as shared:
        yield shared


@pytest.fixture
def camera():
    with FakeOnvifDevice(presets=PRESETS) as device:
        yield device


def settings(device: FakeOnvifDevice) -> OnvifSettings:
    return OnvifSettings(host=device.host, port=device.port, user="admin", password="Secret-1")


def test_controller_lists_presets_and_goes_by_name_or_token(camera, loop):
    controller = PtzController(settings(camera), loop=loop, timeout=3)
    presets = controller.presets()
    assert [(p.token, p.name) for p in presets] == [("1", "Gate"), ("2", "Plaza"), ("7", "东门")]
    assert (presets[0].position.pan, presets[0].position.tilt) == pytest.approx((0.1, -0.2))
    assert controller.goto("Plaza").token == "2"
    assert controller.goto("7").name == "东门"
    assert controller.goto("东门").token == "7"
    assert camera.goto_calls == [("Profile_1", "2"), ("Profile_1", "7"), ("Profile_1", "7")]
    with pytest.raises(PresetNotFound):
        controller.goto("Roof")
    controller.close()


def test_controller_goes_to_a_numbered_preset_on_a_camera_with_presettoken_tokens(loop):
    with FakeOnvifDevice(presets=NUMBERED) as device:
        controller = PtzController(settings(device), loop=loop, timeout=3)
        assert controller.goto("3").token == "PresetToken_3"
        assert device.goto_calls == [("Profile_1", "PresetToken_3")]
        controller.close()


def test_controller_reads_the_ptz_status_while_the_camera_moves(loop):
    with FakeOnvifDevice(presets=NUMBERED, move_s=600) as device:
        controller = PtzController(settings(device), loop=loop, timeout=3)
        idle = controller.status()
        assert idle.moving is False and idle.position.describe() == "pan 0.000, tilt 0.000, zoom 0.000"
        target = controller.goto("2")
        moving = controller.status()
        assert moving.moving is True and reached(moving, target) is False
        assert 0.0 < moving.position.pan < target.position.pan
        device.ptz_status = "unsupported"
        with pytest.raises(OnvifSoapFault, match="ActionNotSupported"):
            controller.status()
        controller.close()


def test_controller_uses_the_configured_profile(camera, loop):
    controller = PtzController(settings(camera), loop=loop, profile="subStream", timeout=3)
    controller.goto("Gate")
    assert camera.goto_calls == [("Profile_2", "1")]
    controller.close()


def test_goto_fault_is_a_named_error(camera, loop):
    camera.faults["GotoPreset"] = FaultSpec("env:Receiver", "ter:Action", "PTZ is locked by another user")
    controller = PtzController(settings(camera), loop=loop, timeout=3)
    with pytest.raises(OnvifSoapFault, match="PTZ is locked"):
        controller.goto("Gate")
    controller.close()


def test_camera_without_ptz(loop):
    with FakeOnvifDevice() as device:
        controller = PtzController(settings(device), loop=loop, timeout=3)
        with pytest.raises(OnvifNotSupported, match="no PTZ service"):
            controller.presets()
        controller.close()


def wait_for(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def fast_retries() -> Backoff:
    return Backoff(min_s=0.05, max_s=0.2)


def driver_for(device: FakeOnvifDevice, loop: OnvifLoop, plan_stops, **options) -> PatrolDriver:
    options.setdefault("backoff", fast_retries())
    options.setdefault("status_poll_s", 0.05)
    options.setdefault("move_s", 0.1)
    plan = PatrolPlan(plan_stops, move_s=options["move_s"], start=options.get("clock", time.monotonic)())
    return PatrolDriver("gate-cam", PtzController(settings(device), loop=loop, timeout=3), plan, **options)


@contextmanager
def running(driver: PatrolDriver) -> Iterator[PatrolDriver]:
    driver.start()
    try:
        yield driver
    finally:
        driver.stop()
        driver.controller.close()


class FakeClock:
    def __init__(self, start: float = 0.0):
        self.now = start
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_driver_moves_at_every_stop_and_changes_the_view(camera, loop):
    clock = FakeClock()
    with running(driver_for(camera, loop, stops(), clock=clock)) as driver:
        wait_for(lambda: driver.state().phase == SETTLING, "the move to Gate confirmed")
        assert camera.goto_calls == [("Profile_1", "1")] and driver.state().visit == 0
        clock.advance(3)
        assert driver.state().analysing and driver.state().zones == ("gate",)
        clock.advance(30)  # the dwell is over: the second stop
        wait_for(lambda: driver.state().analysing and driver.state().index == 1, "watching the 2nd stop")
        assert driver.state().visit == 1
        clock.advance(20)  # first stop again
        wait_for(lambda: driver.state().visit == 2 and driver.state().phase == SETTLING, "back at Gate")
        assert [token for _, token in camera.goto_calls] == ["1", "2", "1"]
        assert [visit for visit, _ in driver.moves] == [0, 1, 2]
        status = driver.status()
        assert (status.state, status.moves, status.move_failures, status.confirmed_by) == (
            "settling", 3, 0, "status")


def test_a_move_is_confirmed_by_the_cameras_status_and_its_real_time_measured(loop):
    with FakeOnvifDevice(presets=NUMBERED, move_s=1.0) as device, \
            running(driver_for(device, loop, [PatrolStop(preset="3", dwell_s=600, settle_s=0)])) as driver:
        wait_for(lambda: driver.state().analysing, "watching preset 3")
        position, moving = device.ptz_position()
        assert not moving and position == pytest.approx((0.6, -0.3, 0.3))  # it really is there
        status = driver.status()
        assert status.confirmed_by == "status" and status.moves == 1
        assert status.last_move_s >= 1.0  # the camera's move, not a fixed guess
        assert device.calls.count("GetStatus") >= 2  # it was seen moving, then idle


def test_without_ptz_status_a_move_counts_after_patrol_move_s(loop, caplog):
    caplog.set_level(logging.INFO, logger="gateway.onvif.ptz")
    with FakeOnvifDevice(presets=NUMBERED, ptz_status="unsupported") as device, \
            running(driver_for(device, loop, [PatrolStop(preset="1", dwell_s=600, settle_s=0)],
                               move_s=0.5)) as driver:
        wait_for(lambda: driver.state().analysing, "watching preset 1")
        status = driver.status()
        assert status.confirmed_by == "time" and status.last_move_s >= 0.5
    assert "camera gate-cam: no usable PTZ status" in caplog.text and "patrol_move_s" in caplog.text


def test_refused_credentials_at_start_are_retried_until_the_patrol_moves(loop, caplog):
    """The field case: the password was wrong for the first seconds. The task used to die on an
    AssertionError (a half-opened session was kept) and later stops were analysed anyway."""
    caplog.set_level(logging.WARNING, logger="gateway.onvif.ptz")
    with FakeOnvifDevice(presets=NUMBERED, refuse_credentials=True) as device, \
            running(driver_for(device, loop, [PatrolStop(preset="1", dwell_s=600, settle_s=0)],
                               fault_after_s=0.3)) as driver:
        wait_for(lambda: driver.status().move_failures >= 3, "three refused attempts")
        wait_for(lambda: driver.status().fault, "the patrol fault")
        status = driver.status()
        assert driver.alive and status.state == "failing" and status.failing_stop == 0
        assert "not authorized" in status.last_error
        assert not driver.state().analysing and device.goto_calls == []
        device.refuse_credentials = False  # the installer fixed the password
        wait_for(lambda: driver.state().analysing, "watching preset 1")
        status = driver.status()
        assert (status.state, status.fault, status.failing_for_s, status.last_error) == (
            "watching", False, None, None)
        assert device.goto_calls == [("Profile_1", "PresetToken_1")]
    refused = [r.getMessage() for r in caplog.records if "cannot move the camera" in r.getMessage()]
    assert refused[0].startswith("camera gate-cam: patrol[0] (preset 1): cannot move the camera: 127.0.0.1:")
    assert "not authorized" in refused[0] and "retrying in" in refused[0] and "Secret-1" not in caplog.text
    # Whether an alert is raised is the camera worker's to say (not while the camera is offline).
    assert "patrol_fault" not in caplog.text and all(r.levelno < logging.ERROR for r in caplog.records)


def test_a_camera_that_does_not_move_is_never_watched(loop):
    """GotoPreset accepted, the head does not move (motor fault, another operator holds it):
    the stop's zones must not be applied to the view it still shows."""
    with FakeOnvifDevice(presets=NUMBERED, ptz_stuck=True) as device, \
            running(driver_for(device, loop, [PatrolStop(preset="2", dwell_s=600, settle_s=0)],
                               move_timeout_s=0.3)) as driver:
        wait_for(lambda: driver.status().move_failures >= 2, "two moves that never arrived")
        assert not driver.state().analysing and driver.status().state == "failing"
        assert "did not reach preset Preset 2 (PresetToken_2) within 0.3 s (it reports: idle, " \
               "pan 0.000, tilt 0.000, zoom 0.000)" in driver.status().last_error
        device.ptz_stuck = False
        wait_for(lambda: driver.state().analysing, "watching once the camera moves")
        assert device.ptz_position()[0] == pytest.approx((0.4, -0.2, 0.2))


def test_a_camera_refusing_gotopreset_is_retried_and_the_other_stops_go_on(loop, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.onvif.ptz")
    clock = FakeClock()
    plan_stops = [PatrolStop(preset="Preset 1", dwell_s=10, settle_s=0),
                  PatrolStop(preset="Roof", dwell_s=10, settle_s=0)]
    with FakeOnvifDevice(presets=NUMBERED) as device:
        device.faults["GotoPreset"] = FaultSpec("env:Receiver", "ter:Action", "PTZ is locked by another user")
        with running(driver_for(device, loop, plan_stops, clock=clock)) as driver:
            wait_for(lambda: driver.status().move_failures >= 2, "two refused moves")
            assert driver.state().phase == MOVING and driver.state().visit == 0
            del device.faults["GotoPreset"]
            wait_for(lambda: driver.state().analysing, "watching stop 0 once GotoPreset works")
            clock.advance(10)  # stop 1's preset does not exist: failures, given up after its time
            wait_for(lambda: driver.state().index == 1 and driver.status().state == "failing",
                     "the missing preset failing")
            assert "no PTZ preset 'Roof'" in driver.status().last_error
            clock.advance(10.2)
            wait_for(lambda: driver.state().index == 0 and driver.state().analysing, "back at stop 0")
            assert driver.alive
    messages = [r.getMessage() for r in caplog.records]
    assert any("patrol[0] (preset Preset 1): cannot move the camera:" in m and "PTZ is locked" in m
               for m in messages)
    assert any("patrol[1] (preset Roof): cannot move the camera:" in m for m in messages)


def test_a_preset_the_camera_does_not_have_is_a_fault_once_it_failed_for_patrol_fault_after_s(loop, caplog):
    """A typo in `preset`: the stop fails every round while the other stop is reached; its
    failures add up to a fault, which lasts while the good stop is watched and ends once the
    preset exists on the camera."""
    caplog.set_level(logging.WARNING, logger="gateway.onvif.ptz")
    clock = FakeClock()
    plan_stops = [PatrolStop(preset="Preset 1", dwell_s=10, settle_s=0),
                  PatrolStop(preset="Roof", dwell_s=10, settle_s=0)]
    with FakeOnvifDevice(presets=list(NUMBERED)) as device, \
            running(driver_for(device, loop, plan_stops, clock=clock, fault_after_s=15)) as driver:
        for round_number in (1, 2):
            wait_for(lambda: driver.state().index == 0 and driver.state().analysing, "watching stop 0")
            clock.advance(10)
            wait_for(lambda: driver.status().state == "failing", "the missing preset failing")
            clock.advance(10.2)  # stop 1's time is over: back to stop 0
            wait_for(lambda: driver.state().index == 0 and driver.state().analysing, "back at stop 0")
            status = driver.status()
            assert (status.state, status.failing_stop, status.fault) == ("watching", 1, round_number == 2)
        assert status.failing_for_s >= 15 and "no PTZ preset 'Roof'" in status.last_error
        device.presets.append(FakePreset("PresetToken_9", "Roof", 0.9, 0.0, 0.0))  # the installer adds it
        clock.advance(10)
        wait_for(lambda: driver.state().index == 1 and driver.state().analysing, "watching Roof")
        status = driver.status()
        assert (status.fault, status.failing_stop, status.failing_for_s, status.last_error) == (False, None, None, None)
        assert driver.state().preset_token == "PresetToken_9"
    warning = next(r.getMessage() for r in caplog.records if "Roof" in r.getMessage())
    assert "(presets: Preset 1 (PresetToken_1), Preset 2 (PresetToken_2), Preset 3 (PresetToken_3))" in warning
    assert "fix patrol[1].preset (or add the preset on the camera); retrying in" in warning


class _BrokenOnce(PtzController):
    """A library bug on the first request (what the AssertionError was): any exception type."""

    failed = False

    async def aresolve(self, preset: str) -> PtzPreset:
        if not self.failed:
            self.failed = True
            raise RuntimeError("unexpected library state")
        return await super().aresolve(preset)


def test_an_unexpected_exception_is_logged_and_retried_not_fatal(camera, loop, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.onvif.ptz")
    plan = PatrolPlan([PatrolStop(preset="Gate", dwell_s=600, settle_s=0)], start=time.monotonic())
    with running(PatrolDriver("gate-cam", _BrokenOnce(settings(camera), loop=loop, timeout=3), plan,
                              backoff=fast_retries(), status_poll_s=0.05)) as driver:
        wait_for(lambda: driver.state().analysing, "watching after the retry")
        assert driver.alive and driver.status().move_failures == 1
    record = next(r for r in caplog.records if "cannot move the camera" in r.getMessage())
    assert "RuntimeError: unexpected library state" in record.getMessage() and record.exc_info


def test_stop_ends_the_task_and_alive_says_so(camera, loop):
    driver = driver_for(camera, loop, stops())
    assert not driver.alive and driver.status().state == "stopped"
    with running(driver):
        assert driver.alive
    assert not driver.alive and driver.status().state == "stopped"


def test_interrupt_pauses_analysis_and_changes_the_view_until_the_next_stop(camera, loop):
    """A sensor turned the camera away: the view changes now; the next stop moves it back."""
    clock = FakeClock()
    plan_stops = [PatrolStop(preset="1", dwell_s=10, settle_s=0), PatrolStop(preset="2", dwell_s=10, settle_s=0)]
    with running(driver_for(camera, loop, plan_stops, clock=clock)) as driver:
        wait_for(lambda: driver.state().analysing, "watching stop 0")
        clock.advance(5)
        driver.interrupt()
        state = driver.state()
        assert (state.phase, state.visit, state.preset) == (AWAY, 1, "1") and not state.analysing
        assert driver.status().state == "away"
        clock.advance(5.5)  # the first stop's time is over: the patrol takes the camera back
        wait_for(lambda: driver.state().index == 1 and driver.state().analysing, "watching stop 1")
        assert driver.state().visit == 2


# --------------------------------------------------------------------------- a third-party emulator


def test_third_party_emulator_with_unreadable_ptz_answers_keeps_retrying(loop, tmp_path, monkeypatch):
    """ipycam (PyPI) answers GetPresets/GetStatus with undeclared XML prefixes: the patrol cannot
    move, says why, raises the fault, and keeps trying (pip install --no-deps ipycam)."""
    pytest.importorskip("ipycam")
    import http.server

    from ipycam.config import CameraConfig
    from ipycam.http import IPCameraHTTPHandler
    from ipycam.onvif import ONVIFService
    from ipycam.ptz import PTZController

    monkeypatch.chdir(tmp_path)  # ipycam keeps its presets in ./ptz_presets.json
    head = PTZController()
    head.set_preset("PresetToken_1", "Preset 1")
    handler = type("Handler", (IPCameraHTTPHandler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    config = CameraConfig(local_ip="127.0.0.1", onvif_port=server.server_address[1])
    config.set_credentials("admin", "Secret-1")
    handler.camera = SimpleNamespace(onvif=ONVIFService(config, head), config=config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    target = OnvifSettings(host="127.0.0.1", port=server.server_address[1], user="admin", password="Secret-1")
    plan = PatrolPlan([PatrolStop(preset="1", dwell_s=600, settle_s=0)], start=time.monotonic())
    driver = PatrolDriver("sim-cam", PtzController(target, loop=loop, timeout=3), plan,
                          backoff=fast_retries(), fault_after_s=0.2)
    try:
        with running(driver):
            wait_for(lambda: driver.status().move_failures >= 2 and driver.status().fault, "the patrol fault")
            status = driver.status()
            assert driver.alive and status.state == "failing" and "unexpected ONVIF answer" in status.last_error
            assert not driver.state().analysing
    finally:
        server.shutdown()
        server.server_close()
        head.stop()
