"""Reactions: what the gateway itself does when an alert is raised, after it is safely queued.

A reaction decides from the alert payload alone (pure) and acts through the live view's narrow
`PresetTurner` side, so the delivery package never reaches back into cameras.
"""

from __future__ import annotations

import logging
from typing import Protocol

from gateway.events import AlertMessage

log = logging.getLogger(__name__)


class Reaction(Protocol):
    def __call__(self, message: AlertMessage) -> None: ...


class PresetTurner(Protocol):
    """The live view's hand on PTZ cameras (gateway.runtime.live.LiveGateway)."""

    def turn_to_preset(self, camera_id: str, preset: str) -> None:
        """Move a PTZ camera to a preset; returns at once (a patrol pauses until its next stop)."""
        ...


class PtzLinkage:
    """A sensor alert that starts with `details.preset` (the sensor's `link.preset`) turns its
    first linked camera to that preset, so the duty officer sees where the sensor fired."""

    def __init__(self, cameras: PresetTurner) -> None:
        self.cameras = cameras

    @staticmethod
    def target(message: AlertMessage) -> tuple[str, str] | None:
        """(camera_id, preset) to turn to, or None when this alert turns nothing."""
        payload = message.payload
        details = payload.get("details") or {}
        if payload.get("type") != "sensor" or payload.get("state") != "start" or not details.get("preset"):
            return None
        linked = details.get("linked") or []
        if not linked or not linked[0].get("camera_id"):
            return None
        return linked[0]["camera_id"], str(details["preset"])

    def __call__(self, message: AlertMessage) -> None:
        target = self.target(message)
        if target is not None:
            self.cameras.turn_to_preset(*target)
