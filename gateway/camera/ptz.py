"""A camera's PTZ as others steer it: a linked sensor turning it to a preset, a GB/T 28181
platform's PTZ commands and preset queries.

The camera's own patrol moves it too (gateway.onvif.patrol_driver); a command from outside
interrupts the patrol's view (analysis pauses: the picture no longer matches the stop's zones)
and the patrol goes on at its next stop. One `PtzController` per camera, shared with the patrol
when it has one, so the camera sees one ONVIF session. Only ONVIF cameras can be steered; any
other is refused with a `CameraControlError` that says so.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.config.models import Camera, OnvifSource
from gateway.status import CameraControlError, PresetInfo, PtzCommand

if TYPE_CHECKING:  # gateway.onvif loads zeep: imported only by cameras that use ONVIF
    from gateway.onvif import OnvifLoop, PtzController
    from gateway.onvif.patrol_driver import PatrolDriver

log = logging.getLogger("gateway.camera")

T = TypeVar("T")


class CameraPtz:
    def __init__(self, camera: Camera, onvif_loop: OnvifLoop | None, patrol: PatrolDriver | None = None) -> None:
        self.camera = camera
        self.onvif_loop = onvif_loop
        self.patrol = patrol
        self._controller: PtzController | None = patrol.controller if patrol is not None else None

    def close(self) -> None:
        if self._controller is not None:
            self._controller.close()

    def turn_to(self, preset: str) -> None:
        """A linked sensor triggered: turn to `preset` (returns at once; the outcome is logged)."""
        try:
            controller, loop = self._steerable()
        except CameraControlError as error:
            log.warning("camera %s: cannot turn to preset %s: %s", self.camera.id, preset, error)
            return
        self._interrupt_patrol()
        future = loop.submit(controller.agoto(preset))
        future.add_done_callback(lambda done: self._log_turn(preset, done))

    def presets(self, timeout_s: float) -> list[PresetInfo]:
        controller, _loop = self._steerable()
        found = self._run(controller.apresets(refresh=True), timeout_s, "list its PTZ presets")
        return [PresetInfo(preset.token, preset.name) for preset in found]

    def command(self, command: PtzCommand, timeout_s: float) -> None:
        """Carry out one PTZ command (see `gateway.status.PtzCommand`); raises CameraControlError."""
        controller, _loop = self._steerable()
        if command.action == "goto":
            self._interrupt_patrol()
            self._run(controller.agoto(command.preset or ""), timeout_s, f"go to preset {command.preset}")
            return
        raise CameraControlError(f"camera {self.camera.id}: PTZ {command.action} is not supported")

    def _steerable(self) -> tuple[PtzController, OnvifLoop]:
        if not isinstance(self.camera.source, OnvifSource) or self.onvif_loop is None:
            raise CameraControlError(f"camera {self.camera.id} is not an ONVIF camera: it has no PTZ to steer")
        if self._controller is None:
            from gateway.onvif import PtzController

            self._controller = PtzController(self.camera.source.onvif, loop=self.onvif_loop)
        return self._controller, self.onvif_loop

    def _interrupt_patrol(self) -> None:
        if self.patrol is not None:
            self.patrol.interrupt()

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float, what: str) -> T:
        assert self.onvif_loop is not None
        try:
            return self.onvif_loop.run(coro, timeout_s)
        except concurrent.futures.TimeoutError:
            raise CameraControlError(f"camera {self.camera.id}: could not {what} within {timeout_s:g} s") from None
        except Exception as error:  # noqa: BLE001 - every ONVIF failure is the caller's refusal reason
            raise CameraControlError(f"camera {self.camera.id}: could not {what}: {error}") from error

    def _log_turn(self, preset: str, done: concurrent.futures.Future[Any]) -> None:
        error = done.exception()
        if error is not None:
            log.warning("camera %s: could not turn to preset %s for a linked sensor: %s",
                        self.camera.id, preset, error)
        else:
            log.info("camera %s: turned to preset %s for a linked sensor", self.camera.id, preset)
