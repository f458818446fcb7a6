"""Evidence clips: real packets of the sample H.264 file remuxed to MP4, checked with ffprobe.

The packets are read with PyAV from ../shared/data/vtest_h264.mp4 (768x576, 10 fps, keyframe
every 2 s) and put into a real `PacketRing` with ring times = presentation time + 1000 s, as a
camera sending in real time would deliver them; the recorder's clocks are driven by the test
(`Camera.advance`), so every rule is checked without threads or waiting. Every clip file is
read back by ffprobe (a subprocess) frame by frame; one is played by Debian's Chromium.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from clip_support import (
    VTEST_AVI,
    VTEST_H264,
    launch_chromium,
    probe,
    read_packets,
    restamped,
    serve_folder,
    transcode,
)
from gateway.evidence.clips import ClipPolicy, ClipRecorder
from gateway.evidence.mp4 import ClipFormatError, Mp4ClipWriter, write_clip
from gateway.evidence.store import ClipStore
from gateway.evidence.worker import ClipWorker
from gateway.video.h26x import START_CODE
from gateway.video.packets import EncodedPacket, PacketRing, StreamInfo
from waiting import PATIENCE_S, wait_until

OFFSET = 1000.0
WALL = 1_750_000_000.0
"""Epoch seconds at ring time 0: a clip's from/to are WALL + its packets' ring times."""
FPS = 10


def event_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def packets() -> list[EncodedPacket]:
    return read_packets(VTEST_H264, ring_offset=OFFSET)


class Camera:
    """A ring fed with the file's packets up to a stream time, and a recorder pumped at it."""

    def __init__(self, packets: list[EncodedPacket], store: ClipStore, policy: ClipPolicy, keep_s: float = 0.0):
        self.packets, self.index, self.now = packets, 0, OFFSET
        self.ring = PacketRing("gate", keep_s=keep_s)
        self.recorder = ClipRecorder("gate", self.ring, store, policy, clock=lambda: self.now,
                                     wall_clock=lambda: WALL + self.now)
        self.finished: list = []

    def advance(self, seconds: float) -> list:
        """Deliver the packets up to `seconds` of video, then let the recorder write them."""
        self.now = OFFSET + seconds
        while self.index < len(self.packets) and self.packets[self.index].received_at <= self.now:
            self.ring.put(self.packets[self.index])
            self.index += 1
        finished = self.recorder.pump()
        self.finished += finished
        return finished


@pytest.fixture
def store(tmp_path: Path) -> ClipStore:
    return ClipStore(tmp_path)


def at(seconds: float) -> float:
    return OFFSET + seconds


# --------------------------------------------------------------------------- what goes into a clip


def test_clip_runs_from_the_keyframe_before_the_pre_roll_to_the_post_roll(packets, store) -> None:
    camera = Camera(packets, store, ClipPolicy(pre_s=5, post_s=5))
    camera.advance(30.0)
    event = event_id()
    started = camera.recorder.start(event, at(30.0))
    assert started.status == "recording" and started.event_ts == pytest.approx(WALL + at(30.0))
    assert camera.ring.keep_s >= 5 + ClipPolicy().start_delay_s  # the ring keeps the whole pre-roll
    camera.advance(40.0)
    camera.recorder.end(event, at(40.0))
    assert camera.advance(45.0) == []  # still recording up to end + post_s
    assert store.get(event).status == "recording" and store.get(event).size > 0  # already on disk
    [clip] = camera.advance(45.2)
    assert clip.status == "ready" and clip.reason is None and clip.codec == "h264"
    # the keyframe at or before start - pre_s (25 s) is the one at 24 s: within one GOP of it
    assert clip.from_ts == pytest.approx(WALL + at(24.0))
    assert clip.to_ts == pytest.approx(WALL + at(45.0))
    assert clip.packets == 211 and clip.size == store.path(event).stat().st_size
    assert store.get(event) == clip
    found = probe(store.path(event))
    assert (found.codec, found.width, found.height) == ("h264", 768, 576)
    assert found.first_key and found.first_pict_type == "I" and found.frame_times[0] == 0.0
    assert found.frames == 211 and found.duration == pytest.approx(21.1, abs=0.05)


def test_a_reconnect_ends_the_clip_as_partial(packets, store) -> None:
    camera = Camera(packets, store, ClipPolicy(pre_s=5, post_s=5))
    camera.advance(30.0)
    event = event_id()
    camera.recorder.start(event, at(30.0))
    camera.advance(35.0)
    new_stream = replace(packets[0].stream)  # the same camera after a reconnect: another StreamInfo
    camera.packets = packets[:351] + restamped(packets[:100], new_stream, shift=37.0)  # back at 37 s
    [clip] = camera.advance(45.0)
    assert clip.status == "partial" and "reconnected" in clip.reason
    assert clip.to_ts == pytest.approx(WALL + at(35.0)) and clip.packets == 111  # 24.0 .. 35.0 s
    found = probe(store.path(event))
    assert found.frames == 111 and found.first_key


