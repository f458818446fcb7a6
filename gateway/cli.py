"""The `gateway` command: check, run, replay, calibrate, discover, bench."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

from gateway import __version__
from gateway.logs import setup_logging

log = logging.getLogger("gateway")

EXIT_OK, EXIT_FAILED, EXIT_INVALID_CONFIG = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_FAILED
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one JSON object per line (for journald)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    check = commands.add_parser("check", help="validate a configuration file")
    check.add_argument("-c", "--config", type=Path, required=True)
    check.add_argument("--load-model", action="store_true",
                       help="also load the detector and run one inference (the service's start-up check)")
    check.set_defaults(handler=cmd_check)

    run = commands.add_parser("run", help="the service: watch every configured camera")
    run.add_argument("-c", "--config", type=Path, required=True)
    run.set_defaults(handler=cmd_run)

    replay = commands.add_parser("replay", help="run one camera's analytics on a recorded video")
    replay.add_argument("-c", "--config", type=Path, required=True)
    replay.add_argument("--camera", required=True, help="camera id from the configuration")
    replay.add_argument("--source", type=Path, required=True, help="any video file ffmpeg can read")
    replay.add_argument("--counts-out", type=Path, help="JSON lines: persons per analysed frame")
    replay.add_argument("--events-out", type=Path, help="JSON lines: alert payloads")
    replay.add_argument("--snapshots", type=Path, metavar="DIR", help="write evidence JPEGs here")
    replay.add_argument("--clips", type=Path, metavar="DIR", help="write each event's clip here (<event_id>.mp4)")
    replay.add_argument("--fps", type=float, help="override the camera's analysis fps")
    replay.add_argument("--start-at", type=datetime.fromisoformat, metavar="ISO",
                        help="wall-clock time of the file's first frame (default: now)")
    replay.set_defaults(handler=cmd_replay)

    calibrate = commands.add_parser("calibrate", help="fit a camera's models from recordings")
    calibrate_commands = calibrate.add_subparsers(title="what to calibrate", metavar="WHAT")
    count = calibrate_commands.add_parser(
        "count", help="a counting model for dense crowds, from a recording and a few annotated frames")
    count.add_argument("-c", "--config", type=Path, required=True)
    count.add_argument("--camera", required=True, help="camera id from the configuration")
    count.add_argument("--source", type=Path, required=True, help="a recording of this camera")
    count.add_argument("--points", type=Path, required=True, metavar="POINTS.json",
                       help='{"<0-based frame index>": [[x, y], ...]}: one point per person, >= 5 frames')
    count.add_argument("--out", type=Path, required=True, metavar="MODEL.json", help="the model file to write")
    count.set_defaults(handler=cmd_calibrate_count)

    from gateway.onvif.cli import add_discover_parser

    add_discover_parser(commands)

    bench = commands.add_parser("bench", help="benchmarks (figures printed as same-run ratios)")
    bench_commands = bench.add_subparsers(title="benchmarks", metavar="BENCH")
    bench_detector = bench_commands.add_parser(
        "detector", help="bare onnxruntime session.run vs gateway replay throughput")
    bench_detector.add_argument("-c", "--config", type=Path, default=Path("config/demo.yaml"))
    bench_detector.add_argument("--camera", help="camera id (default: the first)")
    bench_detector.add_argument("--source", type=Path, help="video (default: the camera's file)")
    bench_detector.add_argument("--segment", type=int, default=200, help="frames per run (the clip's length)")
    bench_detector.add_argument("--pairs", type=int, default=9, help="interleaved bare/replay pairs")
    bench_detector.set_defaults(handler=cmd_bench_detector)
    return parser


def load_or_report(path: Path, counting_models: bool = True):
    """The validated config, or None after printing every problem (file:line: key: message)."""
    from gateway.checks import check_site

    config, issues = check_site(path, counting_models=counting_models)
    for issue in issues:
        print(issue, file=sys.stderr)
    return config


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.config import config_warnings, summary

    config = load_or_report(args.config)
    if config is None:
        return EXIT_INVALID_CONFIG
    for warning in config_warnings(config):
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    if args.load_model and not model_runs(config, args.config):
        return EXIT_FAILED
    print(summary(config, args.config))
    from gateway.calibration.choice import counting_lines

    for line in counting_lines(config):  # which counting model each camera will use, and from where
        print(line)
    return EXIT_OK


def model_runs(config, path: Path) -> bool:
    """Load the configured detector and run one inference (loading warms it up); say why not."""
    try:
        from detectors import create_detector

        create_detector(config.detector.settings()).close()
    except ImportError as error:
        print(f"{path}: detector: the {config.detector.backend} runtime cannot be imported ({error}); "
              "reinstall the gateway (systemd/install.sh) on a 64-bit system", file=sys.stderr)
        return False
    except Exception as error:  # noqa: BLE001 - DetectorError and whatever a broken runtime raises
        print(f"{path}: detector: {error}", file=sys.stderr)
        return False
    return True


def cmd_run(args: argparse.Namespace) -> int:
    import signal
    import threading
    from types import FrameType

    from detectors import DetectorError
    from gateway.config import config_warnings
    from gateway.runtime.service import GatewayService

    config = load_or_report(args.config)
    if config is None:
        return EXIT_INVALID_CONFIG
    stop, reload = threading.Event(), threading.Event()

    def on_stop(number: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(number).name)
        stop.set()

    def on_reload(_number: int, _frame: FrameType | None) -> None:
        log.info("SIGHUP received: reloading %s", args.config)
        reload.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop)
    signal.signal(signal.SIGHUP, on_reload)
    for warning in config_warnings(config):
        log.warning("%s: %s", args.config, warning)
    service = GatewayService(config)
    try:
        service.start()
    except (DetectorError, OSError, ValueError) as error:
        # A model that does not load, a data_dir that cannot be written, an API that may not be
        # served: one clear line for the journal, not a traceback (systemd retries the unit).
        log.error("cannot start: %s", error)
        service.stop()
        return EXIT_FAILED
    try:
        service.run_until(stop, reload=reload, config_path=args.config)
    finally:
        service.stop()
    log.info("stopped cleanly")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from detectors import DetectorError, create_detector
    from gateway.replay import replay
    from gateway.video.decode import VideoOpenError

    config = load_or_report(args.config)
    if config is None:
        return EXIT_INVALID_CONFIG
    try:
        config.camera(args.camera)
        detector = create_detector(config.detector.settings())
        stats = replay(config, args.camera, args.source, detector, counts_out=args.counts_out,
                       events_out=args.events_out, snapshots_dir=args.snapshots, clips_dir=args.clips,
                       start_at=args.start_at, fps=args.fps)
    except (KeyError, DetectorError, VideoOpenError) as error:
        print(f"gateway replay: {error.args[0] if isinstance(error, KeyError) else error}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"replay {args.source}: {stats.frames_analysed} of {stats.frames_decoded} frames analysed "
          f"in {stats.seconds:.1f} s ({stats.analysed_fps:.1f} fps); {stats.events_started} events, "
          f"{stats.alert_messages} alert messages" + (f", {stats.clips} clips in {args.clips}" if args.clips else ""))
    return EXIT_OK


def cmd_calibrate_count(args: argparse.Namespace) -> int:
    from detectors import DetectorError, create_detector
    from gateway.calibration.calibrate import CalibrationError, calibrate, describe
    from gateway.video.decode import VideoOpenError

    config = load_or_report(args.config, counting_models=False)
    if config is None:
        return EXIT_INVALID_CONFIG
    try:
        config.camera(args.camera)
        detector = create_detector(config.detector.settings())
        report = calibrate(config, args.camera, args.source, args.points, args.out, detector)
    except (KeyError, DetectorError, VideoOpenError, CalibrationError, OSError) as error:
        print(f"gateway calibrate count: {error.args[0] if isinstance(error, KeyError) else error}",
              file=sys.stderr)
        return EXIT_FAILED
    print(describe(report, args.camera, args.source, args.out))
    return EXIT_OK


def cmd_bench_detector(args: argparse.Namespace) -> int:
    return run_bench_script("bench_detector.py", args)


def run_bench_script(name: str, args: argparse.Namespace) -> int:
    """Run `bench/<name>`'s main(args): benchmarks live beside the package in a source checkout."""
    import runpy

    script = Path(__file__).resolve().parent.parent / "bench" / name
    if not script.exists():
        print(f"gateway bench: {script} not found: benchmarks run from a source checkout",
              file=sys.stderr)
        return EXIT_FAILED
    return runpy.run_path(str(script))["main"](args)
