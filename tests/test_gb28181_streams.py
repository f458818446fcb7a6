"""The video side of GB/T 28181 INVITEs, piece by piece, on real packets and files: a camera's
ring as a stream's source (from its last keyframe; ended when the camera stops or goes silent),
an evidence clip played at the pace of its timestamps (from the keyframe before the start, to
the end of the period; a fake clock, so nothing waits), and `MediaSessions` finding the video,
refusing what cannot be sent with the platform's status, binding ports from `media_ports`
(skipping ports in use, 500 when none is left), and reporting a stream that ended by itself.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.evidence.alerts import ClipEvidence, ClipRecords
from gateway.evidence.store import ClipStore
from gateway.outputs.gb28181.actions import MediaFailed, MediaReady, OpenMedia, StartMedia, StopMedia
from gateway.outputs.gb28181.playback import ClipPlayer
from gateway.outputs.gb28181.sdp import parse_offer
from gateway.outputs.gb28181.sources import RingSource
from gateway.outputs.gb28181.streams import MediaSessions
from gateway.status import ClipFile
from gateway.video.packets import EncodedPacket, PacketRing, StreamGap
from gb28181_media_support import VTEST_AVI, VTEST_H264, read_packets
from test_gb28181_sipp import platform_port
from waiting import wait_until

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFER = "v=0\r\ns={session}\r\nc=IN IP4 127.0.0.1\r\nt={timing}\r\nm=video {port} RTP/AVP 96\r\n" \
        "a=recvonly\r\na=rtpmap:96 PS/90000\r\ny=0200000001\r\n"


@pytest.fixture(scope="module")
def packets() -> list[EncodedPacket]:
    return read_packets(VTEST_H264, limit=60)  # 6 s: keyframes at 0, 2 and 4 s


class Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def fed_ring(packets: list[EncodedPacket], name: str = "east") -> PacketRing:
    ring = PacketRing(name, keep_s=0.0)
    for index, packet in enumerate(packets):
        ring.put(dataclasses.replace(packet, received_at=100.0 + index / 10))
    return ring


# --------------------------------------------------------------------------- the camera's ring


def test_a_ring_source_starts_at_the_last_keyframe_and_ends_when_the_camera_stops(packets):
    ring = fed_ring(packets[:45])  # the last keyframe held: packet 40 (4 s)
    source = RingSource(ring)
    source.open()
    first = source.get(0)
    assert isinstance(first, EncodedPacket) and first.keyframe and first.data == packets[40].data
    ring.put(dataclasses.replace(packets[45], received_at=200.0))
    reconnected = dataclasses.replace(packets[0], stream=dataclasses.replace(packets[0].stream), received_at=201.0)
    ring.put(reconnected)  # the camera reconnected: a new stream
    items = [source.get(0) for _ in range(7)]  # 41..45, the gap, the new stream's keyframe
    assert sum(isinstance(item, EncodedPacket) for item in items) == 6 and source.end_reason is None
    assert StreamGap("new_stream") in items
    ring.close()
    assert source.get(0) is None and source.end_reason == "camera east stopped"
    source.close()


def test_a_silent_camera_ends_its_ring_source(packets):
    clock = Clock()
    ring = fed_ring(packets[:10])
    source = RingSource(ring, no_video_s=10, clock=clock)
    source.open()
    assert all(source.get(0) is not None for _ in range(10))
    clock.now += 9.9
    assert source.get(0) is None and source.end_reason is None
    clock.now += 0.1
    assert source.get(0) is None and source.end_reason == "camera east sent no video for 10 s"


# --------------------------------------------------------------------------- an evidence clip


def clip_of_vtest() -> ClipFile:
    return ClipFile(str(VTEST_H264), start=1_700_000_000.0, end=1_700_000_079.4, codec="h264")


def play(player: ClipPlayer, clock: Clock) -> list[tuple[float, EncodedPacket]]:
    """Everything the player gives, with the (fake) time it gave it at."""
    player.open()
    given = []
    while player.end_reason is None:
        item = player.get(0.2)
        if isinstance(item, EncodedPacket):
            given.append((clock.now, item))
    return given


def test_a_clip_plays_from_the_keyframe_before_the_start_to_the_end_of_the_period():
    clock = Clock()
    clip = clip_of_vtest()
    player = ClipPlayer("east", clip, start=clip.start + 5, stop=clip.start + 9, clock=clock, sleep=clock.sleep)
    given = play(player, clock)
    began, first = given[0]
    assert first.keyframe and first.t == pytest.approx(4.0)  # the keyframe at or before 5 s
    assert given[-1][1].t == pytest.approx(9.0) and len(given) == 51  # 4.0 .. 9.0 s at 10 fps
    for at, packet in given:  # each packet when its time has come, never early
        assert at >= began + (packet.t - first.t) - 1e-9
    assert given[-1][0] - began == pytest.approx(5.0, abs=0.21)
    assert player.end_reason.startswith("the recording reached the end of the period asked for (51 frames)")


def test_a_download_plays_faster_and_a_clip_ends_with_its_file():
    clock = Clock()
    clip = clip_of_vtest()
    player = ClipPlayer("east", clip, start=clip.start - 60, stop=clip.end + 60, speed=4, clock=clock,
                        sleep=clock.sleep)
    given = play(player, clock)
    assert len(given) == 795 and given[0][1].t == pytest.approx(0.0)
    assert given[-1][0] - given[0][0] == pytest.approx(79.4 / 4, abs=0.21)
    assert player.end_reason == "the clip ended (795 frames)"


def test_an_unreadable_clip_is_named(tmp_path: Path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not an mp4 at all")
    with pytest.raises(OSError, match=f"camera east: cannot read the clip {broken}"):
        ClipPlayer("east", ClipFile(str(broken), 0.0, 1.0)).open()


# --------------------------------------------------------------------------- sessions


class Video:
    """The live view's `VideoSource` over some rings."""

    def __init__(self, **rings: PacketRing) -> None:
        self.rings = rings

    def packets(self, camera_id: str) -> PacketRing | None:
        return self.rings.get(camera_id)


