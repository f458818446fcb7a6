"""PTZ: presets by name or token, GotoPreset, the pure PatrolPlan, and the driver on a fake camera."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.config.models import OnvifSettings, PatrolStop
from gateway.onvif.device import OnvifLoop, OnvifNotSupported, OnvifSoapFault
from gateway.onvif.ptz import (
    MOVING,
    SETTLING,
    WATCHING,
    PatrolDriver,
    PatrolPlan,
    PresetNotFound,
    PtzController,
    PtzPreset,
    find_preset,
)
from onvif_device import FakeOnvifDevice, FakePreset, FaultSpec

PRESETS = [FakePreset("1", "Gate", 0.1, -0.2, 0.0), FakePreset("2", "Plaza", 0.5, 0.0, 0.3),
           FakePreset("7", "东门")]


def stops() -> list[PatrolStop]:
    return [PatrolStop(preset="Gate", dwell_s=30, settle_s=3, zones=["gate"]),
            PatrolStop(preset="2", dwell_s=20, settle_s=0, zones=[])]


# --------------------------------------------------------------------------- the plan (pure)


def test_phases_of_one_cycle():
    plan = PatrolPlan(stops(), move_s=2, start=100.0)
    assert plan.cycle_s == 2 + 3 + 30 + 2 + 0 + 20
    expected = [
        (100.0, 0, MOVING), (101.9, 0, MOVING), (102.0, 0, SETTLING), (104.99, 0, SETTLING),
        (105.0, 0, WATCHING), (134.9, 0, WATCHING), (135.0, 1, MOVING), (137.0, 1, WATCHING),
        (156.9, 1, WATCHING), (157.0, 0, MOVING),
    ]
    for t, index, phase in expected:
        state = plan.state_at(t)
        assert (state.index, state.phase) == (index, phase), t
    assert plan.state_at(105).zones == ("gate",) and plan.state_at(140).zones == ()
    assert plan.state_at(140).preset == "2"


def test_analysis_pauses_while_moving_and_settling():
    plan = PatrolPlan(stops(), move_s=2, start=0)
    assert not plan.state_at(1).analysing and not plan.state_at(3).analysing
    assert plan.state_at(10).analysing
    watching = plan.state_at(10)
    assert (watching.phase_started_at, watching.phase_ends_at) == (5, 35)
    assert plan.next_change(10) == 35 and plan.next_change(0) == 2


def test_visit_numbers_change_exactly_at_stop_changes():
    plan = PatrolPlan(stops(), move_s=2, start=0)
    assert [plan.state_at(t).visit for t in (0, 34.9, 35, 56.9, 57, 57 + 35)] == [0, 0, 1, 1, 2, 3]
    changes = plan.visits_between(10, 57 * 2 + 1)
    assert [(c.visit, c.index, c.phase) for c in changes] == [
        (1, 1, MOVING), (2, 0, MOVING), (3, 1, MOVING), (4, 0, MOVING)]
    assert [c.phase_started_at for c in changes] == pytest.approx([35, 57, 92, 114])
    assert plan.visits_between(5, 6) == []


def test_before_start_is_the_first_move_and_bad_plans_are_refused():
    plan = PatrolPlan(stops(), start=50)
    assert plan.state_at(0).visit == 0 and plan.state_at(0).phase == MOVING
    with pytest.raises(ValueError):
        PatrolPlan([])
    with pytest.raises(ValueError):
        PatrolPlan(stops(), move_s=-1)


def test_zero_move_and_settle_go_straight_to_watching():
    plan = PatrolPlan([PatrolStop(preset="a", dwell_s=5, settle_s=0)], move_s=0)
    assert plan.state_at(0).phase == WATCHING and plan.state_at(7).visit == 1


def test_find_preset_by_token_name_or_case():
    presets = [PtzPreset("1", "Gate"), PtzPreset("2", "Plaza"), PtzPreset("Gate", "other")]
    assert find_preset(presets, "2").name == "Plaza"
    assert find_preset(presets, "Gate").token == "Gate"  # a token wins over a name
    assert find_preset(presets, "plaza").token == "2"
    with pytest.raises(PresetNotFound, match=r"no PTZ preset 'Roof' \(presets: Gate \(1\), Plaza \(2\)"):
        find_preset(presets, "Roof", "cam:80")


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
    assert presets[0].pan == pytest.approx(0.1) and presets[0].tilt == pytest.approx(-0.2)
    assert controller.goto("Plaza").token == "2"
    assert controller.goto("7").name == "东门"
    assert controller.goto("东门").token == "7"
    assert camera.goto_calls == [("Profile_1", "2"), ("Profile_1", "7"), ("Profile_1", "7")]
    with pytest.raises(PresetNotFound):
        controller.goto("Roof")
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


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_driver_moves_at_every_visit_and_reports_changes(camera, loop):
    clock = FakeClock()
    plan = PatrolPlan(stops(), move_s=2, start=0)
    changes = []
    driver = PatrolDriver("gate-cam", PtzController(settings(camera), loop=loop, timeout=3), plan,
                          clock=clock, on_change=changes.append)
    driver.start()
    wait_for(lambda: len(camera.goto_calls) == 1)
    assert driver.state().phase == MOVING and not driver.state().analysing
    clock.advance(10)
    assert driver.state().analysing and driver.state().zones == ("gate",)
    clock.advance(30)  # t=40: second stop
    wait_for(lambda: len(camera.goto_calls) == 2)
    clock.advance(20)  # t=60: first stop again
    wait_for(lambda: len(driver.moves) == 3)
    driver.stop()
    assert [token for _, token in camera.goto_calls] == ["1", "2", "1"]
    assert [(c.visit, c.index) for c in changes] == [(0, 0), (1, 1), (2, 0)]
    assert [visit for visit, _ in driver.moves] == [0, 1, 2]
    driver.controller.close()


def test_failed_move_pauses_analysis_for_that_visit_only(camera, loop):
    clock = FakeClock()
    plan = PatrolPlan([PatrolStop(preset="Gate", dwell_s=10, settle_s=0),
                       PatrolStop(preset="Roof", dwell_s=10, settle_s=0)], move_s=1, start=0)
    driver = PatrolDriver("gate-cam", PtzController(settings(camera), loop=loop, timeout=3), plan, clock=clock)
    driver.start()
    wait_for(lambda: len(camera.goto_calls) == 1)
    clock.advance(5)
    assert driver.state().analysing
    clock.advance(10)  # t=15: the 'Roof' preset does not exist
    wait_for(lambda: 1 in driver._failed_visits)
    state = driver.state()
    assert state.phase == WATCHING and not state.position_ok and not state.analysing
    clock.advance(10)  # t=25: back at Gate
    wait_for(lambda: len(camera.goto_calls) == 2)
    assert driver.state().analysing
    driver.stop()
    driver.controller.close()


def test_interrupt_pauses_analysis_until_the_next_stop() -> None:
    """A sensor turned the camera away: the current stop is out of position, the next one is not."""
    from types import SimpleNamespace

    from gateway.onvif import PatrolDriver, PatrolPlan

    now = [0.0]
    stops = [SimpleNamespace(preset="1", dwell_s=10, settle_s=0, zones=[]),
             SimpleNamespace(preset="2", dwell_s=10, settle_s=0, zones=[])]
    driver = PatrolDriver("cam", controller=None, plan=PatrolPlan(stops, move_s=1), clock=lambda: now[0])
    now[0] = 5.0
    assert driver.state().analysing
    driver.interrupt()
    assert not driver.state().analysing and driver.state().preset == "1"
    now[0] = 12.5  # the second stop: the patrol moved the camera back into its plan
    assert driver.state().preset == "2" and driver.state().analysing