def test_max_s_caps_a_clip_whose_event_does_not_end(packets, store) -> None:
    camera = Camera(packets, store, ClipPolicy(pre_s=5, post_s=5, max_s=6))
    camera.advance(30.0)
    event = event_id()
    camera.recorder.start(event, at(30.0))
    [clip] = camera.advance(50.0)
    assert clip.status == "ready" and "capped at 6 s" in clip.reason
    assert clip.to_ts == pytest.approx(WALL + at(36.0)) and probe(store.path(event)).frames == 121
    camera.recorder.end(event, at(50.0))  # the event ends later: its clip is done already
    assert camera.advance(60.0) == [] and store.get(event) == clip


def test_overlapping_events_each_get_their_own_clip_from_shared_packets(packets, store) -> None:
    camera = Camera(packets, store, ClipPolicy(pre_s=5, post_s=5))
    first, second = event_id(), event_id()
    camera.advance(30.0)
    camera.recorder.start(first, at(30.0))
    camera.advance(33.0)
    camera.recorder.start(second, at(33.0))
    assert camera.ring.stats().subscribers == 2 and camera.recorder.recording == 2
    camera.advance(36.0)
    camera.recorder.end(first, at(36.0))
    camera.advance(40.0)
    camera.recorder.end(second, at(40.0))
    camera.advance(50.0)
    clips = {clip.event_id: clip for clip in camera.finished}
    assert clips[first].from_ts == pytest.approx(WALL + at(24.0))
    assert clips[first].to_ts == pytest.approx(WALL + at(41.0))
    assert clips[second].from_ts == pytest.approx(WALL + at(28.0))
    assert clips[second].to_ts == pytest.approx(WALL + at(45.0))
    assert probe(store.path(first)).frames == 171 and probe(store.path(second)).frames == 171
    assert camera.ring.stats().subscribers == 0 and camera.recorder.recording == 0


def test_a_second_start_for_the_same_event_is_ignored(packets, store) -> None:
    camera = Camera(packets, store, ClipPolicy(pre_s=2, post_s=1))
    camera.advance(10.0)
    event = event_id()
    camera.recorder.start(event, at(10.0))
    camera.recorder.start(event, at(11.0))  # a resent start message
    assert camera.ring.stats().subscribers == 1
    camera.recorder.end(event, at(12.0))
    [clip] = camera.advance(14.0)
    assert camera.recorder.start(event, at(20.0)) == clip  # finished: its status, no new clip
    assert camera.recorder.info(event) == clip and camera.ring.stats().subscribers == 0


def test_the_camera_stopping_or_stalling_ends_clips_as_partial(packets, store) -> None:
    camera = Camera(packets, store, ClipPolicy(pre_s=2, post_s=2, stall_s=10))
    camera.advance(10.0)
    stopped, stalled = event_id(), event_id()
    camera.recorder.start(stopped, at(10.0))
    camera.advance(12.0)
    camera.ring.close()  # the camera stops
    [clip] = camera.advance(12.0)
    assert clip.status == "partial" and clip.reason == "the camera stopped" and probe(store.path(stopped)).frames > 0

    camera = Camera(packets, store, ClipPolicy(pre_s=2, post_s=2, stall_s=10))
    camera.advance(10.0)
    camera.recorder.start(stalled, at(10.0))
    camera.recorder.end(stalled, at(11.0))
    camera.packets = packets[:121]  # nothing after 12 s
    assert camera.advance(22.9) == []  # waits stall_s past the planned end (13 s)
    [clip] = camera.advance(23.1)
    assert clip.status == "partial" and "sent nothing for 10 s" in clip.reason


def test_a_camera_records_at_most_max_open_clips_at_once(packets, store) -> None:
    camera = Camera(packets, store, ClipPolicy(pre_s=2, post_s=1, max_open=1))
    camera.advance(10.0)
    first, second = event_id(), event_id()
    camera.recorder.start(first, at(10.0))
    camera.recorder.start(second, at(10.5))
    [refused] = camera.advance(11.0)
    assert refused.event_id == second and refused.status == "failed" and "1 clips at once" in refused.reason
    assert store.get(first).status == "recording" and camera.ring.stats().subscribers == 1


