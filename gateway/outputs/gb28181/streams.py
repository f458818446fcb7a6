"""The video of a GB/T 28181 output's INVITE sessions: one `LiveStream` per session. The I/O.

The device decides (`invites`, pure); `MediaSessions` carries out its media actions on the
output's SIP thread and reports back:
- `OpenMedia`: find the video, the camera's packet ring (`VideoSource`: the ring the analysis
  reader feeds, so watching a camera opens no second RTSP session) or, for playback, the
  evidence clip covering the period (`RecordSource.clip_file`); bind the media socket the SDP
  answer names; answer `MediaReady`, or `MediaFailed` with the status the platform gets.
- `StartMedia` (the platform's ACK) starts the stream's sender thread; `StopMedia` stops it.
- A stream that ends by itself (the camera stopped or went silent, the clip ended, the TCP peer
  left or never connected) calls `ended(session_id, reason)` from its own thread; the transport
  hands that to the device, which sends BYE.
Nothing here waits for the network: a bind and in-memory look-ups (the clip file is opened on
the stream's own thread).

Ports: each stream binds one local port, named in the SDP answer: for UDP the port the packets
leave from, for TCP active the port the gateway connects from, for TCP passive the port it
listens on for the platform. With `media_ports` [first, last] they come from that range (in
turn, skipping ports in use), so a firewall can open exactly those; without it, any free port.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import partial
from typing import Any

from gateway.outputs.gb28181.actions import (
    MediaAction,
    MediaEvent,
    MediaFailed,
    MediaReady,
    OpenMedia,
    StartMedia,
    StopMedia,
)
from gateway.outputs.gb28181.media import LiveStream
from gateway.outputs.gb28181.playback import ClipPlayer
from gateway.outputs.gb28181.sdp import video_format
from gateway.outputs.gb28181.sources import PacketSource, RingSource
from gateway.status import RecordSource, VideoSource
from gateway.video.packets import StreamInfo

log = logging.getLogger(__name__)

PEER_CONNECT_S = 32.0
"""TCP: how long the platform may take to connect (passive) or to accept (active), 64*T1."""
STOP_WAIT_S = 0.5
"""How long `StopMedia` waits for a stream's thread (it ends by itself soon after anyway)."""
REMUXABLE = ("h264", "hevc")


@dataclass
class _Session:
    session_id: int
    camera_id: str
    channel_id: str
    kind: str
    stream: LiveStream
    opened_at: float


