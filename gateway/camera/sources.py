"""What a camera's configured source needs to run: its reader, and the PTZ patrol of an ONVIF camera.

A file plays in real time, as a camera would; an RTSP URL or the NVR shorthand is read as it is; an
ONVIF camera is asked for its stream URI on every connection attempt (start, and after every
failure), so a camera that changed address or profile is found again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.config.models import Camera, FileSource, OnvifSource
from gateway.video.packets import EncodedPacket
from gateway.video.reader import CameraReader
from gateway.video.urls import source_url

if TYPE_CHECKING:  # gateway.onvif loads zeep: imported only by cameras that use ONVIF
    from gateway.onvif import OnvifLoop
    from gateway.onvif.patrol_driver import PatrolDriver

log = logging.getLogger("gateway.camera")

ONVIF_RESOLVE_TIMEOUT_S = 15.0


def make_reader(camera: Camera, packet_sink: Callable[[EncodedPacket], None] | None = None) -> CameraReader:
    """The reader for a camera's configured source (files play in real time, as a camera would).
    packet_sink: where every encoded packet goes as it is read (the camera's packet ring)."""
    source = camera.source

    def reader(url: str | Callable[[], str], **options: Any) -> CameraReader:
        return CameraReader(camera.id, url, decode_mode=camera.decode, analysis_fps=camera.fps,
                            stall_s=camera.stall_s, packet_sink=packet_sink, **options)

    if isinstance(source, FileSource):
        return reader(str(source.file), realtime=True, loop=source.loop)
    if isinstance(source, OnvifSource):
        return reader(onvif_stream_resolver(camera.id, source), transport=source.onvif.transport)
    url, transport = source_url(source)
    return reader(url, transport=transport)


def make_patrol(camera: Camera, onvif_loop: OnvifLoop | None) -> PatrolDriver:
    """The PTZ patrol of an ONVIF camera (config validation guarantees the ONVIF source; the
    service starts its ONVIF loop before any ONVIF camera)."""
    from gateway.onvif import PatrolDriver, PatrolPlan, PtzController

    if not isinstance(camera.source, OnvifSource) or onvif_loop is None:
        raise ValueError(f"camera {camera.id}: a PTZ patrol needs an onvif: source and the ONVIF loop")
    controller = PtzController(camera.source.onvif, loop=onvif_loop)
    plan = PatrolPlan(camera.patrol, move_s=camera.patrol_move_s, start=time.monotonic())
    return PatrolDriver(camera.id, controller, plan, move_s=camera.patrol_move_s,
                        move_timeout_s=camera.patrol_move_timeout_s,
                        fault_after_s=camera.patrol_fault_after_s)


def onvif_stream_resolver(camera_id: str, source: OnvifSource):
    """Asks the camera for its stream URI on every connection attempt (start and after failures)."""
    from gateway.onvif import resolve_camera_sync

    def resolve() -> str:
        camera = resolve_camera_sync(source.onvif, ONVIF_RESOLVE_TIMEOUT_S)
        log.info("camera %s: ONVIF %s %s, profile %s (%sx%s) -> %s", camera_id,
                 camera.device.manufacturer, camera.device.model, camera.profile.name,
                 *(camera.resolution or ("?", "?")), camera.stream_url_display)
        return camera.stream_url

    return resolve
