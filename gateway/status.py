"""The running gateway as the parts above the cameras see it: `GatewayView` (read),
`CameraControl` (act) and `VideoSource` (the cameras' encoded video), implemented by the live
view (`gateway.runtime.live.LiveGateway`), and `RecordSource` (the clips kept per camera,
implemented by the evidence clips).

The web API, the metrics, the outputs (MQTT, GB/T 28181) and the sensors never touch readers,
detectors or analytics directly (DESIGN §2: data flows one way); they are handed this narrow view,
which sits below all of them. Everything here is plain data so that a test can implement the
protocols with real frames and no threads.

Coordinates: `frame_size`, zone and mask polygons are in pixels of the *decoded* frame (what
`camera_snapshot` shows, before any downscaling of the JPEG). `resolution` and `coordinates`
say how the camera's YAML writes polygons, so the installer view can print a zone in the same
units the config file uses (see `gateway.config.models`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from gateway.events.counts import CameraCounts

if TYPE_CHECKING:
    from gateway.video.packets import PacketRing


@dataclass(frozen=True)
class PatrolStatus:
    """The patrol as operators see it (health, `/api/cameras`, `/metrics`).

    state: moving | settling | watching | away (turned to a linked sensor's preset) | failing
    (the move to this stop failed and is being retried) | stopped (the patrol task is not running).
    stop / preset: the stop the patrol is at or trying to reach. fault: the patrol, or one of its
    stops, has not been reachable for `patrol_fault_after_s` (a `patrol_fault` alert is open).
    moves / move_failures: confirmed moves and failed attempts since start. failing_for_s /
    failing_stop: how long moves have been failing and at which stop (`MoveFailures.worst`; None
    while every stop is reached). last_move_s: how long the last confirmed move took, from
    GotoPreset to arrival. confirmed_by: how that move was confirmed, "status" (the camera's PTZ
    status: idle, at the preset's position) or "time" (`patrol_move_s` after GotoPreset, for
    cameras that do not report their status). last_error: why the failing stop's last attempt
    failed (credentials never appear in it).
    """

    state: str
    stop: int
    preset: str
    fault: bool = False
    moves: int = 0
    move_failures: int = 0
    failing_for_s: float | None = None
    last_move_s: float | None = None
    confirmed_by: str | None = None
    last_error: str | None = None
    failing_stop: int | None = None


CameraState = Literal["connecting", "streaming", "backoff", "stopped", "offline"]
CAMERA_STATES: tuple[str, ...] = ("connecting", "streaming", "backoff", "stopped", "offline")

Point = tuple[float, float]


@dataclass(frozen=True)
class ZoneOutline:
    """A configured zone (or mask) as drawn on the decoded frame, in frame pixels."""

    id: str
    name: str = ""
    polygon: list[Point] = field(default_factory=list)

    @classmethod
    def coerce(cls, value: ZoneOutline | dict[str, Any]) -> ZoneOutline:
        """Accept the dataclass or a `{"id", "name", "polygon"}` dict."""
        if isinstance(value, ZoneOutline):
            return value
        return cls(str(value.get("id", "")), str(value.get("name") or ""),
                   [(float(x), float(y)) for x, y in value.get("polygon") or []])


@dataclass(frozen=True)
class CameraStatus:
    """One camera as operators and installers see it.

    state: the reader's state (`connecting|streaming|backoff|stopped`) or `offline` when the
    service has declared the camera offline (no frame for `offline_after_s`).
    analysed_fps / decoded_fps: frames per second handed to the detector / decoded.
    last_frame_age_s: seconds since the newest frame was decoded (None before the first frame).
    skip_ratio: share of due frames the motion gate skipped (0..1; None without motion gating).
    last_error: the reader's last error, already redacted (the API redacts it again anyway).
    source: the stream address for installers, redacted (`rtsp://admin:***@10.0.0.5/...`).
    frame_size: (width, height) of the decoded frame; None before the first frame.
    zones / masks: configured polygons in decoded-frame pixels.
    resolution / coordinates: the camera's YAML units (`resolution: [w, h]` the pixel polygons
    were drawn on, or `coordinates: normalized`); the installer view writes zones in these units.
    preset: the PTZ preset the camera is parked on / patrolling, if any.
    patrol: the PTZ patrol's state (None without a patrol): moving, watching, failing, fault...
    tiles_per_frame: detector runs per analysed frame (1 untiled; tiles + whole-frame pass tiled).
    inference_ms: mean detector time per analysed frame, all its tiles (None before the first).
    counts: the people it counts now, per zone, and from what (gateway.events.counts); None before the
    first analysed frame.
    """

    id: str
    name: str = ""
    grid_id: str = ""
    address: str = ""
    state: CameraState = "connecting"
    analysed_fps: float = 0.0
    decoded_fps: float = 0.0
    last_frame_age_s: float | None = None
    reconnects: int = 0
    last_error: str | None = None
    skip_ratio: float | None = None
    frame_size: tuple[int, int] | None = None
    zones: list[ZoneOutline] = field(default_factory=list)
    masks: list[ZoneOutline] = field(default_factory=list)
    preset: str | None = None
    source: str = ""
    resolution: tuple[int, int] | None = None
    coordinates: Literal["pixels", "normalized"] = "pixels"
    patrol: PatrolStatus | None = None
    tiles_per_frame: int = 1
    inference_ms: float | None = None
    counts: CameraCounts | None = None


@runtime_checkable
class GatewayView(Protocol):
    """Live, read-only state of the running gateway (implemented by the service).

    Every method is called from API worker threads and must be thread-safe and quick (no
    network I/O): `camera_snapshot` encodes the latest frame it already holds.
    """

    @property
    def gateway_id(self) -> str: ...

    @property
    def gateway_name(self) -> str: ...

    def cameras(self) -> list[CameraStatus]:
        """Every configured camera, in configuration order."""
        ...

    def camera_snapshot(self, camera_id: str) -> bytes | None:
        """A fresh annotated JPEG of the camera's latest frame; None if unknown or no frame yet."""
        ...

    def has_camera(self, camera_id: str) -> bool:
        """The camera is configured and running (remote look refuses made-up ids with this)."""
        ...

    def camera_online(self, camera_id: str) -> bool:
        """The camera runs and has not been declared offline (GB/T 28181 catalogue status)."""
        ...

    def health(self) -> dict[str, Any]:
        """The heartbeat body: every camera, the detector, every output, the disk, the sensors."""
        ...

    def readiness(self) -> dict[str, bool]:
        """Liveness of the parts the gateway needs, e.g. {"detector": True, "camera:gate": True}."""
        ...

    def failed_workers(self) -> list[str]:
        """Threads and tasks that died or hang, e.g. ["camera gate: reader thread is dead"]:
        what stops the systemd watchdog and turns /healthz to failing."""
        ...


