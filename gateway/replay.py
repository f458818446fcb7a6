"""`gateway replay`: one camera's full analytics over a recorded file, as fast as the machine allows.

The file's own timestamps are the clock: analysis fps, rule timers (for_s, clear_s, cooldown)
and event times all follow video time, so a replay gives the same alerts however fast it runs.
Wall-clock fields in payloads are `start_at + video time`.

Outputs (JSON lines; the counts format is a contract other tools read, see DESIGN §3.1):
  counts-out: {"camera", "frame", "t", "persons", "detected", "estimated", "zones",
               "boxes": [[x1, y1, x2, y2, score, track_id]]}
  events-out: the alert payloads a live run would publish, one per line, in order.
  clips: `<DIR>/<event_id>.mp4`, each event's clip cut from the recording as a live camera would
         record it (gateway.evidence.recording); every payload then carries `evidence.clip` with
         its `file` (the events are written once the clips are, at the end).

Unless the camera tiles or counts with a model, frames are converted straight to the detector's
input size in the decoding thread (one swscale pass from YUV), and the full-size picture is built
only for the frames whose alerts carry a snapshot: no full-size conversion, resize or mask copy
on the analysis thread (`gateway bench detector` measures what the path still adds).

A camera that counts with a model (`counting.mode` model or auto) counts from the first frame:
its counting background starts from the empty scene the model was fitted against, checked
against the recording's first minutes (and replaced by the scene learnt from them if the camera
no longer sees it), or, for a model without a scene, is learnt from those minutes before the
replay starts. A replay never reads the background a live camera keeps in data_dir: the same
recording and model always give the same counts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import numpy as np

from detectors import Detections, Detector
from detectors.preprocess import fit
from detectors.tiling import detect_tiled
from gateway.analytics import CameraAnalytics, FrameResult
from gateway.calibration.choice import camera_model
from gateway.calibration.files import warmup_frames
from gateway.camera.tiling import camera_tile_plan, log_plan
from gateway.config.models import Camera, GatewayConfig, GatewaySection
from gateway.events.record import parse_time
from gateway.events.timestamps import iso
from gateway.evidence.alerts import WITHOUT_VIDEO
from gateway.evidence.clips import ClipPolicy
from gateway.evidence.recording import ClipRequest, cut_clips
from gateway.video.decode import DecodedFrame, VideoOpenError, decode_frames, frame_rate, open_video
from gateway.video.pacing import AnalysisPacer
from gateway.video.prefetch import prefetch

log = logging.getLogger(__name__)


@dataclass
class ReplayStats:
    frames_decoded: int = 0
    frames_analysed: int = 0
    alert_messages: int = 0
    events_started: int = 0
    clips: int = 0
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
            result.boxes.tolist(), result.scores.tolist(), result.track_ids.tolist(), strict=True)
    ]
    record = {"camera": camera_id, "frame": frame_index, "t": round(t, 3), "persons": result.persons,
              "detected": result.detected, "estimated": result.estimated, "zones": result.zone_counts,
              "boxes": boxes}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class AlertSink:
    """Where replay puts alert messages: a JSON-lines file and/or evidence JPEGs in a directory;
    with `hold`, the payloads wait for `flush` (their clips are cut after the replay)."""

    def __init__(self, events_out: IO[str] | None, snapshots_dir: Path | None, hold: bool = False):
        self.events_out = events_out
        self.snapshots_dir = snapshots_dir
        self.held: list[dict] | None = [] if hold else None
        if snapshots_dir:
            snapshots_dir.mkdir(parents=True, exist_ok=True)

    def flush(self, clips: dict[str, dict]) -> None:
        """Write the held payloads, each with its event's clip (`evidence.clip`)."""
        for payload in self.held or []:
            clip = clips.get(payload["event_id"])
            if clip is not None:
                payload = {**payload, "evidence": {"clip": clip}}
            if self.events_out:
                self.events_out.write(json.dumps(payload, ensure_ascii=False) + "\n")

    def write(self, messages: list, frame_index: int, stats: ReplayStats) -> None:
        for message in messages:
            stats.alert_messages += 1
            stats.events_started += message.state == "start"
            payload = message.payload
            log.info("camera %s frame %d: %s %s (%s, seq %d)", payload["camera_id"], frame_index,
                     payload["title_zh"], message.state, message.event_id[:8], message.seq)
            if self.held is not None:
                self.held.append(payload)
            elif self.events_out:
                self.events_out.write(json.dumps(payload, ensure_ascii=False) + "\n")
            if self.snapshots_dir and message.snapshot_jpeg:
                name = (f"{payload['camera_id']}_{frame_index:06d}_{payload['type']}_"
                        f"{message.event_id[:8]}_{message.seq}.jpg")
                (self.snapshots_dir / name).write_bytes(message.snapshot_jpeg)


