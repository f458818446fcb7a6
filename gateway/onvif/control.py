"""`OnvifCameraControl`: `gateway.status.CameraControl` over ONVIF PTZ, for the cameras' settings.

What a GB/T 28181 platform (or anything else above the cameras) asks of a camera's head -
move with speeds, stop, go to / store / delete a preset, list the presets - is carried out here
through one `PtzController` per camera, made on first use and kept (its session stays open on
the shared `OnvifLoop`, as the patrol's does). Every failure becomes a `CameraControlError`
whose message says which camera and why (not an ONVIF camera, no PTZ service, the camera
refused or did not answer), fit for an operator's log and for the platform's Result ERROR.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from gateway.onvif.ptz import PresetNotFound, PtzController
from gateway.onvif.session import OnvifError, OnvifLoop, OnvifNotSupported
from gateway.status import CameraControlError, PresetInfo, PtzCommand

log = logging.getLogger("gateway.onvif.control")


class OnvifCameraControl:
    """CameraControl for `cameras`: camera id -> its `OnvifSettings` (None: not an ONVIF camera,
    e.g. a plain RTSP source). Thread-safe; blocking calls bounded by their `timeout_s`."""

    def __init__(self, cameras: Mapping[str, Any | None], *, loop: OnvifLoop,
                 make_controller: Callable[[Any, OnvifLoop], PtzController] | None = None) -> None:
        self._settings = dict(cameras)
        self._loop = loop
        self._make = make_controller or (lambda settings, shared: PtzController(settings, loop=shared))
        self._controllers: dict[str, PtzController] = {}
        self._lock = threading.Lock()

    def ptz(self, camera_id: str, command: PtzCommand, timeout_s: float = 5.0) -> None:
        controller = self._controller(camera_id)
        if command.action == "move":
            self._run(camera_id, "move", controller.amove(command.pan, command.tilt, command.zoom), timeout_s)
        elif command.action == "stop":
            self._run(camera_id, "stop", controller.astop(), timeout_s)
        elif command.action in ("goto", "set", "remove"):
            if not command.preset:
                raise CameraControlError(f"camera {camera_id}: PTZ {command.action} needs a preset")
            if command.action == "goto":
                self._run(camera_id, f"go to preset {command.preset}", controller.agoto(command.preset), timeout_s)
            elif command.action == "set":
                self._run(camera_id, f"store preset {command.preset}",
                          controller.aset_preset(command.preset, command.name), timeout_s)
            else:
                self._run(camera_id, f"delete preset {command.preset}",
                          controller.aremove_preset(command.preset), timeout_s)
        else:
            raise CameraControlError(f"camera {camera_id}: unknown PTZ action {command.action!r}")

    def presets(self, camera_id: str, timeout_s: float = 5.0) -> list[PresetInfo]:
        controller = self._controller(camera_id)
        found = self._run(camera_id, "list presets", controller.apresets(refresh=True), timeout_s)
        return [PresetInfo(token=preset.token, name=preset.name) for preset in found]

    def close(self) -> None:
        """Close every camera's PTZ session (the loop itself belongs to the caller)."""
        with self._lock:
            controllers, self._controllers = list(self._controllers.values()), {}
        for controller in controllers:
            try:
                controller.close()
            except Exception as error:  # noqa: BLE001 - closing is best effort
                log.debug("closing the PTZ session of %s failed: %s", controller.endpoint, error)

    # ------------------------------------------------------------------ helpers

    def _controller(self, camera_id: str) -> PtzController:
        if camera_id not in self._settings:
            raise CameraControlError(f"unknown camera {camera_id!r}")
        settings = self._settings[camera_id]
        if settings is None:
            raise CameraControlError(f"camera {camera_id} is not an ONVIF camera (no onvif: source): "
                                     "it has no PTZ control")
        with self._lock:
            controller = self._controllers.get(camera_id)
            if controller is None:
                controller = self._controllers[camera_id] = self._make(settings, self._loop)
            return controller

    def _run(self, camera_id: str, what: str, coroutine: Any, timeout_s: float) -> Any:
        """Run one PTZ step on the loop within `timeout_s`; every failure as CameraControlError."""
        try:
            return self._loop.run(coroutine, timeout_s)
        except (concurrent.futures.TimeoutError, TimeoutError):
            raise CameraControlError(f"camera {camera_id}: PTZ {what}: no answer within {timeout_s:g} s") from None
        except OnvifNotSupported as error:
            raise CameraControlError(f"camera {camera_id} has no PTZ: {error.detail}") from None
        except PresetNotFound as error:
            raise CameraControlError(f"camera {camera_id}: {error.detail}") from None
        except OnvifError as error:
            raise CameraControlError(f"camera {camera_id}: PTZ {what} failed: {error}") from None
