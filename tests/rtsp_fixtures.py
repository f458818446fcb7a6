"""Pytest fixtures for a real RTSP server: H.264 test clips and GStreamer's rtsp-server.

Use from a test module with `pytest_plugins = ["rtsp_fixtures"]` (tests/ is on sys.path).
The server runs under Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-{base,good,bad,ugly}); the clips are made by the `ffmpeg` command.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from waiting import PATIENCE_S

SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
CACHE_DIR = Path(tempfile.gettempdir()) / "gateway-test-h264"


def transcode_h264(source: Path, fps: float, gop: int, *, frames: int | None = None,
                   preset: str = "veryfast", cache_dir: Path = CACHE_DIR) -> Path:
    """`source` as an Annex-B H.264 file without B frames (keyframe every `gop` frames), cached.

    The cache key covers the source's size and mtime and the encoding parameters, so repeated
    test runs transcode once.
    """
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg not found: install the Debian package 'ffmpeg'")
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{fps}|{gop}|{frames}|{preset}"
                       .encode()).hexdigest()[:12]
    target = cache_dir / f"{source.stem}-{fps:g}fps-g{gop}{f'-{frames}f' if frames else ''}-{preset}-{key}.h264"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-an",
               "-r", f"{fps:g}", *(["-frames:v", str(frames)] if frames else []),
               "-c:v", "libx264", "-preset", preset, "-bf", "0", "-g", str(gop),
               "-keyint_min", str(gop), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
               "-f", "h264", str(partial)]
    subprocess.run(command, check=True, timeout=120)
    partial.replace(target)
    return target


class RtspServer:
    """One rtsp_server.py process on 127.0.0.1; kill/restart keep the port for fault tests.

    mappings: RTSP path -> file, or path -> (file, fps) when a clip has its own frame rate.
    """

    def __init__(self, mappings: dict[str, Path | tuple[Path, float]], fps: float = 10,
                 loop: bool = True):
        self.mappings, self.fps, self.loop = mappings, fps, loop
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = PATIENCE_S) -> RtspServer:
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--fps", f"{self.fps:g}",
                   *([] if self.loop else ["--no-loop"]),
                   *(_mapping(path, target) for path, target in self.mappings.items())]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""  # READY <port>, or EOF if it died
        if not line.startswith("READY"):
            error = self.process.stderr.read() if self.process.stderr else ""
            self.process.kill()
            pytest.fail(f"RTSP server did not start: {line!r} {error}")
        self.port = int(line.split()[1])
        return self

    def url(self, path: str, credentials: str = "") -> str:
        return f"rtsp://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}{path}"

    def kill(self) -> None:
        """SIGKILL: connections drop at once, as when a camera loses power."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self) -> RtspServer:
        self.kill()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing flows (a hung camera)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _mapping(path: str, target: Path | tuple[Path, float]) -> str:
    if isinstance(target, tuple):
        return f"{path}={target[0]}@{target[1]:g}"
    return f"{path}={target}"


def _require_gstreamer() -> None:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} missing: the RTSP test server runs under Debian's python3")
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer"], capture_output=True, text=True)
    if probe.returncode:
        pytest.fail("GStreamer RTSP server bindings missing: apt-get install python3-gi "
                    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}\n" + probe.stderr)


@pytest.fixture(scope="session")
def vtest_h264(vtest_video: Path) -> Path:
    """vtest.avi as camera-like H.264: 10 fps, keyframe every second, no B frames."""
    return transcode_h264(vtest_video, fps=10, gop=10)


@pytest.fixture(scope="session")
def vtest_h264_short(vtest_video: Path) -> Path:
    """The first 3 s of vtest.avi (30 frames): for end-of-stream tests."""
    return transcode_h264(vtest_video, fps=10, gop=10, frames=30)


@pytest.fixture
def rtsp_server_factory() -> Iterator:
    """`make(mappings, fps=10, loop=True)` starts a server; all are stopped after the test."""
    _require_gstreamer()
    servers: list[RtspServer] = []

    def make(mappings: dict[str, Path | tuple[Path, float]], fps: float = 10, loop: bool = True) -> RtspServer:
        server = RtspServer(mappings, fps, loop).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def rtsp_server(vtest_h264: Path) -> Iterator[RtspServer]:
    """A module-wide server with the vtest clip on /cam1, /cam2 and /cam3."""
    _require_gstreamer()
    server = RtspServer({f"/cam{i}": vtest_h264 for i in (1, 2, 3)}).start()
    yield server
    server.stop()
