"""Shared parts of the packet ring and clip tests: real encoded packets, ffprobe, a browser.

* Packets: read from a real video file with PyAV (`read_packets`), each stamped with a ring
  time (`received_at`) of its presentation time plus an offset: what a camera that sends in
  real time would have delivered, without waiting for it.
* `probe`: ffprobe (the Debian binary) as a subprocess, reading every frame of a clip.
* `serve_folder`: a tiny HTTP server on 127.0.0.1 with byte ranges (as browsers ask for
  video), and `launch_chromium`: Debian's Chromium through Playwright.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.video.decode import open_video, stream_info
from gateway.video.packets import EncodedPacket, StreamInfo

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
VTEST_H264 = SHARED / "vtest_h264.mp4"
"""768x576 H.264, 10 fps, keyframe every 2 s, no B frames, 795 frames, length-prefixed (avcC)."""
VTEST_AVI = SHARED / "vtest.avi"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required"]


def read_packets(path: Path, ring_offset: float = 1000.0, limit: int | None = None,
                 info: StreamInfo | None = None) -> list[EncodedPacket]:
    """The video packets of `path` in file order; received_at = offset + presentation time."""
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        info = info or stream_info(container)
        packets: list[EncodedPacket] = []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            ticks = packet.pts if packet.pts is not None else packet.dts
            at = ring_offset + float((ticks or 0) * stream.time_base)
            packets.append(EncodedPacket(bytes(packet), packet.pts, packet.dts, packet.is_keyframe, at, info))
            if limit is not None and len(packets) >= limit:
                break
        return packets
    finally:
        container.close()


def restamped(packets: list[EncodedPacket], stream: StreamInfo, shift: float) -> list[EncodedPacket]:
    """The same packets as another connection would deliver them: a new StreamInfo object,
    timestamps from 0 again, ring times `shift` seconds later."""
    return [replace(packet, stream=stream, received_at=packet.received_at + shift) for packet in packets]


def transcode(source: Path, target: Path, *args: str) -> Path:
    """`ffmpeg -i source <args> target`, once per test session (cached by the caller's tmp dir)."""
    if not target.exists():
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), *args, str(target)],
                       check=True, timeout=120)
    return target


@dataclass(frozen=True)
class Probe:
    codec: str
    width: int
    height: int
    duration: float
    frames: int
    first_key: bool
    first_pict_type: str
    frame_times: list[float]


def probe(path: Path) -> Probe:
    """ffprobe every frame of `path` (decoding them: a frame counts only if it decodes)."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height:format=duration:frame=key_frame,pict_type,pts_time,best_effort_timestamp_time",
         "-of", "json", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ffprobe cannot read {path}: {result.stderr}"
    data = json.loads(result.stdout)
    frames = data.get("frames", [])
    assert frames, f"ffprobe decoded no frame of {path}: {result.stderr}"
    stream = data["streams"][0]
    return Probe(
        codec=stream["codec_name"], width=stream["width"], height=stream["height"],
        duration=float(data["format"].get("duration", "nan")), frames=len(frames),
        first_key=frames[0].get("key_frame") == 1, first_pict_type=frames[0].get("pict_type", "?"),
        frame_times=[float(frame.get("pts_time", frame.get("best_effort_timestamp_time", "nan"))) for frame in frames],
    )


class _QuietRangeHandler(SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=a-b` (206), as a browser's media player asks for them."""

    def log_message(self, *_args: object) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not header.startswith("bytes=") or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        first_text, _, last_text = header[len("bytes="):].partition("-")
        first = int(first_text or 0)
        last = min(int(last_text), size - 1) if last_text else size - 1
        handle = open(path, "rb")  # read by copyfile, closed by the base class
        handle.seek(first)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        return _Limited(handle, last - first + 1)


class _Limited:
    """A file object that ends after `remaining` bytes (the end of the requested range)."""

    def __init__(self, handle, remaining: int):  # type: ignore[no-untyped-def]
        self.handle, self.remaining = handle, remaining

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        data = self.handle.read(size)
        self.remaining -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """`folder` over HTTP on a free 127.0.0.1 port; yields the base URL."""

    class Handler(_QuietRangeHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(folder), **kwargs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="clip-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def launch_chromium() -> Iterator:
    """Headless Debian Chromium through Playwright (as tests/web_support.py launches it)."""
    import playwright.sync_api as playwright_api  # Debian's browser, never `playwright install`

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing (apt-get install chromium; .ci/setup installs it)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