def open_media(session_id: int, camera_id: str, port: int, *, kind: str = "live", session: str = "Play",
               timing: str = "0 0") -> OpenMedia:
    offer = parse_offer(OFFER.format(session=session, timing=timing, port=port))
    start, stop = offer.start, offer.stop
    return OpenMedia(session_id, camera_id, "34020000001320000001", kind, offer, 200000001, start, stop)


class Discard:
    """Where `ClipEvidence` would route alerts: nowhere (no alert is raised here)."""

    def route(self, messages: Any) -> None:
        raise AssertionError("no alert is routed in this test")


def sessions(ended: list | None = None, **options: Any) -> MediaSessions:
    options = {"video": None, "records": None, "ports": None} | options
    return MediaSessions(bind="127.0.0.1", ended=lambda *args: (ended if ended is not None else []).append(args),
                         label="test", timezone=SHANGHAI, **options)


def test_video_that_cannot_be_sent_is_refused_with_the_platforms_status(packets, tmp_path: Path):
    avi = PacketRing("old")
    for packet in read_packets(VTEST_AVI, limit=3):
        avi.put(dataclasses.replace(packet, keyframe=True))
    media = sessions(video=Video(east=PacketRing("east"), old=avi),
                     records=ClipRecords(ClipStore(tmp_path), ClipEvidence(Discard()), timezone=SHANGHAI))
    cases = {
        "absent": open_media(1, "absent", 9),
        "east": open_media(2, "east", 9),
        "old": open_media(3, "old", 9),
        "playback": open_media(4, "east", 9, kind="playback", session="Playback", timing="1700000000 1700000060"),
    }
    answers = {name: media.carry_out(action) for name, action in cases.items()}
    assert answers["absent"] == MediaFailed(1, 480, "no_video", "camera absent is not running on this gateway")
    assert answers["east"] == MediaFailed(2, 480, "no_video", "camera east has sent no video yet")
    assert (answers["old"].status, answers["old"].cause) == (488, "codec")
    assert "camera old sends msmpeg4 video, which cannot be sent without re-encoding" in answers["old"].reason
    assert answers["playback"] == MediaFailed(4, 404, "no_recording", "no clip of camera east from "
                                              "2023-11-15T06:13:20 to 2023-11-15T06:14:20")
    assert media.health()["live_sessions"] == []


def two_free_ports() -> int:
    """A port p with p and p + 1 free, below the ephemeral range (nothing else is handed them)."""
    for _ in range(100):
        first = platform_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", first + 1))
            return first
        except OSError:
            continue
    raise RuntimeError("no two free ports in a row")


def test_ports_come_from_media_ports_skipping_those_in_use(packets):
    first = two_free_ports()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", first))  # another program has the range's first port
        media = sessions(video=Video(east=fed_ring(packets)), ports=(first, first + 1))
        ready = media.carry_out(open_media(1, "east", 9))
        assert ready == MediaReady(1, first + 1, "v/2//10//a///")
        busy = media.carry_out(open_media(2, "east", 9))
        assert isinstance(busy, MediaFailed) and (busy.status, busy.cause) == (500, "no_port")
        assert f"no free media port in {first}-{first + 1}" in busy.reason
        media.carry_out(StopMedia(1, "the platform ended the session (BYE)"))
        assert media.carry_out(open_media(3, "east", 9)) == MediaReady(3, first + 1, "v/2//10//a///")
        media.stop_all()
        assert media.health()["live_sessions"] == []


def test_a_stream_that_ends_by_itself_is_reported_with_its_reason(packets):
    ended: list[tuple[int, str]] = []
    ring = fed_ring(packets)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media_server:
        media_server.bind(("127.0.0.1", 0))
        media = sessions(ended, video=Video(east=ring))
        ready = media.carry_out(open_media(7, "east", media_server.getsockname()[1]))
        assert isinstance(ready, MediaReady)
        media.carry_out(StartMedia(7))
        wait_until(lambda: media.health()["live_frames_sent"] >= 20, what="the GOP held sent")
        [session] = media.health()["live_sessions"]
        assert (session["camera_id"], session["state"], session["local_port"]) == ("east", "streaming", ready.port)
        ring.close()  # the camera stops
        wait_until(lambda: ended, what="the stream's end reported")
        assert ended == [(7, "camera east stopped")]
        media.carry_out(StopMedia(7, "camera east stopped"))
        health = media.health()
        assert health["live_sessions"] == [] and health["live_frames_sent"] == 20
        assert health["live_bytes_by_camera"]["east"] == health["live_bytes_sent"] > 0
