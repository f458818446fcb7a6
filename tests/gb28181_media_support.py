"""Helpers for the GB/T 28181 live video tests: real packets, a PS reader, the GStreamer receiver.

- `read_packets` demuxes a real file with PyAV into `EncodedPacket`s, as the camera reader
  hands them over (MP4: length-prefixed access units and an avcC/hvcC record).
- `hevc_clip` makes a short H.265 MP4 from vtest with ffmpeg (libx265), cached.
- `parse_ps` reads a PS frame back into its parts, written from H.222.0 independently of the
  muxer, so the tests check the muxer against the standard rather than against itself.
- `GstReceiver` runs tests/gst_ps_receiver.py and follows its output lines.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import pytest

from gateway.outputs.gb28181.media import LiveStream
from gateway.video.packets import EncodedPacket, StreamInfo
from waiting import PATIENCE_S, wait_until

TESTS = Path(__file__).resolve().parent
VTEST_H264 = TESTS.parent.parent / "shared" / "data" / "vtest_h264.mp4"
VTEST_AVI = VTEST_H264.with_name("vtest.avi")
RECEIVER_SCRIPT = TESTS / "gst_ps_receiver.py"
SYSTEM_PYTHON = "/usr/bin/python3"
CACHE_DIR = Path(tempfile.gettempdir()) / "gateway-test-gb28181"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test asset missing: {path} (CI clones the project with ../shared beside it)")
    return path


def read_packets(path: Path, limit: int | None = None) -> list[EncodedPacket]:
    """The video packets of `path` (empty flush packets left out), sharing one StreamInfo."""
    with av.open(str(require(path))) as container:
        video = container.streams.video[0]
        context = video.codec_context
        info = StreamInfo(codec=context.name, width=context.width, height=context.height,
                          time_base=Fraction(video.time_base), extradata=bytes(context.extradata or b""),
                          fps=float(video.average_rate) if video.average_rate else None)
        packets = []
        for packet in container.demux(video):
            if packet.size == 0:
                continue
            packets.append(EncodedPacket(bytes(packet), packet.pts, packet.dts, packet.is_keyframe,
                                         time.monotonic(), info))
            if limit is not None and len(packets) >= limit:
                break
    return packets


def hevc_clip(frames: int = 60) -> Path:
    """vtest as H.265 in MP4 (10 fps, keyframe every 2 s, no B-frames), made once and cached."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg not found: install the Debian package 'ffmpeg'")
    source = require(VTEST_H264)
    key = hashlib.sha1(f"{source.stat().st_size}|{source.stat().st_mtime_ns}|{frames}".encode()).hexdigest()[:10]
    target = CACHE_DIR / f"vtest-hevc-{frames}f-{key}.mp4"
    if target.exists():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part.mp4")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-an",
                    "-frames:v", str(frames), "-c:v", "libx265", "-preset", "ultrafast",
                    "-x265-params", "keyint=20:min-keyint=20:bframes=0:scenecut=0:log-level=error",
                    str(partial)], check=True, timeout=120)
    partial.replace(target)
    return target


# --------------------------------------------------------------------------- reading PS back


@dataclass
class PsFrame:
    """One PS frame, taken apart."""

    scr: int = -1
    mux_rate: int = -1
    system_header: bytes | None = None
    psm: bytes | None = None
    pes: list[tuple[int | None, int | None, bytes]] = field(default_factory=list)
    """(pts, dts, payload) of each PES packet, in order."""
    aligned: list[bool] = field(default_factory=list)
    """data_alignment_indicator of each PES packet."""

    @property
    def payload(self) -> bytes:
        return b"".join(data for _, _, data in self.pes)


def read_timestamp(data: bytes) -> int:
    assert data[0] & 0x01 and data[2] & 0x01 and data[4] & 0x01, "PTS/DTS marker bits"
    return ((data[0] >> 1) & 0x07) << 30 | data[1] << 22 | (data[2] >> 1) << 15 | data[3] << 7 | data[4] >> 1


