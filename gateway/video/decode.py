"""Timestamped frames out of anything FFmpeg reads (files and RTSP), through PyAV.

One place decides how a stream is decoded: every frame, or keyframes only (the decoder then
skips the P/B frames without decoding them, which is most of the CPU on a camera stream).
Frames are converted to BGR arrays only when the caller asks: a decimating caller pays
nothing for the frames it drops.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from av.container.streams import StreamContainer
from av.video.stream import VideoStream

from gateway.video.packets import StreamInfo


class VideoOpenError(Exception):
    """The source could not be opened or holds no video stream (message names the source)."""


@dataclass(slots=True)
class DecodedFrame:
    """One decoded picture: its 0-based index in decode order, its time and the PyAV frame."""

    index: int
    t: float
    keyframe: bool
    frame: av.VideoFrame

    def bgr(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The picture as an H x W x 3 BGR uint8 array (converted on demand); with `size` (w, h)
        scaled in the same pass (one swscale call from YUV: cheaper than converting the full
        picture and resizing it)."""
        if size is None or size == (self.frame.width, self.frame.height):
            return self.frame.to_ndarray(format="bgr24")
        return self.frame.reformat(width=size[0], height=size[1], format="bgr24",
                                   interpolation="BILINEAR").to_ndarray()


class DecodableContainer(Protocol):
    """What `decode_frames` and `frame_rate` use of a container: its streams and the frames of
    one stream (a PyAV InputContainer, or the camera reader's packet-by-packet wrapper)."""

    @property
    def streams(self) -> StreamContainer: ...

    def decode(self, stream: VideoStream, /) -> Iterator[av.VideoFrame]: ...


def open_video(source: str | Path, options: dict[str, str] | None = None,
               timeout: float | tuple[float, float] | None = None,
               display_name: str | None = None) -> av.container.InputContainer:
    """Open `source` for reading; raise VideoOpenError naming it (use a redacted display name)."""
    name = display_name or str(source)
    try:
        container = av.open(str(source), mode="r", options=options or {}, timeout=timeout)
    except (av.FFmpegError, OSError) as error:
        raise VideoOpenError(f"{name}: cannot open: {error}") from error
    if not container.streams.video:
        container.close()
        raise VideoOpenError(f"{name}: no video stream in the source")
    return container


def frame_rate(container: DecodableContainer) -> float | None:
    """The video stream's nominal frame rate, if the container declares one."""
    rate = container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
    return float(rate) if rate else None


def stream_info(container: DecodableContainer) -> StreamInfo:
    """The video stream as a muxer needs it (codec, size, time base, codec configuration, fps):
    built once per connection and shared by all of its encoded packets."""
    stream = container.streams.video[0]
    context = stream.codec_context
    return StreamInfo(
        codec=context.codec.canonical_name, width=context.width, height=context.height,
        time_base=stream.time_base or Fraction(1, 90000), extradata=context.extradata,
        fps=frame_rate(container),
    )


def decode_frames(container: DecodableContainer,
                  keyframes_only: bool = False) -> Iterator[DecodedFrame]:
    """Decode the first video stream; `t` is the presentation time from the stream start.

    Streams without timestamps (some AVI and raw H.264) fall back to index / frame rate.
    Ends when the stream ends: for a live source that means it went away.
    """
    stream = container.streams.video[0]
    codec = stream.codec_context
    codec.skip_frame = "NONKEY" if keyframes_only else "DEFAULT"
    time_base: Fraction | None = stream.time_base
    start_pts = stream.start_time or 0
    fps = frame_rate(container) or 25.0
    for index, frame in enumerate(container.decode(stream)):
        if frame.pts is not None and time_base is not None:
            t = float((frame.pts - start_pts) * time_base)
        else:
            t = index / fps
        yield DecodedFrame(index, t, bool(frame.key_frame), frame)