def test_stopping_the_clip_writer_ends_recording_clips_as_partial(packets, store) -> None:
    ring = PacketRing("gate")
    worker = ClipWorker()
    recorder = ClipRecorder("gate", ring, store, ClipPolicy(pre_s=2), wake=worker.wake)
    worker.add(recorder)
    worker.start()
    base = time.monotonic() - packets[99].received_at  # the last 10 s of a camera, up to now
    recent = [replace(packet, received_at=packet.received_at + base) for packet in packets[:100]]
    for packet in recent:
        ring.put(packet)
    event = event_id()
    recorder.start(event, recent[-1].received_at)
    wait_until(lambda: (clip := store.get(event)) and clip.packets >= 21, what="the pre-roll written")
    assert worker.alive and worker.stop(timeout=PATIENCE_S) and not worker.alive
    clip = store.get(event)
    assert clip.status == "partial" and clip.reason == "the gateway stopped"
    assert probe(store.path(event)).frames == clip.packets


def test_a_codec_mp4_cannot_carry_fails_the_clip_naming_it(store) -> None:
    avi = read_packets(VTEST_AVI, ring_offset=OFFSET, limit=60)
    assert avi[0].stream.codec == "msmpeg4v3" and not avi[0].stream.remuxable
    with pytest.raises(ClipFormatError, match="msmpeg4v3"):
        Mp4ClipWriter(store.folder / "x.mp4", avi[0].stream)
    camera = Camera(avi, store, ClipPolicy(pre_s=1, post_s=1))
    camera.advance(2.0)
    event = event_id()
    camera.recorder.start(event, at(2.0))
    [clip] = camera.advance(3.0)
    assert clip.status == "failed" and "msmpeg4v3" in clip.reason and clip.size == 0
    assert not store.path(event).exists()


def test_a_corrupt_or_repeated_packet_is_skipped_and_the_clip_goes_on(packets, tmp_path: Path) -> None:
    clip = list(packets[:60])
    clip[39] = EncodedPacket(b"\x00\x00\xff\xff" + clip[39].data[4:40], clip[39].pts, clip[39].dts, False,
                             clip[39].received_at, clip[39].stream)  # a NAL length past the end
    clip.insert(45, clip[44])  # the same packet twice: its timestamp does not move on
    writer = write_clip(tmp_path / "damaged.mp4", clip)
    assert writer.packets == 59 and writer.skipped == 2  # 60 packets, one garbled; the repeat skipped
    found = probe(tmp_path / "damaged.mp4")
    assert found.frames == 59 and found.first_key


# --------------------------------------------------------------------------- stream forms


def test_a_damaged_codec_configuration_is_refused_by_name(packets, tmp_path: Path) -> None:
    """(NAL framing itself is gateway.video.h26x's, tested in tests/test_gb28181_media.py.)"""
    avcc = packets[0].stream.extradata
    damaged = replace(packets[0].stream, extradata=avcc[:12])
    with pytest.raises(ClipFormatError, match="unreadable codec configuration"):
        Mp4ClipWriter(tmp_path / "x.mp4", damaged)



def strip_parameter_sets(packet: EncodedPacket) -> EncodedPacket:
    """The packet as a camera that sends SPS/PPS only in the SDP would (types 7, 8 removed)."""
    units = re.split(b"\x00\x00\x00\x01|\x00\x00\x01", packet.data)
    kept = [unit for unit in units if unit and unit[0] & 0x1F not in (7, 8)]
    return EncodedPacket(b"".join(START_CODE + unit for unit in kept), packet.pts, packet.dts, packet.keyframe,
                         packet.received_at, packet.stream)


@pytest.fixture(scope="module")
def annexb_ts(tmp_path_factory) -> Path:
    """The sample as an MPEG-TS: Annex B packets and Annex B parameter sets, like RTSP gives."""
    return transcode(VTEST_H264, tmp_path_factory.mktemp("annexb") / "vtest.ts", "-frames:v", "100",
                     "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "mpegts")


@pytest.fixture(scope="module")
def hevc_sources(tmp_path_factory) -> tuple[Path, Path]:
    """6 s of the sample as H.265 (keyframe every 2 s): length-prefixed MP4 and Annex B TS."""
    folder = tmp_path_factory.mktemp("hevc")
    x265 = "log-level=none:keyint=20:min-keyint=20:scenecut=0:open-gop=0:bframes=0"
    mp4 = transcode(VTEST_H264, folder / "vtest_hevc.mp4", "-frames:v", "60", "-c:v", "libx265", "-preset",
                    "ultrafast", "-x265-params", x265)
    ts = transcode(mp4, folder / "vtest_hevc.ts", "-c:v", "copy", "-bsf:v", "hevc_mp4toannexb", "-f", "mpegts")
    return mp4, ts


def test_annexb_packets_with_and_without_in_band_parameter_sets(annexb_ts: Path, tmp_path: Path) -> None:
    annexb = read_packets(annexb_ts)
    assert annexb[0].data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) and annexb[0].stream.extradata
    write_clip(tmp_path / "annexb.mp4", annexb)
    found = probe(tmp_path / "annexb.mp4")
    assert (found.codec, found.frames, found.first_key) == ("h264", 100, True)
    sdp_only = [strip_parameter_sets(packet) for packet in annexb]
    assert b"\x00\x00\x00\x01\x67" not in sdp_only[0].data
    write_clip(tmp_path / "sdp_only.mp4", sdp_only)
    assert probe(tmp_path / "sdp_only.mp4").frames == 100  # the configuration was put before the keyframe
    bare = StreamInfo("h264", 768, 576, annexb[0].stream.time_base, None, 25.0)
    with pytest.raises(ClipFormatError, match="without parameter sets"):
        write_clip(tmp_path / "none.mp4", [EncodedPacket(p.data, p.pts, p.dts, p.keyframe, p.received_at, bare)
                                           for p in sdp_only[:5]])


