"""What the GB/T 28181 device state machine is given (`DeviceSettings`) and what it asks the
transport to do (`Action`s), apart from the machine itself so that the pure answer modules
(`queries`, `subscriptions`, `invites`) and the transport share them without importing the
machine. The media of an INVITE is set up, started and stopped by the transport (`OpenMedia`,
`StartMedia`, `StopMedia`), which tells the device how that went (`MediaEvent`). `DeviceSide`
is what the answering halves (`serving`, `invites`) use of the device itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.outputs.gb28181.sdp import InviteOffer
from gateway.outputs.gb28181.sip import SipMessage, SipRequest
from gateway.status import PtzCommand


@dataclass(frozen=True)
class DeviceSettings:
    """What the device needs to know (from the output's config, password in plain text)."""

    device_id: str
    platform_id: str
    domain: str
    password: str
    transport: Literal["UDP", "TCP"] = "UDP"
    expires_s: int = 3600
    keepalive_s: float = 60.0
    max_missed_keepalives: int = 3
    answer_timeout_s: float = 32.0
    name: str = ""
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    max_streams: int = 4
    """Live and playback streams at once (INVITE dialogs); beyond it 486 Busy Here, 0: video off."""


@dataclass(frozen=True)
class Send:
    """Put this message on the wire to the platform (responses: to where the request came from)."""

    message: SipMessage


@dataclass(frozen=True)
class AlarmOutcome:
    """How the alarm sent with `token` ended: error None = the platform answered 2xx."""

    token: int
    error: str | None


@dataclass(frozen=True)
class Disconnect:
    """TCP: drop the connection (the platform stopped answering on it) and connect anew."""

    reason: str


@dataclass
class DeviceCounters:
    """What the device has done so far (health, metrics)."""

    registrations: int = 0
    refreshes: int = 0
    registration_failures: int = 0
    keepalives_sent: int = 0
    keepalives_answered: int = 0
    alarms_sent: int = 0
    alarms_delivered: int = 0
    alarms_failed: int = 0
    queries_answered: int = 0
    answers_sent: int = 0
    answers_acknowledged: int = 0
    malformed: int = 0
    refused_requests: int = 0
    camera_jobs: int = 0
    controls_refused: int = 0
    notifies_sent: int = 0


JobKind = Literal["ptz", "presets", "records"]


@dataclass(frozen=True)
class CameraJob:
    """Ask a camera something that can take seconds (PTZ through `CameraControl`, its presets,
    its recordings through `RecordSource`): the transport runs it off the SIP thread and hands
    the result back with `Gb28181Device.job_done`, which answers the platform.

    start/end: the RecordInfo query's period (local 'YYYY-MM-DDTHH:MM:SS'); name: the channel's."""

    job_id: int
    kind: JobKind
    camera_id: str
    channel_id: str
    sn: int
    command: PtzCommand | None = None
    start: str = ""
    end: str = ""
    name: str = ""


MediaKind = Literal["live", "playback"]


@dataclass(frozen=True)
class OpenMedia:
    """An INVITE to serve: bind the media socket its answer will name and find the video (the
    camera's packets, or for playback the evidence clip covering start..stop, Unix seconds),
    then tell the device with `MediaReady` or `MediaFailed`. Nothing is sent before `StartMedia`.

    ssrc: from the offer's y= line (or chosen by the device when it has none). speed: how fast
    a recording is played (a Download's `a=downloadspeed`; 1 = real time)."""

    session_id: int
    camera_id: str
    channel_id: str
    kind: MediaKind
    offer: InviteOffer
    ssrc: int
    start: int = 0
    stop: int = 0
    speed: float = 1.0


@dataclass(frozen=True)
class StartMedia:
    """The platform acknowledged the answer (ACK): start sending."""

    session_id: int


@dataclass(frozen=True)
class StopMedia:
    """The session is over (BYE, CANCEL, the platform gone): stop sending and free the socket."""

    session_id: int
    reason: str


@dataclass(frozen=True)
class MediaReady:
    """`OpenMedia` done: the local port the SDP answer names, and the answer's f= line (what is
    sent: codec, size, rate; `sdp.video_format`)."""

    session_id: int
    port: int
    media_format: str = ""


@dataclass(frozen=True)
class MediaFailed:
    """`OpenMedia` could not be done: answer the INVITE with `status` (480 no video, 404 no
    recording, 488 a codec that cannot be sent, 500 no port); `cause` names it in the counters."""

    session_id: int
    status: int
    cause: str
    reason: str


@dataclass(frozen=True)
class MediaEnded:
    """The stream ended by itself (the camera stopped, the clip ended, the peer went away): BYE."""

    session_id: int
    reason: str


MediaEvent = MediaReady | MediaFailed | MediaEnded
MediaAction = OpenMedia | StartMedia | StopMedia
Action = Send | AlarmOutcome | Disconnect | CameraJob | OpenMedia | StartMedia | StopMedia


class DeviceSide(Protocol):
    """The device as the halves that answer the platform (`serving.PlatformRequests`,
    `invites.Invites`) use it: its settings and dialog tag, its Contact, and requests built and
    sent as the device's own (so they share its transactions and CSeq)."""

    settings: DeviceSettings
    to_tag: str

    @property
    def contact(self) -> str: ...

    def next_sn(self) -> int: ...

    def message_request(self, body: bytes) -> SipRequest: ...

    def new_request(self, method: str, uri: str, *, call_id: str, from_value: str, to_value: str) -> SipRequest: ...

    def send_request(self, request: SipRequest, purpose: Any, now: float, token: int | None = None,
                     subscription: tuple[str, str] | None = None) -> list[Action]: ...
