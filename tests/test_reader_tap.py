"""The reader's packet tap against a real RTSP server (GStreamer rtsp-server, Annex B H.264).

Covers: every packet reaches the sink in keyframe-only and full decoding alike, described by
one StreamInfo per connection; a failing sink costs a log line, never the camera; a file
played in real time delivers each packet no earlier than its presentation time; and the
whole path — RTSP camera, reader, ring, clip writer thread, store — makes a valid H.264 MP4,
cut as partial when the camera reconnects.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from clip_support import VTEST_H264, probe
from gateway.evidence.clips import ClipPolicy, ClipRecorder
from gateway.evidence.store import ClipInfo, ClipStore
from gateway.evidence.worker import ClipWorker
from gateway.video.packets import EncodedPacket, PacketRing

pytest_plugins = ["rtsp_fixtures"]

from test_reader import readers  # noqa: E402, F401 - the fixture: fast-retrying readers, stopped after the test
from waiting import PATIENCE_S, wait_until  # noqa: E402


@pytest.fixture
def clip_writer() -> Iterator[ClipWorker]:
    finished: list[ClipInfo] = []
    worker = ClipWorker(on_finished=finished.append)
    worker.finished = finished  # type: ignore[attr-defined]
    worker.start()
    yield worker
    worker.stop(timeout=PATIENCE_S)


def test_every_packet_reaches_the_sink_whatever_the_decode_mode(rtsp_server, readers) -> None:
    taps: dict[str, list[EncodedPacket]] = {"keyframes": [], "all": []}
    keyframes = readers("kf", rtsp_server.url("/cam1"), decode_mode="keyframes", analysis_fps=1,
                        packet_sink=taps["keyframes"].append)
    full = readers("all", rtsp_server.url("/cam2"), decode_mode="all", analysis_fps=1,
                   packet_sink=taps["all"].append)
    wait_until(lambda: all(sum(p.keyframe for p in tap) >= 4 for tap in taps.values()),
               what="four GOPs through both sinks")
    for mode, tap in taps.items():
        stream = tap[0].stream
        assert (stream.codec, stream.width, stream.height, stream.remuxable) == ("h264", 768, 576, True), mode
        assert stream.time_base == Fraction(1, 90000)
        assert all(p.stream is stream for p in tap)  # one StreamInfo per connection
        assert stream.extradata and stream.extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))  # Annex B
        assert tap[0].data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
        starts = [index for index, packet in enumerate(tap) if packet.keyframe]
        assert all(b - a == 10 for a, b in itertools.pairwise(starts[1:]))  # the server's GOP: all 10 packets
        timed = [p for p in tap if p.dts is not None]
        assert [p.dts for p in timed] == sorted(p.dts for p in timed)
    assert keyframes.health().keyframes_only and not full.health().keyframes_only
    # keyframe-only: the decoder saw the keyframes only, the sink got every packet
    assert keyframes.health().frames_decoded <= sum(p.keyframe for p in taps["keyframes"]) + 1
    assert len(taps["keyframes"]) >= 3 * keyframes.health().frames_decoded


def test_a_failing_sink_is_logged_once_and_the_camera_goes_on(rtsp_server, readers, caplog) -> None:
    caplog.set_level(logging.WARNING)

    def broken_sink(_packet: EncodedPacket) -> None:
        raise RuntimeError("the ring is broken")

    reader = readers("broken", rtsp_server.url("/cam3"), decode_mode="all", analysis_fps=5, packet_sink=broken_sink)
    wait_until(lambda: reader.health().frames_decoded >= 30, what="30 frames despite the sink")
    health = reader.health()
    assert health.state == "streaming" and health.reconnects == 0
    assert reader.packet_sink_errors >= 30
    assert caplog.text.count("the packet sink failed") == 1 and "the ring is broken" in caplog.text


def test_a_real_time_file_delivers_each_packet_at_its_presentation_time(readers, vtest_h264: Path) -> None:
    """An MP4 (timestamps) and a raw Annex B file (none: played at the nominal rate the demuxer
    declares, 25 fps, as its frames always were)."""
    taps: dict[str, list[EncodedPacket]] = {"mp4": [], "raw": []}
    began = time.monotonic()  # before the streams open: their time 0 is later than this
    for name, source in (("mp4", VTEST_H264), ("raw", vtest_h264)):
        readers(name, str(source), realtime=True, decode_mode="keyframes", analysis_fps=0.5,
                packet_sink=taps[name].append)
    wait_until(lambda: all(len(tap) >= 25 for tap in taps.values()), what="25 packets of each file")
    for index, packet in enumerate(taps["mp4"][:25]):
        presentation = float(packet.dts * packet.stream.time_base)
        assert packet.received_at - began >= presentation - 1e-3, index  # never early, not a GOP at once
    for index, packet in enumerate(taps["raw"][:25]):
        assert packet.dts is None and packet.received_at - began >= index / 25 - 1e-3, index


def test_a_clip_from_an_rtsp_camera_is_a_valid_h264_mp4(rtsp_server, readers, clip_writer, tmp_path: Path) -> None:
    ring = PacketRing("cam", keep_s=1.0)
    store = ClipStore(tmp_path)
    recorder = ClipRecorder("cam", ring, store, ClipPolicy(pre_s=2, post_s=1, max_s=20), wake=clip_writer.wake)
    clip_writer.add(recorder)
    readers("cam", rtsp_server.url("/cam1"), decode_mode="keyframes", analysis_fps=1, packet_sink=ring.put)
    wait_until(lambda: ring.stats().seconds >= 3.0, what="3 s of packets in the ring")
    event = str(uuid.uuid4())
    started = time.monotonic()
    assert recorder.start(event, started).status == "recording"
    recorder.end(event, started)
    # the store marks the clip finished first, then the writer tells its listener: wait for the listener
    wait_until(lambda: clip_writer.finished, what="the clip writer reporting the clip finished")
    clip = store.get(event)
    assert clip.status == "ready" and clip.codec == "h264" and clip_writer.finished == [clip]
    found = probe(store.path(event))
    assert (found.codec, found.width, found.height, found.first_key) == ("h264", 768, 576, True)
    # from the keyframe at or before start - 2 s (keyframe every 1 s) to start + 1 s, at 10 fps
    assert 30 <= found.frames <= 41 and found.frames == clip.packets
    assert clip.to_ts - clip.from_ts == pytest.approx((found.frames - 1) / 10, abs=0.5)


def test_a_camera_reconnecting_mid_clip_leaves_a_partial_clip(
        rtsp_server_factory, vtest_h264: Path, readers, clip_writer, tmp_path: Path) -> None:
    server = rtsp_server_factory({"/cam": vtest_h264})
    ring = PacketRing("cam")
    store = ClipStore(tmp_path)
    recorder = ClipRecorder("cam", ring, store, ClipPolicy(pre_s=1, post_s=1, max_s=60), wake=clip_writer.wake)
    clip_writer.add(recorder)
    reader = readers("cam", server.url("/cam"), decode_mode="keyframes", analysis_fps=1, packet_sink=ring.put)
    wait_until(lambda: ring.stats().seconds >= 1.0, what="packets in the ring")
    event = str(uuid.uuid4())
    recorder.start(event, time.monotonic())
    wait_until(lambda: (c := store.get(event)) and c.packets >= 20, what="two GOPs written")
    server.restart()  # the camera drops and comes back: a new connection, a new stream
    clip = wait_until(lambda: (c := store.get(event)) and c.finished and c, what="the clip cut at the reconnect")
    assert clip.status == "partial" and "reconnected" in clip.reason
    assert reader.health().reconnects >= 1
    found = probe(store.path(event))
    assert found.first_key and found.frames == clip.packets >= 20
