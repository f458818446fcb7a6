"""ONVIF: resolve cameras, discover them, patrol PTZ presets, and listen to camera events.

Public API (imported lazily, so `import gateway.onvif.cli` stays cheap for the CLI):

- `resolve_camera_sync(settings, timeout, loop=None) -> OnvifCamera` (and async `resolve_camera`):
  device info, media profiles, the chosen profile, stream URL (with credentials, for the reader;
  and redacted, for display), snapshot URL, clock skew.  Failures are `OnvifError` subclasses.
- `OnvifLoop` (in `gateway.onvif.session`, with the errors, the session and the helpers every
  ONVIF module shares): the one asyncio loop (daemon thread) that every long-lived ONVIF task shares.
- `OnvifEventListener` → `CameraEvent(camera_id, kind, active, source_topic, data, at)` records.
- `PtzController`, `PatrolDriver` (moves the camera), `PatrolPlan`, `PatrolState`, `PatrolStatus`
  (pure, in `gateway.onvif.patrol`: cheap to import for the API).
- `probe`, `discover`, `format_cameras_yaml` (WS-Discovery and the `gateway discover` stanza).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "session": ("OnvifLoop", "OnvifSession", "OnvifError", "OnvifUnreachable", "OnvifTimeout",
                "OnvifNotAuthorized", "OnvifSoapFault", "OnvifProtocolError", "OnvifNotSupported",
                "OnvifNoMediaProfile", "CLOCK_SKEW_WARN_S"),
    "device": ("OnvifCamera", "DeviceInfo", "MediaProfile", "resolve_camera", "resolve_camera_sync",
               "choose_profile"),
    "events": ("CameraEvent", "OnvifEventListener", "ListenerStatus", "parse_notification",
               "cancels_all_on_unsubscribe"),
    "ptz": ("PtzController", "PtzPreset", "PtzPosition", "PtzStatus", "PresetNotFound",
            "MoveNotConfirmed", "find_preset"),
    "patrol": ("PatrolPlan", "PatrolState", "PatrolStatus", "PATROL_STATES"),
    "patrol_driver": ("PatrolDriver",),
    "discovery": ("DiscoveredDevice", "DiscoveryResult", "probe", "discover", "format_cameras_yaml"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.onvif' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.onvif.{module}"), name)
