"""Capacity benchmark: how many RTSP cameras one box analyses at their keyframe rate.

A real RTSP server (tests/rtsp_server.py, GStreamer) serves N camera-shaped H.264 streams
(768x576, 25 fps, a keyframe every 2 s); the real gateway service (readers, scheduler,
YOLOX-Nano 416, analytics, outbox) watches all N at 0.5 fps with `decode: auto` (so readers
decode keyframes only) and motion gating OFF (every analysed frame is inferred: the worst case).
For N = 4, 8, 16 it prints per-camera analysed fps, the age of frames when analysed (p95 and
max), the gateway process's CPU and its RSS. The RTSP server's CPU is not counted.

Evidence clips are on, as in the field: every camera keeps its packet ring (the pre-roll), and
with `--alerts` each camera also has a crowd rule the sample video fires, so clips are being
written for every camera at once (the worst case); the row then also prints the rings' memory
and the clips written. `--no-clips` measures the same row without rings, as the baseline.

Rows run one after the other in one process, so a row's RSS includes what earlier rows left
behind: measure the largest row on its own (`--cameras 64`).

Targets (DESIGN §5): 16 streams, every camera >= 0.5 fps, frame age <= 2 s, RSS <= 600 MB;
64 streams with clips: every camera >= 0.5 fps, frame age p95 <= 2 s, RSS <= 1 GB.

    python bench/bench_capacity.py [--cameras 4 8 16] [--seconds 40] [--alerts] [--no-clips]
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from gateway.config import load_config  # noqa: E402
from gateway.runtime.service import GatewayService  # noqa: E402
from rtsp_fixtures import RtspServer, transcode_h264  # noqa: E402

VTEST = REPO.parent / "shared" / "data" / "vtest.avi"
MODEL = REPO.parent / "shared" / "models" / "yolox_nano.onnx"
WARM_UP_S = 8.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_config(directory: Path, server: RtspServer, cameras: int, clips: bool, alerts: bool) -> Path:
    rules = ", rules: [{type: crowd, min_people: 3, for_s: 2, clear_s: 2}]" if alerts else ""
    stanzas = "".join(
        f"  - {{id: cam{i:02d}, source: {{rtsp: \"{server.url(f'/cam{i:02d}')}\"}}, fps: 0.5, "
        f"decode: auto, motion: {{enabled: false}}, clips: {{enabled: {str(clips).lower()}}}{rules}}}\n"
        for i in range(cameras))
    path = directory / "capacity.yaml"
    path.write_text(textwrap.dedent(f"""\
        gateway: {{id: capacity, data_dir: {directory / 'data'}}}
        detector: {{model: {MODEL}, threads: 2}}
        mqtt: {{port: {free_port()}}}
        api: {{port: {free_port()}}}
        cameras:
        """) + stanzas)
    return path


def measure(cameras: int, seconds: float, clip: Path, clips: bool, alerts: bool) -> dict:
    server = RtspServer({f"/cam{i:02d}": (clip, 25) for i in range(cameras)}, fps=25).start()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            service = GatewayService(load_config(write_config(Path(scratch), server, cameras, clips, alerts)))
            service.start()
            try:
                time.sleep(WARM_UP_S)
                workers = service.scheduler.workers()
                for worker in workers:
                    worker.frame_ages.clear()
                analysed_before = {w.camera.id: w.reader.health().frames_analysed for w in workers}
                cpu_before, wall_before = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
                time.sleep(seconds)
                cpu_after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall_before
                fps = [(w.reader.health().frames_analysed - analysed_before[w.camera.id]) / wall
                       for w in workers]
                ages = np.array([age for w in workers for age in w.frame_ages]) if workers else np.zeros(1)
                cpu = (cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime)
                streaming = sum(w.reader.health().state == "streaming" for w in workers)
                ring_mb = sum(w.packets.stats().bytes for w in workers) / 2**20
                written = len(list((Path(scratch) / "data" / "clips").glob("*.mp4")))
                return {"ring_mb": ring_mb, "clips": written,
                        "cameras": cameras, "streaming": streaming, "fps_min": min(fps),
                        "fps_mean": float(np.mean(fps)), "age_p95": float(np.percentile(ages, 95)),
                        "age_max": float(ages.max()), "cpu_cores": cpu / wall, "rss_mb": rss_mb(),
                        "inference_ms": service.detector.recent_ms()}
            finally:
                service.stop()
    finally:
        server.stop()


def targets_met(row: dict) -> bool:
    """DESIGN §5 up to 16 cameras; the 64-camera target (with clips) above that."""
    if row["cameras"] > 16:
        return row["fps_min"] >= 0.45 and row["age_p95"] <= 2.0 and row["rss_mb"] <= 1024
    return row["fps_min"] >= 0.45 and row["age_max"] <= 2.0 and row["rss_mb"] <= 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--alerts", action="store_true", help="a crowd rule per camera: clips are written")
    parser.add_argument("--no-clips", action="store_true", help="clips off (no packet rings): the baseline")
    args = parser.parse_args()
    import logging
    logging.basicConfig(level=logging.WARNING)
    clip = transcode_h264(VTEST, fps=25, gop=50)
    print(f"capacity: YOLOX-Nano 416, 2 threads; streams 768x576 H.264 25 fps, keyframe every 2 s; "
          f"analysis 0.5 fps, motion gating off; clips {'off' if args.no_clips else 'on'}"
          f"{', a crowd rule per camera' if args.alerts else ''}; {args.seconds:g} s per row")
    print(f"{'cameras':>7} {'streaming':>9} {'fps min':>8} {'fps mean':>8} {'age p95 s':>9} "
          f"{'age max s':>9} {'CPU cores':>9} {'RSS MB':>7} {'infer ms':>8} {'rings MB':>8} {'clips':>5}  targets")
    for cameras in args.cameras:
        row = measure(cameras, args.seconds, clip, not args.no_clips, args.alerts)
        print(f"{row['cameras']:>7} {row['streaming']:>9} {row['fps_min']:>8.2f} {row['fps_mean']:>8.2f} "
              f"{row['age_p95']:>9.2f} {row['age_max']:>9.2f} {row['cpu_cores']:>9.2f} "
              f"{row['rss_mb']:>7.0f} {row['inference_ms'] or 0:>8.1f} {row['ring_mb']:>8.1f} {row['clips']:>5}  "
              f"{'met' if targets_met(row) else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