def parse_ps(frame: bytes) -> PsFrame:
    """Take one PS frame apart (H.222.0 tables 2-38 to 2-41 and 2-21); asserts the fixed bits."""
    result = PsFrame()
    offset = 0
    while offset < len(frame):
        assert frame[offset:offset + 3] == b"\x00\x00\x01", f"no start code at {offset}"
        code = frame[offset + 3]
        if code == 0xBA:
            head = frame[offset + 4:offset + 14]
            assert head[0] >> 6 == 0b01, "MPEG-2 pack header"
            assert head[0] & 0x04 and head[2] & 0x04 and head[4] & 0x04 and head[5] & 0x01, "SCR markers"
            result.scr = ((head[0] >> 3) & 0x07) << 30 | (head[0] & 0x03) << 28 | head[1] << 20 | \
                (head[2] >> 3) << 15 | (head[2] & 0x03) << 13 | head[3] << 5 | head[4] >> 3
            assert head[8] & 0x03 == 0x03, "mux rate markers"
            result.mux_rate = head[6] << 14 | head[7] << 6 | head[8] >> 2
            offset += 14 + (head[9] & 0x07)
            continue
        length = int.from_bytes(frame[offset + 4:offset + 6], "big")
        packet = frame[offset:offset + 6 + length]
        assert len(packet) == 6 + length, "packet runs past the frame"
        if code == 0xBB:
            result.system_header = packet
        elif code == 0xBC:
            result.psm = packet
        elif code == 0xE0:
            assert packet[6] >> 6 == 0b10, "MPEG-2 PES header"
            flags, header_length = packet[7] >> 6, packet[8]
            pts = read_timestamp(packet[9:14]) if flags & 0b10 else None
            dts = read_timestamp(packet[14:19]) if flags == 0b11 else None
            result.pes.append((pts, dts, packet[9 + header_length:]))
            result.aligned.append(bool(packet[6] & 0x04))
        else:
            raise AssertionError(f"unexpected stream id 0x{code:02x}")
        offset += 6 + length
    return result


# --------------------------------------------------------------------------- GStreamer receiver


class GstReceiver:
    """tests/gst_ps_receiver.py as a process; its output lines are followed by a thread."""

    def __init__(self, transport: str, *, port: int = 0, codec: str = "h264", socket_fd: int | None = None):
        command = [SYSTEM_PYTHON, str(RECEIVER_SCRIPT), "--transport", transport, "--port", str(port),
                   "--codec", codec, *(["--socket-fd", str(socket_fd)] if socket_fd is not None else [])]
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads would fill and block it
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                        pass_fds=(socket_fd,) if socket_fd is not None else ())
        self.lines: list[str] = []
        self.port = 0
        self.frames = 0
        self.final: int | None = None
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._reader.start()
        wait_until(lambda: self.port or self.process.poll() is not None, what="the receiver's READY line")
        if not self.port:
            self._fail("did not start")

    def _follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            words = line.split()
            self.lines.append(line.strip())
            if words[:1] == ["READY"]:
                self.port = int(words[1])
            elif words[:1] == ["FRAMES"]:
                self.frames = int(words[1])
            elif words[:1] == ["FINAL"]:
                self.frames = self.final = int(words[1])

    @property
    def synced(self) -> bool:
        return "SYNCED" in self.lines

    def wait_frames(self, count: int, timeout: float = PATIENCE_S) -> None:
        try:
            wait_until(lambda: self.frames >= count or self.process.poll() is not None, timeout,
                       what=f"{count} decoded frames")
        except AssertionError as error:
            self._fail(f"decoded {self.frames} frames, not {count}: {error}")
        if self.frames < count:
            self._fail(f"ended with {self.frames} decoded frames, expected at least {count}")

    def finish(self) -> int:
        """Drain and stop the receiver (SIGTERM: EOS first); its final decoded frame count."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(PATIENCE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self._fail("did not stop on SIGTERM")
        self._reader.join(PATIENCE_S)
        if self.final is None:
            self._fail("printed no FINAL line")
        assert self.final is not None
        return self.final

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(PATIENCE_S)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def _fail(self, what: str) -> None:
        self.kill()
        error = self.stderr()
        pytest.fail(f"GStreamer receiver {what}: stdout {self.lines[-5:]}, stderr {error[-2000:]}")


def feed_in_real_time(stream: LiveStream, packets: list[EncodedPacket], seconds: float,
                      started: float | None = None) -> int:
    """Feed `packets` at the pace of their timestamps, as a camera would, for up to `seconds`
    of video; the number fed. (Pacing emulates the camera; nothing waits on the receiver.)"""
    first = packets[0].t or 0.0
    began = time.monotonic() if started is None else started
    fed = 0
    for packet in packets:
        offset = (packet.t or 0.0) - first
        if offset >= seconds:
            break
        delay = began + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stream.feed(packet)
        fed += 1
    return fed


def drain(sock: socket.socket) -> int:
    """Read and discard the datagrams waiting on `sock`; how many there were."""
    count = 0
    while select.select([sock], [], [], 0)[0]:
        sock.recv(65536)
        count += 1
    return count
