"""A camera's PTZ as others steer it: a linked sensor turning it to a preset, a GB/T 28181
platform's PTZ commands and preset queries.

The camera's own patrol moves it too (gateway.onvif.patrol_driver); a command from outside
interrupts the patrol's view (analysis pauses: the picture no longer matches the stop's zones)
and the patrol goes on at its next stop. The commands themselves are ONVIF's
(`gateway.onvif.control.OnvifCameraControl`), over one `PtzController` per camera, shared with
the patrol when it has one, so the camera sees one ONVIF session. Only ONVIF cameras can be
steered; any other is refused with a `CameraControlError` that says so.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import TYPE_CHECKING, Any

from gateway.config.models import Camera, OnvifSource
from gateway.status import CameraControlError, PresetInfo, PtzCommand

if TYPE_CHECKING:  # gateway.onvif loads zeep: imported only by cameras that use ONVIF
    from gateway.onvif import OnvifLoop, PtzController
    from gateway.onvif.control import OnvifCameraControl
    from gateway.onvif.patrol_driver import PatrolDriver

log = logging.getLogger("gateway.camera")

MOVES = ("move", "goto")
"""Commands after which the camera no longer shows its patrol stop."""


class CameraPtz:
    def __init__(self, camera: Camera, onvif_loop: OnvifLoop | None, patrol: PatrolDriver | None = None) -> None:
        self.camera = camera
        self.onvif_loop = onvif_loop
        self.patrol = patrol
        self._controller: PtzController | None = patrol.controller if patrol is not None else None
        self._control: OnvifCameraControl | None = None

    def close(self) -> None:
        if self._controller is not None:
            self._controller.close()

    def turn_to(self, preset: str) -> None:
        """A linked sensor triggered: turn to `preset` (returns at once; the outcome is logged)."""
        try:
            controller, loop = self._shared_controller(), self._loop()
        except CameraControlError as error:
            log.warning("camera %s: cannot turn to preset %s: %s", self.camera.id, preset, error)
            return
        self._interrupt_patrol()
        future = loop.submit(controller.agoto(preset))
        future.add_done_callback(lambda done: self._log_turn(preset, done))

    def presets(self, timeout_s: float) -> list[PresetInfo]:
        return self._commands().presets(self.camera.id, timeout_s)

    def command(self, command: PtzCommand, timeout_s: float) -> None:
        """Carry out one PTZ command (see `gateway.status.PtzCommand`); raises CameraControlError."""
        control = self._commands()
        if command.action in MOVES:
            self._interrupt_patrol()
        control.ptz(self.camera.id, command, timeout_s)

    def _commands(self) -> OnvifCameraControl:
        if self._control is None:
            from gateway.onvif.control import OnvifCameraControl

            self._shared_controller()  # refuses a camera that is not ONVIF, with the reason
            self._control = OnvifCameraControl({self.camera.id: self._onvif_settings()}, loop=self._loop(),
                                               make_controller=lambda _settings, _loop: self._shared_controller())
        return self._control

    def _shared_controller(self) -> PtzController:
        if self._controller is None:
            from gateway.onvif import PtzController

            self._controller = PtzController(self._onvif_settings(), loop=self._loop())
        return self._controller

    def _onvif_settings(self) -> Any:
        source = self.camera.source
        if not isinstance(source, OnvifSource):
            raise CameraControlError(f"camera {self.camera.id} is not an ONVIF camera (no onvif: source): "
                                     "it has no PTZ to steer")
        return source.onvif

    def _loop(self) -> OnvifLoop:
        if self.onvif_loop is None:
            raise CameraControlError(f"camera {self.camera.id}: the ONVIF loop is not running")
        return self.onvif_loop

    def _interrupt_patrol(self) -> None:
        if self.patrol is not None:
            self.patrol.interrupt()

    def _log_turn(self, preset: str, done: concurrent.futures.Future[Any]) -> None:
        error = done.exception()
        if error is not None:
            log.warning("camera %s: could not turn to preset %s for a linked sensor: %s",
                        self.camera.id, preset, error)
        else:
            log.info("camera %s: turned to preset %s for a linked sensor", self.camera.id, preset)
