"""Clips cut from a recording (`gateway replay --clips DIR`): the clip a live camera would have
recorded for each event, remuxed from the file's own packets.

Live, a camera's clips come from its packet ring as the packets arrive (clips.py). A replay has
the whole file instead, so each event's clip is cut from it after the analysis, in two quick
passes over the packets (no decoding): one to find the keyframes, one to write every clip at
once. The rules are the live ones: from the last keyframe at or before start - pre_s, until
end + post_s, never more than max_s after the start. Times are the file's own (seconds from its
first packet), as the replay's clock is.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

from gateway.evidence.clips import ClipPolicy
from gateway.evidence.mp4 import Mp4ClipWriter
from gateway.video.decode import open_video, stream_info
from gateway.video.packets import EncodedPacket


@dataclass(frozen=True)
class ClipRequest:
    """An event of the replay: when it started and ended, in seconds of the file."""

    event_id: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ReplayClip:
    """The outcome for one event: the file written (None when it failed), the span it covers in
    seconds of the file, and why it failed."""

    event_id: str
    status: str
    file: Path | None = None
    from_s: float | None = None
    to_s: float | None = None
    reason: str | None = None


def cut_clips(source: Path, requests: list[ClipRequest], policy: ClipPolicy, folder: Path) -> list[ReplayClip]:
    """Write `<folder>/<event_id>.mp4` for every request; one outcome per request, in order."""
    if not requests:
        return []
    with open_video(source) as container:
        info = stream_info(container)
    if not info.remuxable:
        reason = (f"{source.name} holds {info.codec} video, which cannot be remuxed into an MP4 clip (no "
                  "re-encoding is done): use an H.264 or H.265 recording")
        return [ReplayClip(request.event_id, "failed", reason=reason) for request in requests]
    folder.mkdir(parents=True, exist_ok=True)
    keyframes = _keyframe_times(source)
    windows = {}
    for request in requests:
        wanted = request.start_s - policy.pre_s
        first = keyframes[max(0, bisect.bisect_right(keyframes, wanted) - 1)] if keyframes else 0.0
        windows[request.event_id] = (first, min(request.end_s + policy.post_s, request.start_s + policy.max_s))
    writers = _write(source, folder, windows)
    return [_outcome(request, writers.get(request.event_id), windows[request.event_id][1], folder)
            for request in requests]


def _keyframe_times(source: Path) -> list[float]:
    with open_video(source) as container:
        info, stream = stream_info(container), container.streams.video[0]
        origin = stream.start_time or 0
        return sorted(float((packet.pts - origin) * info.time_base) for packet in container.demux(stream)
                      if packet.is_keyframe and packet.pts is not None)


def _write(source: Path, folder: Path, windows: dict[str, tuple[float, float]]) -> dict[str, Mp4ClipWriter]:
    writers: dict[str, Mp4ClipWriter] = {}
    done: set[str] = set()
    with open_video(source) as container:
        info, stream = stream_info(container), container.streams.video[0]
        origin = stream.start_time or 0
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            t = float((packet.pts - origin) * info.time_base)
            encoded: EncodedPacket | None = None
            for event_id, (first, last) in windows.items():
                if event_id in done or t < first:
                    continue
                if t > last:
                    done.add(event_id)
                    continue
                encoded = encoded or EncodedPacket(bytes(packet), packet.pts, packet.dts, packet.is_keyframe, t, info)
                if event_id not in writers:
                    writers[event_id] = Mp4ClipWriter(folder / f"{event_id}.mp4", info)
                writers[event_id].write(encoded)
            if len(done) == len(windows):
                break
    for writer in writers.values():
        writer.close()
    return writers


def _outcome(request: ClipRequest, writer: Mp4ClipWriter | None, planned_end: float, folder: Path) -> ReplayClip:
    if writer is None or not writer.packets:
        return ReplayClip(request.event_id, "failed", reason="no video in the file for this event's time")
    last = writer.last_received_at or 0.0
    frame = 1 / (writer.stream.fps or 25.0)
    short = last + 1.5 * frame < planned_end
    return ReplayClip(request.event_id, "partial" if short else "ready", folder / f"{request.event_id}.mp4",
                      writer.first_received_at, last,
                      "the recording ends before the clip's planned end" if short else None)
