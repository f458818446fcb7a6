"""`OnvifCameraControl` and the PTZ additions (continuous move, stop, set/remove preset) against
the fake ONVIF camera, and arrival judged in the space the camera reports (item: a head that
reports 0..360 while naming the generic space). Waits are on the camera's reported position."""

from __future__ import annotations

import pytest

from gateway.config.models import OnvifSettings
from gateway.onvif.control import OnvifCameraControl
from gateway.onvif.ptz import (
    AxisRange,
    PtzController,
    PtzPosition,
    PtzPreset,
    PtzStatus,
    SpaceRanges,
    reached,
)
from gateway.onvif.session import OnvifLoop
from gateway.status import CameraControl, CameraControlError, PtzCommand
from onvif_device import FakeOnvifDevice, FakePreset
from waiting import wait_until

PRESETS = [FakePreset("1", "Gate", 0.1, -0.2, 0.0), FakePreset("2", "Plaza", 0.6, 0.3, 0.5)]
GENERIC = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"


@pytest.fixture(scope="module")
def loop():
    with OnvifLoop("test-control") as shared:
        yield shared


def settings(device: FakeOnvifDevice) -> OnvifSettings:
    return OnvifSettings(host=device.host, port=device.port, user="admin", password="Secret-1")


def test_continuous_move_moves_the_head_until_stop(loop):
    with FakeOnvifDevice(presets=PRESETS) as camera:
        control = OnvifCameraControl({"gate": settings(camera)}, loop=loop)
        assert isinstance(control, CameraControl)
        control.ptz("gate", PtzCommand("move", pan=0.5, tilt=-0.25))
        wait_until(lambda: camera.ptz_position()[0][0] > 0.05, what="the head panning right")
        assert camera.ptz_position()[0][1] < 0 and camera.ptz_position()[1] is True  # tilting down, moving
        control.ptz("gate", PtzCommand("stop"))
        stopped, moving = camera.ptz_position()
        assert not moving and camera.ptz_position()[0] == stopped  # it stays where it stopped
        assert [call[0] for call in camera.ptz_calls] == ["ContinuousMove", "Stop"]
        assert camera.ptz_calls[0][1] == "0.5 -0.25 0" and camera.ptz_calls[1][1] == "PanTilt Zoom"
        control.close()


def test_presets_are_stored_called_and_deleted_by_number(loop):
    with FakeOnvifDevice(presets=[FakePreset(p.token, p.name, p.pan, p.tilt, p.zoom) for p in PRESETS]) as camera:
        control = OnvifCameraControl({"gate": settings(camera)}, loop=loop)
        control.ptz("gate", PtzCommand("goto", preset="Plaza"))
        wait_until(lambda: camera.ptz_position() == ((0.6, 0.3, 0.5), False), what="the head at Plaza")
        control.ptz("gate", PtzCommand("set", preset="9"))  # a GB/T 28181 preset number: a new preset "9"
        assert [(p.name, p.pan) for p in camera.presets][-1] == ("9", 0.6)
        assert [p.name for p in control.presets("gate")] == ["Gate", "Plaza", "9"]
        control.ptz("gate", PtzCommand("goto", preset="1"))
        wait_until(lambda: camera.ptz_position()[0] == (0.1, -0.2, 0.0), what="the head at Gate")
        control.ptz("gate", PtzCommand("goto", preset="9"))
        wait_until(lambda: camera.ptz_position()[0] == (0.6, 0.3, 0.5), what="the head back at preset 9")
        control.ptz("gate", PtzCommand("set", preset="Gate"))  # an existing one: overwritten by token
        assert next(p for p in camera.presets if p.token == "1").pan == 0.6
        control.ptz("gate", PtzCommand("remove", preset="9"))
        assert [p.name for p in control.presets("gate")] == ["Gate", "Plaza"]
        with pytest.raises(CameraControlError, match=r"camera gate: no PTZ preset '9'"):
            control.ptz("gate", PtzCommand("goto", preset="9"))
        control.close()


def test_cameras_without_onvif_or_ptz_are_refused_naming_why(loop):
    with FakeOnvifDevice() as fixed:  # no presets: no PTZ service
        control = OnvifCameraControl({"fixed": settings(fixed), "rtsp-only": None}, loop=loop)
        with pytest.raises(CameraControlError, match="camera fixed has no PTZ: the device has no PTZ service"):
            control.ptz("fixed", PtzCommand("move", pan=1))
        with pytest.raises(CameraControlError, match="camera rtsp-only is not an ONVIF camera"):
            control.presets("rtsp-only")
        with pytest.raises(CameraControlError, match="unknown camera 'nope'"):
            control.ptz("nope", PtzCommand("stop"))
        control.close()


def test_reached_never_uses_a_negative_distance_in_a_degree_space_named_generic():
    plaza = PtzPreset("2", "plaza", PtzPosition(170.0, 20.0, pan_tilt_space=GENERIC))
    stuck = PtzStatus(False, PtzPosition(10.0, 20.0, pan_tilt_space=GENERIC))
    assert reached(stuck, plaza) is False  # by the positions' own range (no declared ranges)
    degrees = SpaceRanges(pan_tilt={GENERIC: (AxisRange(0, 360), AxisRange(-90, 90))})
    assert reached(stuck, plaza, degrees) is False
    assert reached(PtzStatus(False, PtzPosition(171.0, 20.5, pan_tilt_space=GENERIC)), plaza, degrees) is True
    north = PtzPreset("3", "north", PtzPosition(359.0, 0.0, pan_tilt_space=GENERIC))
    assert reached(PtzStatus(False, PtzPosition(1.0, 0.0, pan_tilt_space=GENERIC)), north, degrees) is True  # wraps


def test_arrival_is_judged_in_the_range_the_fake_degree_camera_declares(loop):
    presets = [FakePreset("1", "plaza", 170.0, 20.0, 0.0)]
    with FakeOnvifDevice(presets=presets, pan_range=(0, 360), tilt_range=(-90, 90),
                         start_position=(10.0, 20.0, 0.0), ptz_stuck=True) as camera:
        controller = PtzController(settings(camera), loop=loop, timeout=3)
        plaza = controller.goto("plaza")
        ranges = loop.run(controller.aranges(), 10)
        assert ranges.pan_tilt[GENERIC] == (AxisRange(0, 360), AxisRange(-90, 90))
        assert reached(controller.status(), plaza, ranges) is False  # stuck at pan 10: not at plaza
        camera.ptz_stuck = False
        controller.goto("plaza")
        wait_until(lambda: reached(controller.status(), plaza, ranges) is True, what="the head at plaza")
        controller.close()
