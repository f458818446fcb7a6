"""GB/T 28181 live stream benchmark: CPU and memory per live stream (remux, no re-encoding),
against bare `socket.sendto` of the same bytes in 1400-byte chunks, measured in the same run.

The stream is camera-shaped: vtest scaled to 1920x1080 at 25 fps, 2 Mbit/s H.264, a keyframe
every 2 s, no B-frames, made once with ffmpeg into a temp dir. Its packets are read with PyAV
(MP4: length-prefixed units and avcC, the conversion path) and also turned into the Annex B
form an RTSP camera sends. Every variant sends UDP to 127.0.0.1 (a bound socket nobody reads).

- as fast as possible: every packet through h26x -> PS -> RTP (`PacketRemuxer`) and sendto,
  CPU time (time.process_time) per second of video, best of --rounds;
- real time, as the gateway runs it: a feeder thread plays the camera's reader, putting the
  packets into the camera's `PacketRing` at the pace of their timestamps for --seconds, and a
  `LiveStream` reads them through its `RingSource` (a ring subscription) on its one sender
  thread; process CPU (getrusage) and the sender thread's own CPU clock, per second of video;
  the baseline sends the same access units bare, paced the same way.

Memory: the tracemalloc peak while one stream's chain runs, and the RSS growth over the real-time
run (the stream, its subscription queue, the ring's GOP). Target (DESIGN.md 5): one 2 Mbit/s
1080p live stream <= 5 % of a core.

    python bench/bench_live_stream.py [--seconds 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from gateway.outputs.gb28181.media import LiveStream  # noqa: E402
from gateway.outputs.gb28181.remux import PacketRemuxer  # noqa: E402
from gateway.outputs.gb28181.sources import RingSource  # noqa: E402
from gateway.video import h26x  # noqa: E402
from gateway.video.packets import EncodedPacket, PacketRing  # noqa: E402
from gb28181_media_support import VTEST_H264, feed_in_real_time, read_packets  # noqa: E402

CHUNK = 1400
TARGET_SHARE = 0.05
CLIP = Path(tempfile.gettempdir()) / "gateway-bench-live" / "vtest-1080p25-2mbit-g50-30s.mp4"


def make_clip() -> Path:
    if CLIP.exists():
        return CLIP
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg not found: install the Debian package 'ffmpeg'")
    CLIP.parent.mkdir(parents=True, exist_ok=True)
    partial = CLIP.with_suffix(".part.mp4")
    print(f"making {CLIP.name} with ffmpeg (once) ...", flush=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1",
                    "-i", str(VTEST_H264), "-t", "30", "-an", "-vf", "scale=1920:1080", "-r", "25",
                    "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2M", "-maxrate", "2M", "-bufsize", "4M",
                    "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p",
                    str(partial)], check=True, timeout=600)
    partial.replace(CLIP)
    return CLIP


def annexb_packets(packets: list[EncodedPacket]) -> list[EncodedPacket]:
    """The same access units as an RTSP camera hands them over (parameter sets on keyframes)."""
    config = h26x.parse_extradata("h264", packets[0].stream.extradata)
    stream = dataclasses.replace(packets[0].stream, extradata=h26x.join_annexb(config.parameter_sets))
    return [dataclasses.replace(packet, data=h26x.annexb_access_unit(packet), stream=stream) for packet in packets]


def sink() -> tuple[socket.socket, socket.socket, tuple[str, int]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    return receiver, sender, receiver.getsockname()


def bare_send(packets: list[EncodedPacket], sender: socket.socket, address: tuple[str, int]) -> None:
    for packet in packets:
        data = memoryview(packet.data)
        for offset in range(0, len(data), CHUNK):
            sender.sendto(data[offset:offset + CHUNK], address)


def remux_send(packets: list[EncodedPacket], sender: socket.socket, address: tuple[str, int]) -> None:
    remuxer = PacketRemuxer(0x0BEBC201)
    for packet in packets:
        for rtp in remuxer.remux(packet) or ():
            sender.sendto(rtp, address)


def fast(run: Callable[[list[EncodedPacket], socket.socket, tuple[str, int]], None],
         packets: list[EncodedPacket], rounds: int) -> float:
    """Best CPU seconds of `rounds` runs over all packets."""
    receiver, sender, address = sink()
    best = float("inf")
    for _ in range(rounds):
        began = time.process_time()
        run(packets, sender, address)
        best = min(best, time.process_time() - began)
    receiver.close()
    sender.close()
    return best


def chain_memory_peak(packets: list[EncodedPacket]) -> int:
    receiver, sender, address = sink()
    tracemalloc.start()
    remux_send(packets, sender, address)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    receiver.close()
    sender.close()
    return peak


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _PacedBare:
    """The real-time baseline: the same access units sent bare, at the same pace."""

    def __init__(self, sender: socket.socket, address: tuple[str, int]):
        self.sender, self.address = sender, address

    def feed(self, packet: EncodedPacket) -> bool:
        bare_send([packet], self.sender, self.address)
        return True


class _Camera:
    """The reader's side: each packet into the camera's ring as it arrives."""

    def __init__(self, ring: PacketRing):
        self.ring = ring

    def feed(self, packet: EncodedPacket) -> bool:
        self.ring.put(dataclasses.replace(packet, received_at=time.monotonic()))
        return True


def real_time(packets: list[EncodedPacket], seconds: float) -> dict[str, float]:
    receiver, sender, address = sink()
    cpu0 = process_cpu()
    fed = feed_in_real_time(_PacedBare(sender, address), packets, seconds)  # type: ignore[arg-type]
    bare = process_cpu() - cpu0
    ring = PacketRing("bench", keep_s=0.0)
    stream = LiveStream("bench", packets[0].stream, "udp", ssrc=0x0BEBC201, remote=address, bind_host="127.0.0.1",
                        source=RingSource(ring))
    rss0, cpu0 = rss_bytes(), process_cpu()
    stream.start()
    assert stream._thread is not None  # noqa: SLF001 - the benchmark reads the sender thread's CPU clock
    clock = time.pthread_getcpuclockid(stream._thread.ident or 0)  # noqa: SLF001
    fed = feed_in_real_time(_Camera(ring), packets, seconds)  # type: ignore[arg-type]
    while stream.health().frames_sent + stream.health().frames_dropped < fed:
        time.sleep(0.01)
    thread_cpu = time.clock_gettime(clock)
    whole = process_cpu() - cpu0
    rss = rss_bytes() - rss0
    health = stream.health()
    stream.stop()
    ring.close()
    receiver.close()
    sender.close()
    video_s = fed / 25
    return {"bare": bare / video_s, "process": whole / video_s, "thread": thread_cpu / video_s,
            "rss": rss, "dropped": health.frames_dropped, "video_s": video_s}


def run(args: argparse.Namespace) -> int:
    mp4 = read_packets(make_clip())
    annexb = annexb_packets(mp4)
    video_s = len(mp4) / 25
    bitrate = sum(len(packet.data) for packet in mp4) * 8 / video_s / 1e6
    baseline = fast(bare_send, mp4, args.rounds) / video_s
    rows = [("bare sendto, 1400-byte chunks (baseline)", baseline),
            ("remux MP4 packets (AVCC -> Annex B) + sendto", fast(remux_send, mp4, args.rounds) / video_s),
            ("remux Annex B packets (RTSP-like) + sendto", fast(remux_send, annexb, args.rounds) / video_s)]
    peak = chain_memory_peak(mp4)
    live = real_time(annexb, args.seconds)
    print(f"\nlive stream benchmark: 1920x1080 H.264 at {bitrate:.2f} Mbit/s, 25 fps, keyframe every 2 s, "
          f"no B-frames; {video_s:.0f} s of video; UDP to 127.0.0.1")
    print(f"\n  as fast as possible (best of {args.rounds}), CPU per second of video:")
    print(f"  {'variant':<48} {'CPU ms/s':>9} {'% core':>7} {'x bare':>7}")
    for name, cpu in rows:
        print(f"  {name:<48} {cpu * 1000:>9.2f} {cpu * 100:>6.2f}% {cpu / baseline:>7.2f}")
    print(f"\n  real time, {live['video_s']:.0f} s of the Annex B stream, CPU per second of video:")
    print(f"  {'variant':<62} {'CPU ms/s':>9} {'% core':>7} {'x bare':>7}")
    for name, key in (("bare sendto paced (baseline, whole process)", "bare"),
                      ("LiveStream on the ring, whole process (feeder + ring + sender)", "process"),
                      ("LiveStream, sender thread only", "thread")):
        print(f"  {name:<62} {live[key] * 1000:>9.2f} {live[key] * 100:>6.2f}% {live[key] / live['bare']:>7.2f}")
    print(f"\n  memory: chain's tracemalloc peak {peak / 1024:.0f} KiB; RSS growth over the real-time run "
          f"{live['rss'] / 1024:.0f} KiB; frames dropped {live['dropped']:.0f}")
    met = live["process"] <= TARGET_SHARE
    print(f"  LiveStream at 2 Mbit/s 1080p: {live['process'] * 100:.2f} % of a core "
          f"(target <= {TARGET_SHARE * 100:.0f} %: {'met' if met else 'NOT met'})")
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="real-time stretch")
    parser.add_argument("--rounds", type=int, default=3, help="fast runs per variant (best is kept)")
    sys.exit(run(parser.parse_args()))