def test_hevc_clips_from_length_prefixed_and_annexb_packets(hevc_sources, tmp_path: Path) -> None:
    for source in hevc_sources:
        hevc = read_packets(source)
        assert hevc[0].stream.codec == "hevc" and hevc[0].stream.remuxable
        write_clip(tmp_path / f"{source.suffix[1:]}.mp4", hevc[20:])  # from the second keyframe
        found = probe(tmp_path / f"{source.suffix[1:]}.mp4")
        assert (found.codec, found.frames, found.first_key) == ("hevc", 40, True)
        assert found.frame_times[0] == 0.0 and found.duration == pytest.approx(4.0, abs=0.05)


# --------------------------------------------------------------------------- a file while and after writing


def test_a_clip_plays_while_it_is_being_written(packets, tmp_path: Path) -> None:
    path = tmp_path / "growing.mp4"
    with Mp4ClipWriter(path, packets[0].stream) as writer:
        for packet in packets[:41]:  # two GOPs and the keyframe that closes the second
            writer.write(packet)
        assert probe(path).frames == 40  # both whole GOPs are on disk already
    assert probe(path).frames == 41


CRASHING_WRITER = """
import os, sys, uuid
sys.path[:0] = [{repo!r}, {tests!r}]
from clip_support import VTEST_H264, read_packets
from gateway.evidence.mp4 import Mp4ClipWriter
from gateway.evidence.store import ClipInfo, ClipStore
store = ClipStore({data!r})
info = ClipInfo({event!r}, "gate", "recording", event_ts=1.0)
store.begin(info)
store.save(info)
writer = Mp4ClipWriter(store.path(info.event_id), read_packets(VTEST_H264, limit=1)[0].stream)
for packet in read_packets(VTEST_H264, limit=61, info=writer.stream):
    writer.write(packet)
print("WRITTEN", flush=True)
os._exit(1)  # killed mid-clip: no trailer, no record update
"""


def test_a_gateway_killed_mid_clip_leaves_a_playable_partial_clip(tmp_path: Path) -> None:
    event = event_id()
    script = CRASHING_WRITER.format(repo=str(Path(__file__).parent.parent), tests=str(Path(__file__).parent),
                                    data=str(tmp_path), event=event)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=PATIENCE_S * 4)
    assert "WRITTEN" in result.stdout and result.returncode == 1, result.stderr
    found = probe(tmp_path / "clips" / f"{event}.mp4")
    assert found.frames == 60 and found.first_key  # three whole GOPs survived the crash
    clip = ClipStore(tmp_path).get(event)  # start-up: it was recording, now it is partial
    assert clip.status == "partial" and clip.reason == "the gateway stopped while recording" and clip.size > 0


# --------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as browser:
        yield browser


def test_chromium_plays_a_clip(packets, store, chromium) -> None:
    camera = Camera(packets, store, ClipPolicy(pre_s=4, post_s=4))
    camera.advance(20.0)
    event = event_id()
    camera.recorder.start(event, at(20.0))
    camera.advance(22.0)
    camera.recorder.end(event, at(22.0))
    [clip] = camera.advance(30.0)
    assert clip.status == "ready"
    with serve_folder(store.folder) as base:
        page = chromium.new_page()
        try:
            page.goto(f"{base}/")  # same origin as the video
            assert page.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.4d401f\"')") \
                == "probably"
            page.set_content(f'<video id="clip" muted autoplay playsinline src="{base}/{event}.mp4"></video>')
            page.wait_for_function("document.getElementById('clip').readyState >= 2", timeout=PATIENCE_S * 1000)
            page.wait_for_function("document.getElementById('clip').currentTime > 1.0", timeout=PATIENCE_S * 1000)
            state = page.evaluate("(() => { const v = document.getElementById('clip'); return "
                                  "{error: v.error && v.error.code, width: v.videoWidth, height: v.videoHeight}; })()")
        finally:
            page.close()
    assert state == {"error": None, "width": 768, "height": 576}