# --------------------------------------------------------------------------- acting on cameras

PtzAction = Literal["move", "stop", "goto", "set", "remove"]


@dataclass(frozen=True)
class PtzCommand:
    """One PTZ command from outside the camera's own patrol (a GB/T 28181 platform, a sensor).

    move: pan/tilt/zoom speeds in -1..1 (0 leaves that axis still; pan > 0 right, tilt > 0 up,
    zoom > 0 in), until `stop`. goto/set/remove: the preset, by token, name or number as the
    camera numbers it (`set` creates or overwrites it; `name` optional).
    """

    action: PtzAction
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0
    preset: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class PresetInfo:
    """A PTZ preset as the camera lists it."""

    token: str
    name: str


class CameraControlError(Exception):
    """A camera command that cannot be carried out; the message says why, for the operator and
    for the platform that asked (unknown camera, no PTZ, camera offline, the camera refused)."""


@runtime_checkable
class CameraControl(Protocol):
    """Acting on the running cameras (implemented by the live view). Blocking calls with a time
    limit, for output and sensor threads (never the analysis thread)."""

    def ptz(self, camera_id: str, command: PtzCommand, timeout_s: float = 5.0) -> None:
        """Carry out one PTZ command through the camera's ONVIF PTZ service; raises
        CameraControlError. A patrolling camera pauses its analysis and resumes its patrol at the
        next stop, as for a linked sensor's preset."""
        ...

    def presets(self, camera_id: str, timeout_s: float = 5.0) -> list[PresetInfo]:
        """The camera's PTZ presets; raises CameraControlError (no PTZ, offline, refused)."""
        ...


# --------------------------------------------------------------------------- video


@runtime_checkable
class VideoSource(Protocol):
    """The cameras' encoded video as they send it (implemented by the live view): what a
    GB/T 28181 live stream remuxes. Quick, no I/O; called from an output's protocol thread."""

    def packets(self, camera_id: str) -> PacketRing | None:
        """The camera's packet ring (fed by its reader: no second connection to the camera), or
        None when no such camera runs. Subscribe to it; the ring closes when the camera stops."""
        ...


# --------------------------------------------------------------------------- recordings


@dataclass(frozen=True)
class RecordClip:
    """One stored video clip of a camera (an evidence clip), as a platform's RecordInfo lists it.

    start/end: local wall time of the gateway's time zone, 'YYYY-MM-DDTHH:MM:SS' (how GB/T 28181
    writes times). name: what the duty officer sees; path: where the gateway keeps it; size_bytes
    when known; kind: GB/T 28181 record type ("alarm" for evidence clips, "time", "manual").
    """

    start: str
    end: str
    name: str = ""
    path: str = ""
    size_bytes: int | None = None
    kind: str = "alarm"


@runtime_checkable
class RecordSource(Protocol):
    """The clips the gateway holds per camera (implemented by the evidence clips). Blocking and
    bounded by `timeout_s`: called from an output's worker thread, never the analysis thread."""

    def clips(self, camera_id: str, start: str, end: str, timeout_s: float = 5.0) -> list[RecordClip]:
        """The clips of `camera_id` that overlap start..end (local 'YYYY-MM-DDTHH:MM:SS'),
        oldest first; raises CameraControlError when the store cannot be read."""
        ...

    def recording(self, camera_id: str) -> bool:
        """Whether a clip of the camera is being written now (GB/T 28181 DeviceStatus Record).
        Quick, no I/O: asked on an output's protocol thread."""
        ...

    def clip_file(self, camera_id: str, start: float, stop: float) -> ClipFile | None:
        """The finished clip to play for start..stop (Unix seconds, a Playback INVITE's t= line):
        the one that covers `start`, else the first that begins before `stop`; None without
        one. Quick, no I/O: asked on an output's protocol thread."""
        ...


@dataclass(frozen=True)
class ClipFile:
    """A finished clip's file, to play back: its path, the wall time (Unix seconds) of its
    first and last packet, and its codec."""

    path: str
    start: float
    end: float
    codec: str | None = None
