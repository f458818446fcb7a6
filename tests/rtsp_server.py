#!/usr/bin/python3
"""A real RTSP server for the ingest tests: GStreamer's rtsp-server serving Annex-B H.264 files.

Runs under Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0), not the project's
venv. Each client gets its own pipeline that starts at the file's first access unit (a keyframe)
and loops the file forever (or ends the stream with --no-loop).

    /usr/bin/python3 tests/rtsp_server.py --port 0 --fps 10 /cam1=/tmp/a.h264 /cam2=/tmp/b.h264@25

Prints `READY <port>` on stdout once it listens (on 127.0.0.1 only). The script stamps every
buffer's PTS/duration from a frame counter: without timestamps the server's pipeline takes
seconds to settle and clients need ~5 s to open.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( appsrc name=src is-live=true format=time "
    "caps=video/x-h264,stream-format=byte-stream,alignment=au "
    "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
SLICE_TYPES = (1, 5)
PICTURE_PREFIX_TYPES = (6, 7, 8, 9)  # SEI, SPS, PPS, access unit delimiter


@dataclass
class AccessUnit:
    data: bytes
    keyframe: bool


def nal_units(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream at its start codes (the start codes are kept)."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        begin = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((begin, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    return [data[begin:(starts[k + 1][0] if k + 1 < len(starts) else len(data))]
            for k, (begin, _) in enumerate(starts)]


def access_units(data: bytes) -> list[AccessUnit]:
    """Group NAL units into pictures: a new one starts at a prefix NAL or a slice with first_mb 0."""
    units: list[AccessUnit] = []
    current: list[bytes] = []
    has_slice = keyframe = False
    for nal in nal_units(data):
        header = nal.index(b"\x00\x00\x01") + 3
        if header >= len(nal):
            continue
        kind = nal[header] & 0x1F
        first_mb_zero = kind in SLICE_TYPES and header + 1 < len(nal) and nal[header + 1] & 0x80
        if has_slice and (kind in PICTURE_PREFIX_TYPES or first_mb_zero):
            units.append(AccessUnit(b"".join(current), keyframe))
            current, has_slice, keyframe = [], False, False
        current.append(nal)
        has_slice = has_slice or kind in SLICE_TYPES
        keyframe = keyframe or kind == 5
    if has_slice:
        units.append(AccessUnit(b"".join(current), keyframe))
    return units


class Feeder:
    """Pushes one client's access units with stamped timestamps, looping the file."""

    def __init__(self, units: list[AccessUnit], fps: float, loop: bool):
        self.units, self.loop = units, loop
        self.duration = int(Gst.SECOND / fps)
        self.count = 0

    def need_data(self, src: Gst.Element, _length: int) -> None:
        if self.count >= len(self.units) and not self.loop:
            src.emit("end-of-stream")
            return
        unit = self.units[self.count % len(self.units)]
        buffer = Gst.Buffer.new_wrapped(unit.data)
        buffer.pts = buffer.dts = self.count * self.duration
        buffer.duration = self.duration
        if not unit.keyframe:
            buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
        self.count += 1
        src.emit("push-buffer", buffer)


class FileFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, units: list[AccessUnit], fps: float, loop: bool):
        super().__init__()
        self.units, self.fps, self.loop = units, fps, loop
        self.set_shared(False)
        self.set_launch(PIPELINE)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_child_by_name("src")
        feeder = Feeder(self.units, self.fps, self.loop)
        src.connect("need-data", feeder.need_data)
        media._feeder = feeder  # keep it alive as long as the media


def parse_mapping(text: str, default_fps: float) -> tuple[str, str, float]:
    path, sep, rest = text.partition("=")
    if not sep or not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected /path=FILE[@fps], got {text!r}")
    file, _, fps = rest.partition("@")
    return path, file, float(fps) if fps else default_fps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--fps", type=float, default=10.0, help="default frame rate")
    parser.add_argument("--no-loop", dest="loop", action="store_false",
                        help="end each client's stream at the end of the file")
    parser.add_argument("mappings", nargs="+", metavar="/PATH=FILE[@FPS]")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for mapping in args.mappings:
        path, file, fps = parse_mapping(mapping, args.fps)
        with open(file, "rb") as handle:
            units = access_units(handle.read())
        if not units:
            print(f"{file}: no H.264 access units (need an Annex-B byte stream)", file=sys.stderr)
            return 2
        mounts.add_factory(path, FileFactory(units, fps, args.loop))
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