def replay(config: GatewayConfig, camera_id: str, source: Path, detector: Detector, *,
           counts_out: Path | None = None, events_out: Path | None = None,
           snapshots_dir: Path | None = None, clips_dir: Path | None = None, start_at: datetime | None = None,
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
        sink = AlertSink(events, snapshots_dir, hold=clips_dir is not None)
        source_fps = frame_rate(container)
        pacer = AnalysisPacer(fps or camera.fps, source_fps)
        size = _video_size(container, source)
        analytics = _analytics(camera, config.gateway, size, source)
        planned = camera_tile_plan(camera, analytics, detector.input_size)
        log_plan(camera.id, planned)
        plan = planned.plan
        shrink = _detector_size(size, detector.input_size) if plan is None and analytics.counter is None else None
        t = 0.0
        for decoded, image in prefetch(_due_frames(container, pacer, stats, shrink), name="replay-decode"):
            t = decoded.t
            now = start_at + timedelta(seconds=t)
            if shrink is None:
                masked = analytics.prepare(image)
                result = analytics.process(detect_tiled(detector, masked, plan), t=t, now=now,
                                           frame=masked, counting_image=masked)
            else:
                found = _to_frame(detector.detect(analytics.prepare_scaled(image)), size, shrink)
                result = analytics.process(found, t=t, now=now, frame=_full_frame(analytics, decoded))
            stats.frames_analysed += 1
            if counts:
                counts.write(counts_line(camera.id, decoded.index, t, result) + "\n")
            sink.write(result.events, decoded.index, stats)
        sink.write(analytics.close_all(t, start_at + timedelta(seconds=t)), stats.frames_decoded - 1, stats)
        if clips_dir is not None:
            sink.flush(_replay_clips(camera, source, sink.held or [], clips_dir, start_at, zone, stats))
    stats.seconds = time.perf_counter() - began
    return stats


def _replay_clips(camera: Camera, source: Path, payloads: list[dict], folder: Path, start_at: datetime,
                  zone: ZoneInfo, stats: ReplayStats) -> dict[str, dict]:
    """Each event's clip cut from the recording; `evidence.clip` of its payloads, by event id."""
    spans: dict[str, list[float]] = {}
    for payload in payloads:
        if payload.get("type") in WITHOUT_VIDEO:
            continue
        seconds = [(parse_time(payload.get(key)) or start_at.timestamp()) - start_at.timestamp()
                   for key in ("started_at", "ended_at" if payload.get("ended_at") else "updated_at")]
        spans.setdefault(payload["event_id"], seconds)[1] = seconds[1]
    settings = camera.clips
    policy = ClipPolicy(pre_s=settings.pre_s, post_s=settings.post_s, max_s=settings.max_s)
    requests = [ClipRequest(event_id, start, end) for event_id, (start, end) in spans.items()]
    clips = {}
    for clip in cut_clips(source, requests, policy, folder):
        def when(seconds: float | None) -> str | None:
            return None if seconds is None else iso((start_at + timedelta(seconds=seconds)).astimezone(zone))
        entry = {"status": clip.status, "url": None, "from": when(clip.from_s), "to": when(clip.to_s)}
        if clip.file is not None:
            entry["file"] = str(clip.file)
            stats.clips += 1
        if clip.reason:
            entry["reason"] = clip.reason
        clips[clip.event_id] = entry
    return clips


def _analytics(camera: Camera, gateway: GatewaySection, frame_size: tuple[int, int], source: Path) -> CameraAnalytics:
    """The camera's analytics; with a counting model, its background warmed from `source`."""
    model, choice = camera_model(camera, gateway.data_dir, frame_size)
    analytics = CameraAnalytics(camera, gateway, frame_size, counting_model=model, counting_mode=choice.mode)
    counter = analytics.counter
    if counter is None:
        return analytics
    background = counter.extractor.background
    settings = background.settings
    frames = warmup_frames(source, settings, lambda image: counter.extractor.working_gray(analytics.prepare(image)))
    if not background.ready:
        background.warm_from(frames)
        log.info("camera %s: counting background warmed from the first %.0f s of %s", camera.id,
                 settings.warmup_s, source)
        return analytics
    check = background.check_with(frames)
    if check.replaced:
        log.warning("camera %s: the recording no longer shows the empty scene of the counting model (%.0f %% of the "
                    "picture differs); counting against the scene learnt from its first %.0f s", camera.id,
                    100 * check.mismatch, settings.warmup_s)
    else:
        log.info("camera %s: counting from the empty scene of the counting model (%.1f %% of the picture unconfirmed "
                 "by the first %.0f s of %s)", camera.id, 100 * check.mismatch, settings.warmup_s, source)
    return analytics


def _due_frames(container, pacer: AnalysisPacer, stats: ReplayStats,
                shrink: tuple[int, int] | None) -> Iterator[tuple[DecodedFrame, np.ndarray]]:
    """Frames due for analysis, decoded and converted to BGR — at `shrink` (the detector's input
    size) when given — on their own thread, running ahead of the analysis."""
    for decoded in decode_frames(container):
        stats.frames_decoded += 1
        if pacer.due(decoded.t):
            yield decoded, decoded.bgr(shrink)


def _video_size(container, source: Path) -> tuple[int, int]:
    """(w, h) of the video stream, known from its header before the first frame."""
    codec = container.streams.video[0].codec_context
    if not codec.width or not codec.height:
        raise VideoOpenError(f"{source}: the video stream does not declare its picture size")
    return int(codec.width), int(codec.height)


def _detector_size(size: tuple[int, int], input_size: tuple[int, int]) -> tuple[int, int]:
    """The size the detector shrinks a `size` frame to (its letterbox's resize step)."""
    _transform, width, height = fit(size[0], size[1], input_size, centred=False)
    return width, height


def _to_frame(found: Detections, size: tuple[int, int], shrunk: tuple[int, int]) -> Detections:
    """Boxes found on the shrunk picture, in frame pixels."""
    boxes = found.boxes * np.array([size[0] / shrunk[0], size[1] / shrunk[1]] * 2, np.float32)
    return Detections(boxes, found.scores, found.class_ids)


def _full_frame(analytics: CameraAnalytics, decoded: DecodedFrame) -> Callable[[], np.ndarray]:
    """The full-size masked picture, built only if an alert of this frame carries a snapshot."""
    return lambda: analytics.prepare(decoded.bgr())


def _open_text(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8", buffering=1 << 16)
