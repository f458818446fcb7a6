"""Which frames to analyse: decimation by video time, so analysis fps is independent of source fps."""

from __future__ import annotations


class AnalysisPacer:
    """Says yes to one frame per 1/fps seconds of video time.

    The schedule advances from the due time, not from the accepted frame's time, so a 10 fps
    source analysed at 3 fps gets 3 frames every second rather than drifting to 2.5; a jump
    in time (reconnect, seek) resets it instead of causing a burst of catch-up frames.
    Half a source frame of slack absorbs timestamp jitter (10 fps analysed at 10 fps keeps all).
    """

    def __init__(self, fps: float, source_fps: float | None = None):
        if fps <= 0:
            raise ValueError(f"analysis fps must be positive, got {fps}")
        self.interval = 1.0 / fps
        self.slack = 0.5 / source_fps if source_fps else 0.01
        self._next_due: float | None = None

    def due(self, t: float) -> bool:
        if self._next_due is None or t < self._next_due - self.interval or \
                t > self._next_due + 2 * self.interval:
            self._next_due = t + self.interval
            return True
        if t + self.slack >= self._next_due:
            self._next_due += self.interval
            return True
        return False
