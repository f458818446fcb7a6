"""Camera reader against a real RTSP server (GStreamer rtsp-server under /usr/bin/python3).

Covers: frames and health, keyframe-only vs full decoding chosen automatically, wrong path and
refused connection (clear error, backoff, no crash), server killed and restarted mid-run (each
reader recovers while a camera on another server keeps counting), stall watchdog, end of
stream as a disconnect, a prompt stop() while the network hangs, and no credentials in logs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.backoff import Backoff
from gateway.video.decode import DecodedFrame
from gateway.video.reader import CameraReader, FrameSlot, KeyframePolicy

pytest_plugins = ["rtsp_fixtures"]

from waiting import PATIENCE_S, wait_until  # noqa: E402

PASSWORD = "Sup3rS3cret"
FAST = dict(open_timeout_s=3, read_timeout_s=3, stall_s=3, backoff_initial_s=0.3, backoff_max_s=1.5)


@pytest.fixture
def readers() -> Iterator[Callable[..., CameraReader]]:
    made: list[CameraReader] = []

    def make(camera_id: str, url: str, **kwargs) -> CameraReader:
        reader = CameraReader(camera_id, url, **(FAST | kwargs))
        reader.start()
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.stop(timeout=PATIENCE_S)


# --------------------------------------------------------------------------- pure parts


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(1, 8, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        base = min(8, 2 ** attempt)
        assert 0.75 * base <= delay <= base
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jittered, not in lockstep at the cap
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_keyframe_policy_auto_learns_and_switches() -> None:
    policy = KeyframePolicy("auto", analysis_fps=1)
    assert policy.keyframes_only  # unknown yet: start cheap
    for t in (0, 1, 2, 3):
        policy.observe(t, keyframe=True)
    assert policy.keyframe_interval == 1 and policy.keyframes_only
    for t in (7, 11, 15):  # the camera now sends a keyframe every 4 s: too few for 1 fps
        policy.observe(t, keyframe=True)
    assert not policy.keyframes_only
    assert KeyframePolicy("all", 0.1).keyframes_only is False
    assert KeyframePolicy("keyframes", 25).keyframes_only is True
    broken = KeyframePolicy("auto", 0.5)
    broken.keyframe_decoding_failed()
    assert not broken.keyframes_only


class CountingFrame:
    """Stands in for a PyAV frame: counts BGR conversions."""

    conversions = 0
    width, height = 4, 2

    def to_ndarray(self, format: str) -> np.ndarray:
        CountingFrame.conversions += 1
        return np.zeros((2, 4, 3), np.uint8)


def test_slot_keeps_only_the_latest_and_converts_lazily_once() -> None:
    slot, stopped = FrameSlot(), threading.Event()
    CountingFrame.conversions = 0
    for index in range(50):
        slot.put(DecodedFrame(index, index / 10, False, CountingFrame()), time.monotonic())  # type: ignore[arg-type]
    assert CountingFrame.conversions == 0  # nobody asked: nothing converted
    first, again = slot.get(), slot.get()
    assert first is again and first.seq == 50 and first.t == pytest.approx(4.9)
    assert CountingFrame.conversions == 1
    assert not slot.wait(50, timeout=0.05, stopped=stopped)
    assert slot.handed_out == 1


# --------------------------------------------------------------------------- real RTSP


def test_streams_frames_with_automatic_decode_mode(rtsp_server, readers, caplog) -> None:
    caplog.set_level(logging.INFO)
    slow = readers("slow", rtsp_server.url("/cam1", f"admin:{PASSWORD}"), analysis_fps=1)
    fast = readers("fast", rtsp_server.url("/cam2"), analysis_fps=5)
    frame = slow.wait_for_frame(0, timeout=PATIENCE_S)
    assert frame is not None and frame.image.shape == (576, 768, 3) and frame.image.dtype == np.uint8
    nxt = slow.wait_for_frame(frame.seq, timeout=PATIENCE_S)
    assert nxt is not None and nxt.seq > frame.seq and 0.5 < nxt.t - frame.t < 1.6  # stream time
    wait_until(lambda: slow.health().keyframe_interval_s is not None and slow.health().frames_decoded >= 4,
               what="the slow camera's keyframe interval learnt")
    slow_health = slow.health()
    assert slow_health.state == "streaming" and slow_health.keyframes_only  # 1 fps = keyframe rate
    assert slow_health.keyframe_interval_s == pytest.approx(1.0, abs=0.15)
    assert slow_health.frames_analysed == 2 and slow_health.last_frame_age_s is not None
    # 5 fps is more than the keyframes give: every frame is decoded (10 per second of stream)
    first = fast.wait_for_frame(0, timeout=PATIENCE_S)
    last = wait_until(lambda: (lambda f: f if f.t - first.t >= 5 else None)(fast.latest()),
                      what="5 s of the fast camera's stream")
    assert not fast.health().keyframes_only
    assert last.seq > first.seq
    assert slow_health.url == f"rtsp://admin:***@127.0.0.1:{rtsp_server.port}/cam1"
    assert PASSWORD not in caplog.text and "camera slow:" in caplog.text


def test_forced_modes_and_udp(rtsp_server, readers) -> None:
    keyframes = readers("kf", rtsp_server.url("/cam3"), decode_mode="keyframes", analysis_fps=10)
    full = readers("all", rtsp_server.url("/cam3"), decode_mode="all", analysis_fps=0.2)
    udp = readers("udp", rtsp_server.url("/cam1"), transport="udp", analysis_fps=2)
    wait_until(lambda: keyframes.health().frames_decoded >= 3 and full.health().frames_decoded >= 25
               and udp.health().frames_decoded >= 12, what="frames from all three readers")
    assert keyframes.health().keyframes_only and not full.health().keyframes_only
    assert full.health().frames_decoded > 3 * keyframes.health().frames_decoded
    assert udp.wait_for_frame(0, timeout=PATIENCE_S) is not None


def test_wrong_path_and_refused_connection_back_off_without_harming_others(
        rtsp_server, readers, caplog) -> None:
    caplog.set_level(logging.WARNING)
    good = readers("good", rtsp_server.url("/cam1"), analysis_fps=1)
    assert good.wait_for_frame(0, timeout=PATIENCE_S) is not None
    wrong = readers("wrong", rtsp_server.url("/nope", f"admin:{PASSWORD}"), analysis_fps=1)
    refused = readers("refused", f"rtsp://admin:{PASSWORD}@127.0.0.1:9/x", analysis_fps=1)
    wait_until(lambda: wrong.health().reconnects >= 2 and refused.health().reconnects >= 2,
               what="two reconnects of each broken camera")
    for reader in (wrong, refused):
        health = reader.health()
        assert health.state in ("backoff", "connecting") and health.frames_decoded == 0
    assert "404" in wrong.health().last_error and "refused" in refused.health().last_error
    decoded = good.health().frames_decoded
    wait_until(lambda: good.health().frames_decoded >= decoded + 2, what="the good camera going on")  # unharmed
    assert good.health().state == "streaming" and good.health().reconnects == 0
    assert "camera wrong: rtsp://admin:***@127.0.0.1" in caplog.text
    assert "refused connection" in caplog.text and "retry 2 in" in caplog.text
    assert PASSWORD not in caplog.text


def test_server_killed_and_restarted_each_reader_recovers(
        rtsp_server_factory, vtest_h264: Path, readers) -> None:
    flaky = rtsp_server_factory({"/a": vtest_h264, "/b": vtest_h264})
    steady_server = rtsp_server_factory({"/c": vtest_h264})
    a = readers("a", flaky.url("/a"), analysis_fps=5, decode_mode="all")
    b = readers("b", flaky.url("/b"), analysis_fps=1)
    steady = readers("steady", steady_server.url("/c"), analysis_fps=5, decode_mode="all")
    wait_until(lambda: all(r.health().state == "streaming" for r in (a, b, steady)), what="all streaming")

    flaky.kill()
    wait_until(lambda: a.health().state == "backoff" and b.health().state == "backoff",
               what="both cameras of the killed server in backoff")
    before = steady.health().frames_decoded
    # outage: the other server's camera keeps going (while the two keep failing)
    failures = a.health().reconnects + b.health().reconnects
    wait_until(lambda: steady.health().frames_decoded - before >= 15
               and a.health().reconnects + b.health().reconnects >= failures + 2,
               what="the steady camera decoding through two failed reconnects of the others")
    assert steady.health().state == "streaming" and steady.health().reconnects == 0
    assert a.health().last_error and b.health().last_error

    flaky.restart()
    wait_until(lambda: a.health().state == "streaming" and b.health().state == "streaming",
               what="both cameras streaming again")
    count = a.health().frames_decoded
    wait_until(lambda: a.health().frames_decoded > count + 5, what="frames after the restart")
    assert a.health().reconnects >= 1 and a.health().last_error is None


def test_stall_watchdog_reconnects_a_hung_stream_and_stop_is_prompt(
        rtsp_server_factory, vtest_h264: Path, readers, caplog) -> None:
    caplog.set_level(logging.WARNING)
    server = rtsp_server_factory({"/s": vtest_h264})
    reader = readers("hung", server.url("/s"), analysis_fps=5, stall_s=1.0, read_timeout_s=10,
                     open_timeout_s=10)
    wait_until(lambda: reader.health().state == "streaming", what="streaming")
    server.pause()  # TCP stays up, nothing flows
    try:
        wait_until(lambda: reader.health().reconnects >= 1 or reader.health().state == "backoff",
                   what="the stall noticed")
        assert "no data for 1 s" in caplog.text or "stalled" in caplog.text
        # Now the reader sits in open(): the server accepts TCP but never answers (for 10 s).
        wait_until(lambda: reader.health().state == "connecting", what="the reader back in open()")
        # stop() does not wait out the 10 s open: it hands back control, says so, and the
        # thread ends by itself when the network call returns.
        if not reader.stop(timeout=0.5):
            assert "reader still inside a network call" in caplog.text
        assert reader.health().state == "stopped"
        wait_until(lambda: not reader.alive, what="the reader thread to end after its open timeout")
    finally:
        server.resume()


def test_end_of_stream_counts_as_a_disconnect(
        rtsp_server_factory, vtest_h264_short: Path, readers, caplog) -> None:
    caplog.set_level(logging.WARNING)
    server = rtsp_server_factory({"/short": vtest_h264_short}, loop=False)  # 3 s, then EOS
    reader = readers("short", server.url("/short"), analysis_fps=5)
    wait_until(lambda: reader.health().reconnects >= 1, what="a reconnect after the end of the stream")
    assert "stream ended" in caplog.text
    decoded = reader.health().frames_decoded
    wait_until(lambda: reader.health().frames_decoded > decoded + 5, what="playing again")


def test_damaged_stream_keeps_decoding(rtsp_server_factory, vtest_h264_short: Path, tmp_path: Path,
                                       readers) -> None:
    data = bytearray(vtest_h264_short.read_bytes())
    rng = random.Random(3)
    for offset in range(20_000, len(data) - 200, 9_000):  # scribble over slice data, keep headers
        data[offset:offset + 64] = bytes(rng.randrange(1, 255) for _ in range(64))
    damaged = tmp_path / "damaged.h264"
    damaged.write_bytes(bytes(data))
    server = rtsp_server_factory({"/bad": damaged})
    reader = readers("garbage", server.url("/bad"), analysis_fps=5, decode_mode="all")
    wait_until(lambda: reader.health().frames_decoded >= 25, what="25 frames of the damaged stream")
    assert reader.health().state == "streaming" and reader.latest() is not None