class MediaSessions:
    """The streams of one output (see the module docstring). Thread-safe: the SIP thread acts,
    the streams' threads report endings, health is read from anywhere."""

    def __init__(self, *, video: VideoSource | None, records: RecordSource | None, bind: str,
                 ports: tuple[int, int] | None, ended: Callable[[int, str], None], label: str,
                 timezone: tzinfo | None = None) -> None:
        self._video, self._records, self._bind, self._timezone = video, records, bind, timezone
        self._ports, self._ended, self._label = ports, ended, label
        self._lock = threading.Lock()
        self._sessions: dict[int, _Session] = {}
        self._bytes_by_camera: Counter[str] = Counter()
        """Bytes sent by the streams that ended, per camera (the open ones are added when asked)."""
        self._frames_sent = 0
        """Frames sent by the streams that ended."""
        self._next_port = 0

    def carry_out(self, action: MediaAction) -> MediaEvent | None:
        if isinstance(action, OpenMedia):
            return self._open(action)
        with self._lock:
            session = self._sessions.get(action.session_id)
        if session is None:
            return None
        if isinstance(action, StartMedia):
            session.stream.start()
        else:
            assert isinstance(action, StopMedia)
            self._stop(session, action.reason)
        return None

    def stop_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            self._stop(session, "the output stopped")

    def health(self) -> dict[str, Any]:
        with self._lock:
            sessions = list(self._sessions.values())
            by_camera, frames = Counter(self._bytes_by_camera), self._frames_sent
        described = []
        for session in sessions:
            health = session.stream.health()
            by_camera[session.camera_id] += health.bytes_sent
            frames += health.frames_sent
            described.append({
                "session": session.session_id, "camera_id": session.camera_id, "channel_id": session.channel_id,
                "kind": session.kind, "destination": health.destination, "local_port": session.stream.local_port,
                "state": health.state, "since": self._iso(session.opened_at),
                "bytes_sent": health.bytes_sent, "frames_sent": health.frames_sent,
                "frames_dropped": health.frames_dropped,
            })
        return {"live_bytes_sent": sum(by_camera.values()), "live_bytes_by_camera": dict(by_camera),
                "live_frames_sent": frames, "live_sessions": described}

    # ------------------------------------------------------------------ opening

    def _open(self, action: OpenMedia) -> MediaEvent:
        found = self._live(action) if action.kind == "live" else self._recording(action)
        if isinstance(found, MediaFailed):
            return found
        stream_info, source, media_format = found
        try:
            stream = self._bound_stream(action, stream_info, source)
        except OSError as error:
            source.close()
            return MediaFailed(action.session_id, 500, "no_port", str(error))
        with self._lock:
            self._sessions[action.session_id] = _Session(action.session_id, action.camera_id, action.channel_id,
                                                         action.kind, stream, time.time())
        return MediaReady(action.session_id, stream.local_port, media_format)

    def _live(self, action: OpenMedia) -> tuple[StreamInfo, PacketSource, str] | MediaFailed:
        camera = action.camera_id
        ring = self._video.packets(camera) if self._video is not None else None
        if ring is None:
            return MediaFailed(action.session_id, 480, "no_video", f"camera {camera} is not running on this gateway")
        stream = ring.stream
        if stream is None:
            return MediaFailed(action.session_id, 480, "no_video", f"camera {camera} has sent no video yet")
        if not stream.remuxable:
            return MediaFailed(action.session_id, 488, "codec", (
                f"camera {camera} sends {stream.codec} video, which cannot be sent without re-encoding: "
                "set the camera to H.264 or H.265"))
        return stream, RingSource(ring), video_format(stream.codec, stream.width, stream.height, stream.fps)

    def _recording(self, action: OpenMedia) -> tuple[None, PacketSource, str] | MediaFailed:
        camera = action.camera_id
        clip = self._records.clip_file(camera, action.start, action.stop) if self._records is not None else None
        if clip is None:
            return MediaFailed(action.session_id, 404, "no_recording", (
                f"no clip of camera {camera} from {self._local(action.start)} to {self._local(action.stop)}"))
        if clip.codec is not None and clip.codec not in REMUXABLE:
            return MediaFailed(action.session_id, 488, "codec", f"the clip of camera {camera} is {clip.codec} video")
        player = ClipPlayer(camera, clip, start=action.start, stop=action.stop, speed=action.speed)
        return None, player, video_format(clip.codec or "", 0, 0, None)

    def _bound_stream(self, action: OpenMedia, stream: StreamInfo | None, source: PacketSource) -> LiveStream:
        """The session's stream on a port of `media_ports` (skipping those in use) or any free port."""
        options: dict[str, Any] = dict(ssrc=action.ssrc, bind_host=self._bind, source=source,
                                       on_end=partial(self._ended, action.session_id),
                                       accept_timeout_s=PEER_CONNECT_S, connect_timeout_s=PEER_CONNECT_S)
        for port in self._candidate_ports():
            try:
                return LiveStream.for_offer(action.camera_id, stream, action.offer, local_port=port, **options)
            except OSError as error:
                if error.errno != errno.EADDRINUSE or self._ports is None:
                    raise
        assert self._ports is not None
        raise OSError(errno.EADDRINUSE, f"no free media port in {self._ports[0]}-{self._ports[1]} "
                                        f"(media_ports; {len(self._sessions)} stream(s) open)")

    def _candidate_ports(self) -> list[int]:
        if self._ports is None:
            return [0]
        first, last = self._ports
        with self._lock:
            used = {session.stream.local_port for session in self._sessions.values()}
            count = last - first + 1
            start, self._next_port = self._next_port % count, self._next_port + 1
        return [port for port in (first + (start + i) % count for i in range(count)) if port not in used]

    def _stop(self, session: _Session, reason: str) -> None:
        """Stop the stream, then count what it sent and forget it (health never misses it)."""
        session.stream.stop(STOP_WAIT_S)
        health = session.stream.health()
        with self._lock:
            if self._sessions.pop(session.session_id, None) is None:
                return  # stopped twice (StopMedia racing the output's stop)
            self._bytes_by_camera[session.camera_id] += health.bytes_sent
            self._frames_sent += health.frames_sent
        log.info("%s: camera %s: %s stream ended after %d frames (%d kB): %s", self._label, session.camera_id,
                 session.kind, health.frames_sent, health.bytes_sent // 1024, reason)

    def _iso(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self._timezone).astimezone(self._timezone).isoformat(timespec="seconds")

    def _local(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self._timezone).strftime("%Y-%m-%dT%H:%M:%S")
