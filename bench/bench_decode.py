"""Ingest decoding benchmark: CPU per stream through the gateway's reader, full vs keyframe-only,
against bare PyAV keyframe-only decoding of the same RTSP stream (the floor).

A real RTSP server (tests/rtsp_server.py, GStreamer, Debian's python3) serves vtest.avi
transcoded two ways: the native 10 fps with a keyframe every second, and camera-shaped 25 fps
with a keyframe every 2 s (`-r 25 -g 50`). Every variant gets its own RTSP session and thread,
all running at once for `--seconds`; each thread's own CPU clock is read (not wall time), so the
figures are CPU seconds per second of video, per stream. The server's CPU is not counted.

Variants: bare PyAV (keyframes only / full), the reader (keyframes / all), and the reader with
a consumer taking every frame due at the analysis fps (the BGR conversion is then counted too).
Targets: reader keyframes <= 1.2x the floor; keyframes <= 0.25x full on the 25 fps stream.

    python bench/bench_decode.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from gateway.video.decode import decode_frames, open_video  # noqa: E402
from gateway.video.reader import PROBE_OPTIONS, CameraReader  # noqa: E402
from rtsp_fixtures import RtspServer, transcode_h264  # noqa: E402

VTEST = REPO.parent / "shared" / "data" / "vtest.avi"
STREAMS = {"/v10": (10, 10), "/v25": (25, 50)}  # path: (fps, keyframe interval in frames)


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds used so far by `thread` (Linux per-thread clock)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


@dataclass
class Probe:
    """One variant: its threads, a frame counter, and the CPU/frames snapshot at measure start."""

    name: str
    path: str
    threads: list[threading.Thread]
    frames: Callable[[], int]
    stop: Callable[[], None]
    cpu0: float = 0.0
    frames0: int = 0

    def cpu(self) -> float:
        return sum(thread_cpu(thread) for thread in self.threads if thread.is_alive())

    def mark(self) -> None:
        self.cpu0, self.frames0 = self.cpu(), self.frames()


def bare_pyav(url: str, keyframes_only: bool, stop: threading.Event, counter: list[int]) -> None:
    """The floor: PyAV alone, same options as the reader, no Python around the decode loop."""
    container = av.open(url, options={"rtsp_transport": "tcp", **PROBE_OPTIONS}, timeout=(10, 10))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    stream.codec_context.skip_frame = "NONKEY" if keyframes_only else "DEFAULT"
    for _ in container.decode(stream):
        counter[0] += 1
        if stop.is_set():
            break
    container.close()


def start_bare(name: str, url: str, path: str, keyframes_only: bool) -> Probe:
    stop, counter = threading.Event(), [0]
    thread = threading.Thread(target=bare_pyav, args=(url, keyframes_only, stop, counter), daemon=True)
    thread.start()
    return Probe(name, path, [thread], lambda: counter[0], stop.set)


def start_reader(name: str, url: str, path: str, mode: str, fps: float, consume: bool) -> Probe:
    reader = CameraReader(name, url, decode_mode=mode, analysis_fps=fps)  # type: ignore[arg-type]
    reader.start()
    threads = [reader._thread]  # noqa: SLF001 - the benchmark reads the thread's CPU clock
    if consume:
        def take_every_frame() -> None:
            seq = 0
            while (frame := reader.wait_for_frame(seq, timeout=5)) is not None:
                seq = frame.seq

        consumer = threading.Thread(target=take_every_frame, daemon=True)
        consumer.start()
        threads.append(consumer)
    return Probe(name, path, threads, lambda: reader.health().frames_decoded, reader.stop)


def run(args: argparse.Namespace) -> int:
    clips = {path: transcode_h264(VTEST, fps, gop, preset=args.preset) for path, (fps, gop) in STREAMS.items()}
    decoder_only = {path: file_decode_cpu(clip, STREAMS[path][0]) for path, clip in clips.items()}
    server = RtspServer({path: (clip, STREAMS[path][0]) for path, clip in clips.items()})
    server.start()
    probes: list[Probe] = []
    try:
        for path, (fps, gop) in STREAMS.items():
            url = server.url(path)
            keyframe_rate = fps / gop
            probes += [
                start_bare("bare PyAV keyframes (floor)", url, path, True),
                start_bare("bare PyAV full", url, path, False),
                start_reader("reader keyframes", url, path, "keyframes", keyframe_rate, False),
                start_reader("reader keyframes + BGR", url, path, "keyframes", keyframe_rate, True),
                start_reader("reader auto", url, path, "auto", keyframe_rate, False),
                start_reader("reader all", url, path, "all", keyframe_rate, False),
            ]
        time.sleep(args.warmup)
        for probe in probes:
            probe.mark()
        began = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - began
        results = {(probe.path, probe.name): ((probe.cpu() - probe.cpu0) / elapsed,
                                              (probe.frames() - probe.frames0) / elapsed)
                   for probe in probes}
    finally:
        for probe in probes:
            probe.stop()
        server.stop()
    return report(results, decoder_only, elapsed, args.preset)


def file_decode_cpu(clip: Path, fps: float) -> dict[str, float]:
    """Decoder-only CPU (ms per second of video) on the file itself, through `decode_frames`:
    what keyframe-only saves once the RTSP transport, paid in every mode, is left out."""
    cpu, video_s = {}, 0.0
    for name, keyframes_only in (("full", False), ("keyframes", True)):
        container = open_video(clip)
        container.streams.video[0].codec_context.thread_count = 1
        began, frames = time.thread_time(), 0
        for _ in decode_frames(container, keyframes_only=keyframes_only):
            frames += 1
        cpu[name] = (time.thread_time() - began) * 1000
        container.close()
        video_s = video_s or frames / fps
    return {name: value / video_s for name, value in cpu.items()}


def report(results: dict[tuple[str, str], tuple[float, float]], decoder_only: dict[str, dict[str, float]],
           elapsed: float, preset: str) -> int:
    print(f"decode benchmark: CPU per stream over {elapsed:.0f} s of live RTSP (thread CPU clocks), "
          f"768x576 H.264 (x264 -preset {preset}, no B frames), 1 decoder thread per stream")
    ok = True
    for path, (fps, gop) in STREAMS.items():
        floor = results[(path, "bare PyAV keyframes (floor)")][0]
        full = results[(path, "reader all")][0]
        print(f"\n  {path}: {fps} fps, keyframe every {gop / fps:g} s, analysed at {fps / gop:g} fps")
        print(f"  {'variant':<30} {'CPU ms/s':>9} {'frames/s':>9} {'x floor':>8} {'x full':>7}")
        for (stream, name), (cpu, rate) in results.items():
            if stream == path:
                print(f"  {name:<30} {cpu * 1000:>9.2f} {rate:>9.2f} {cpu / floor:>8.2f} {cpu / full:>7.2f}")
        reader_ratio = results[(path, "reader keyframes")][0] / floor
        keyframe_ratio = results[(path, "reader keyframes")][0] / full
        within = reader_ratio <= 1.2
        print(f"  reader keyframes / floor = {reader_ratio:.2f} (target <= 1.2: {'met' if within else 'NOT met'})")
        ok &= within
        if gop / fps >= 2:
            cheap = keyframe_ratio <= 0.25
            print(f"  keyframes / full = {keyframe_ratio:.2f} (target <= 0.25: {'met' if cheap else 'NOT met'})")
            ok &= cheap
        else:
            print(f"  keyframes / full = {keyframe_ratio:.2f}")
        files = decoder_only[path]
        print(f"  decoder only (the file, no RTSP): keyframes {files['keyframes']:.2f} ms/s, full "
              f"{files['full']:.2f} ms/s, ratio {files['keyframes'] / files['full']:.2f}; the RTSP "
              f"transport costs the rest, in every mode")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="measured stretch")
    parser.add_argument("--warmup", type=float, default=3, help="seconds before measuring")
    parser.add_argument("--preset", default="medium", help="x264 preset of the test clips")
    sys.exit(run(parser.parse_args()))
