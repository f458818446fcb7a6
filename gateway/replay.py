"""`gateway replay`: one camera's full analytics over a recorded file, as fast as the machine allows.

The file's own timestamps are the clock: analysis fps, rule timers (for_s, clear_s, cooldown)
and event times all follow video time, so a replay gives the same alerts however fast it runs.
Wall-clock fields in payloads are `start_at + video time`.

Outputs (JSON lines; the counts format is a contract other tools read, see DESIGN §3.1):
  counts-out: {"camera", "frame", "t", "persons", "detected", "estimated", "zones",
               "boxes": [[x1, y1, x2, y2, score, track_id]]}
  events-out: the alert payloads a live run would publish, one per line, in order.

A camera that counts with a model (`counting.mode` model or auto) has its counting background
warmed from the recording's first minutes before the replay starts, so the model counts from
the first frame (live, a camera's counter warms up on its first minutes instead).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import numpy as np

from detectors import Detector
from gateway.analytics import CameraAnalytics, FrameResult
from gateway.config.models import Camera, GatewayConfig, GatewaySection
from gateway.counting.files import camera_model, warmup_frames
from gateway.video.decode import DecodedFrame, decode_frames, frame_rate, open_video
from gateway.video.pacing import AnalysisPacer
from gateway.video.prefetch import prefetch

log = logging.getLogger(__name__)


@dataclass
class ReplayStats:
    frames_decoded: int = 0
    frames_analysed: int = 0
    alert_messages: int = 0
    events_started: int = 0
    seconds: float = 0.0

    @property
    def analysed_fps(self) -> float:
        return self.frames_analysed / self.seconds if self.seconds else 0.0


def counts_line(camera_id: str, frame_index: int, t: float, result: FrameResult) -> str:
    """One line of `--counts-out`: persons is the count the rules used (after masks), detected
    the people the detector sees (the boxes, source-frame pixels), estimated the counting
    model's estimate (null without one)."""
    boxes = [
        [round(float(x1), 1), round(float(y1), 1), round(float(x2), 1), round(float(y2), 1),
         round(float(score), 3), int(track)]
        for (x1, y1, x2, y2), score, track in zip(
            result.boxes.tolist(), result.scores.tolist(), result.track_ids.tolist())
    ]
    record = {"camera": camera_id, "frame": frame_index, "t": round(t, 3), "persons": result.persons,
              "detected": result.detected, "estimated": result.estimated, "zones": result.zone_counts,
              "boxes": boxes}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class AlertSink:
    """Where replay puts alert messages: a JSON-lines file and/or evidence JPEGs in a directory."""

    def __init__(self, events_out: IO[str] | None, snapshots_dir: Path | None):
        self.events_out = events_out
        self.snapshots_dir = snapshots_dir
        if snapshots_dir:
            snapshots_dir.mkdir(parents=True, exist_ok=True)

    def write(self, messages: list, frame_index: int, stats: ReplayStats) -> None:
        for message in messages:
            stats.alert_messages += 1
            stats.events_started += message.state == "start"
            payload = message.payload
            log.info("camera %s frame %d: %s %s (%s, seq %d)", payload["camera_id"], frame_index,
                     payload["title_zh"], message.state, message.event_id[:8], message.seq)
            if self.events_out:
                self.events_out.write(json.dumps(payload, ensure_ascii=False) + "\n")
            if self.snapshots_dir and message.snapshot_jpeg:
                name = (f"{payload['camera_id']}_{frame_index:06d}_{payload['type']}_"
                        f"{message.event_id[:8]}_{message.seq}.jpg")
                (self.snapshots_dir / name).write_bytes(message.snapshot_jpeg)


def replay(config: GatewayConfig, camera_id: str, source: Path, detector: Detector, *,
           counts_out: Path | None = None, events_out: Path | None = None,
           snapshots_dir: Path | None = None, start_at: datetime | None = None,
           fps: float | None = None) -> ReplayStats:
    """Analyse `source` as camera `camera_id` would be analysed live; write the outputs.

    `fps` overrides the camera's analysis rate (e.g. every frame while tuning thresholds).
    """
    camera = config.camera(camera_id)
    zone = ZoneInfo(config.gateway.timezone)
    start_at = (start_at or datetime.now(zone)).astimezone(zone)
    stats = ReplayStats()
    began = time.perf_counter()
    with ExitStack() as stack:
        container = stack.enter_context(open_video(source))
        counts = stack.enter_context(_open_text(counts_out)) if counts_out else None
        events = stack.enter_context(_open_text(events_out)) if events_out else None
        sink = AlertSink(events, snapshots_dir)
        source_fps = frame_rate(container)
        pacer = AnalysisPacer(fps or camera.fps, source_fps)
        analytics: CameraAnalytics | None = None
        t = 0.0
        for decoded, image in prefetch(_due_frames(container, pacer, stats), name="replay-decode"):
            t = decoded.t
            if analytics is None:
                analytics = _analytics(camera, config.gateway, (image.shape[1], image.shape[0]), source)
            masked = analytics.prepare(image)
            result = analytics.process(detector.detect(masked), t=t, now=start_at + timedelta(seconds=t),
                                       frame=masked, counting_image=masked)
            stats.frames_analysed += 1
            if counts:
                counts.write(counts_line(camera.id, decoded.index, t, result) + "\n")
            sink.write(result.events, decoded.index, stats)
        if analytics is not None:
            sink.write(analytics.close_all(t, start_at + timedelta(seconds=t)), stats.frames_decoded - 1,
                       stats)
    stats.seconds = time.perf_counter() - began
    return stats


def _analytics(camera: Camera, gateway: GatewaySection, frame_size: tuple[int, int], source: Path) -> CameraAnalytics:
    """The camera's analytics; with a counting model, its background warmed from `source`."""
    analytics = CameraAnalytics(camera, gateway, frame_size,
                                counting_model=camera_model(camera, gateway.data_dir, frame_size))
    counter = analytics.counter
    if counter is not None:
        settings = counter.extractor.background.settings
        counter.extractor.background.warm_from(
            warmup_frames(source, settings, lambda image: counter.extractor.working_gray(analytics.prepare(image))))
        log.info("camera %s: counting background warmed from the first %.0f s of %s", camera.id,
                 settings.warmup_s, source)
    return analytics


def _due_frames(container, pacer: AnalysisPacer, stats: ReplayStats) -> Iterator[tuple[DecodedFrame, np.ndarray]]:
    """Frames due for analysis, decoded and converted to BGR (runs ahead on its own thread)."""
    for decoded in decode_frames(container):
        stats.frames_decoded += 1
        if pacer.due(decoded.t):
            yield decoded, decoded.bgr()


def _open_text(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8", buffering=1 << 16)
