#!/usr/bin/python3
"""A GB/T 28181 media server for the live video tests: GStreamer receives PS over RTP and decodes it.

Runs under Debian's /usr/bin/python3 (python3-gi, GStreamer 1.22 with the good/bad/libav
plugins), not the project's venv, as the peer a platform's media server is:

    udp:        udpsrc -> rtpmp1sdepay -> capssetter (mpegversion=2) -> mpegpsdemux -> parse -> decode
    tcp-server: tcpserversrc (the gateway connects: its "tcp-active") -> rtpstreamdepay -> ...
    tcp-client: tcpclientsrc (connects to the gateway: its "tcp-passive") -> rtpstreamdepay -> ...

GStreamer 1.22 has no MP2P depayloader: rtpmp1sdepay strips the RTP header of any payload and
says `video/mpeg, systemstream=true` without a version, which mpegpsdemux does not accept, so
capssetter adds `mpegversion=2`. RTP over TCP is RFC 4571 framing, which rtpstreamdepay reads.

mpegpsdemux creates its video pad on the first PES packet it sees and types it from the last
program stream map (MPEG-2 video if it has seen none), for good. So, like a media server that
waits for a random access point, the receiver feeds the demuxer from the first RTP payload
that starts a PS pack with a program stream map (the start of a keyframe, where the gateway
puts one) and prints `SYNCED` then. A stream with no PSM before its keyframes never syncs.
The demuxer ignores the SCR (`ignore-scr`), as live RTP receivers time frames by their PTS:
going by the SCR, mpegpsdemux 1.22 moves its output segment to twice the first SCR when that
is more than 1 s (a receiver that joins late), and the decoder then drops every frame before.

    /usr/bin/python3 tests/gst_ps_receiver.py --transport udp [--port 0 | --socket-fd N]
    /usr/bin/python3 tests/gst_ps_receiver.py --transport tcp-server [--port 0]
    /usr/bin/python3 tests/gst_ps_receiver.py --transport tcp-client --port P

Prints `READY <port>` once it listens (or is connected), `SYNCED`, `FRAMES <n>` every second
(decoded frames so far) and `FINAL <n>` at the end: on EOS (a TCP peer closed) or SIGTERM
(which first drains the pipeline with an EOS). Errors print `ERROR <text>` and exit 1.
Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib, Gst  # noqa: E402

RTP_CAPS = "media=video,clock-rate=90000,encoding-name=MP1S,payload=96"
DECODERS = {"h264": "h264parse ! avdec_h264", "hevc": "h265parse ! avdec_h265"}
PACK_START = b"\x00\x00\x01\xba"
PSM_START = b"\x00\x00\x01\xbc"
EOS_DRAIN_S = 5


def pipeline_text(args: argparse.Namespace) -> str:
    if args.transport == "udp":
        source = (f'udpsrc name=src address=127.0.0.1 port={args.port} buffer-size=4194304 '
                  f'caps="application/x-rtp,{RTP_CAPS}"')
    else:
        element = "tcpserversrc" if args.transport == "tcp-server" else "tcpclientsrc"
        source = (f'{element} name=src host=127.0.0.1 port={args.port} ! '
                  f'capsfilter caps="application/x-rtp-stream,{RTP_CAPS}" ! rtpstreamdepay')
    return (f'{source} ! rtpmp1sdepay name=depay ! '
            'capssetter caps="video/mpeg,mpegversion=2,systemstream=true" ! '
            f'mpegpsdemux name=demux ignore-scr=true demux. ! {DECODERS[args.codec]} ! '
            'fakesink name=sink signal-handoffs=true sync=false async=false')


class Receiver:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.frames = 0
        self.error: str | None = None
        self.loop = GLib.MainLoop()
        self.pipeline = Gst.parse_launch(pipeline_text(args))
        if args.socket_fd is not None:
            self.pipeline.get_by_name("src").set_property("socket", Gio.Socket.new_from_fd(args.socket_fd))
        self.pipeline.get_by_name("sink").connect("handoff", self._decoded)
        depay_src = self.pipeline.get_by_name("depay").get_static_pad("src")
        depay_src.add_probe(Gst.PadProbeType.BUFFER, self._gate)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::eos", lambda *_: self.loop.quit())
        bus.connect("message::error", self._on_error)

    def run(self) -> int:
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._drain_error()
            say(f"ERROR {self.error or 'the pipeline did not start'}")
            return 1
        self.pipeline.get_state(10 * Gst.SECOND)
        say(f"READY {self.bound_port()}")
        GLib.timeout_add_seconds(1, self._report)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self._drain)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, self._drain)
        self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)
        if self.error:
            say(f"ERROR {self.error}")
        say(f"FINAL {self.frames}")
        return 1 if self.error else 0

    def bound_port(self) -> int:
        src = self.pipeline.get_by_name("src")
        if self.args.transport == "tcp-server":
            return src.get_property("current-port")
        return src.get_property("port")

    def _gate(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buffer = info.get_buffer()
        head = buffer.extract_dup(0, min(buffer.get_size(), 256))
        if head.startswith(PACK_START) and PSM_START in head:
            say("SYNCED")
            return Gst.PadProbeReturn.REMOVE  # passes this buffer and everything after it
        return Gst.PadProbeReturn.DROP

    def _decoded(self, *_args: object) -> None:
        self.frames += 1

    def _report(self) -> bool:
        say(f"FRAMES {self.frames}")
        return True

    def _drain(self) -> bool:
        self.pipeline.send_event(Gst.Event.new_eos())
        GLib.timeout_add_seconds(EOS_DRAIN_S, self.loop.quit)
        return False

    def _on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        self.error = f"{error.message} ({debug})".replace("\n", " ")
        self.loop.quit()

    def _drain_error(self) -> None:
        message = self.pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
        if message is not None:
            self._on_error(self.pipeline.get_bus(), message)


_SAYING = threading.Lock()


def say(line: str) -> None:
    """One whole line at a time: the streaming thread (SYNCED) and the main loop (READY, FRAMES)
    both speak, and a line cut in two by the other would be misread."""
    with _SAYING:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("udp", "tcp-server", "tcp-client"), required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (not for tcp-client)")
    parser.add_argument("--socket-fd", type=int, help="udp: receive on this inherited, bound socket")
    parser.add_argument("--codec", choices=tuple(DECODERS), default="h264")
    args = parser.parse_args()
    if args.transport == "tcp-client" and not args.port:
        parser.error("tcp-client needs --port (the gateway's listening port)")
    Gst.init(None)
    return Receiver(args).run()


if __name__ == "__main__":
    sys.exit(main())
