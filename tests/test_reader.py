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

from gateway.video.decode import DecodedFrame
from gateway.backoff import Backoff
from gateway.video.reader import CameraReader, FrameSlot, KeyframePolicy

pytest_plugins = ["rtsp_fixtures"]

PASSWORD = "Sup3rS3cret"
FAST = dict(open_timeout_s=3, read_timeout_s=3, stall_s=3, backoff_initial_s=0.3, backoff_max_s=1.5)


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


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
        reader.stop(timeout=1)


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
    frame = slow.wait_for_frame(0, timeout=5)
    assert frame is not None and frame.image.shape == (576, 768, 3) and frame.image.dtype == np.uint8
    assert time.monotonic() - frame.received_at < 1.5
    nxt = slow.wait_for_frame(frame.seq, timeout=3)
    assert nxt is not None and nxt.seq > frame.seq and 0.5 < nxt.t - frame.t < 1.6
    time.sleep(3)
    slow_health, fast_health = slow.health(), fast.health()
    assert slow_health.state == "streaming" and slow_health.keyframes_only  # 1 fps = keyframe rate
    assert slow_health.keyframe_interval_s == pytest.approx(1.0, abs=0.15)
    assert 0.6 < slow_health.decoded_fps < 1.5
    assert not fast_health.keyframes_only  # 5 fps is more than the keyframes give: full decoding
    decoded = fast_health.frames_decoded
    time.sleep(1)
    assert 7 <= fast.health().frames_decoded - decoded <= 13
    assert slow_health.frames_analysed == 2 and slow_health.last_frame_age_s < 1.5
    assert slow_health.url == f"rtsp://admin:***@127.0.0.1:{rtsp_server.port}/cam1"
    assert PASSWORD not in caplog.text and "camera slow:" in caplog.text


def test_forced_modes_and_udp(rtsp_server, readers) -> None:
    keyframes = readers("kf", rtsp_server.url("/cam3"), decode_mode="keyframes", analysis_fps=10)
    full = readers("all", rtsp_server.url("/cam3"), decode_mode="all", analysis_fps=0.2)
    udp = readers("udp", rtsp_server.url("/cam1"), transport="udp", analysis_fps=2)
    assert wait_until(lambda: keyframes.health().frames_decoded >= 3 and full.health().frames_decoded >= 25
                      and udp.health().frames_decoded >= 12, 6)
    assert keyframes.health().keyframes_only and not full.health().keyframes_only
    assert full.health().frames_decoded > 3 * keyframes.health().frames_decoded
    assert udp.wait_for_frame(0, timeout=1) is not None


def test_wrong_path_and_refused_connection_back_off_without_harming_others(
        rtsp_server, readers, caplog) -> None:
    caplog.set_level(logging.WARNING)
    good = readers("good", rtsp_server.url("/cam1"), analysis_fps=1)
    assert good.wait_for_frame(0, timeout=5) is not None
    wrong = readers("wrong", rtsp_server.url("/nope", f"admin:{PASSWORD}"), analysis_fps=1)
    refused = readers("refused", f"rtsp://admin:{PASSWORD}@127.0.0.1:9/x", analysis_fps=1)
    assert wait_until(lambda: wrong.health().reconnects >= 2 and refused.health().reconnects >= 2, 5)
    for reader in (wrong, refused):
        health = reader.health()
        assert health.state in ("backoff", "connecting") and health.frames_decoded == 0
    assert "404" in wrong.health().last_error and "refused" in refused.health().last_error
    assert wait_until(lambda: good.health().frames_decoded >= 3, 3)  # unharmed, still 1 fps
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
    assert wait_until(lambda: all(r.health().state == "streaming" for r in (a, b, steady)), 5)

    flaky.kill()
    assert wait_until(lambda: a.health().state == "backoff" and b.health().state == "backoff", 4)
    before = steady.health().frames_decoded
    time.sleep(2)  # outage: the other server's camera keeps going at full rate
    assert steady.health().frames_decoded - before >= 15
    assert a.health().last_error and b.health().last_error

    flaky.restart()
    assert wait_until(lambda: a.health().state == "streaming" and b.health().state == "streaming",
                      FAST["backoff_max_s"] + 4)
    count = a.health().frames_decoded
    assert wait_until(lambda: a.health().frames_decoded > count + 5, 3)
    assert a.health().reconnects >= 1 and a.health().last_error is None


def test_stall_watchdog_reconnects_a_hung_stream_and_stop_is_prompt(
        rtsp_server_factory, vtest_h264: Path, readers, caplog) -> None:
    caplog.set_level(logging.WARNING)
    server = rtsp_server_factory({"/s": vtest_h264})
    reader = readers("hung", server.url("/s"), analysis_fps=5, stall_s=1.0, read_timeout_s=10,
                     open_timeout_s=10)
    assert wait_until(lambda: reader.health().state == "streaming", 5)
    server.pause()  # TCP stays up, nothing flows
    try:
        assert wait_until(lambda: reader.health().reconnects >= 1 or reader.health().state == "backoff", 4)
        assert "no data for 1 s" in caplog.text or "stalled" in caplog.text
        # Now the reader sits in open(): the server accepts TCP but never answers.
        assert wait_until(lambda: reader.health().state == "connecting", 4)
        began = time.monotonic()
        reader.stop(timeout=0.5)
        assert time.monotonic() - began < 1.0
        assert reader.health().state == "stopped"
    finally:
        server.resume()


def test_end_of_stream_counts_as_a_disconnect(
        rtsp_server_factory, vtest_h264_short: Path, readers, caplog) -> None:
    caplog.set_level(logging.WARNING)
    server = rtsp_server_factory({"/short": vtest_h264_short}, loop=False)  # 3 s, then EOS
    reader = readers("short", server.url("/short"), analysis_fps=5)
    assert wait_until(lambda: reader.health().reconnects >= 1, 8)
    assert "stream ended" in caplog.text
    decoded = reader.health().frames_decoded
    assert wait_until(lambda: reader.health().frames_decoded > decoded + 5, 4)  # playing again


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
    assert wait_until(lambda: reader.health().frames_decoded >= 25, 6)
    assert reader.health().state == "streaming" and reader.latest() is not None
