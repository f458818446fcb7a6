"""What to do when a camera's frames fail to analyse: say it once, then turn its health to failing.

A frame that raises is skipped and the next one tried, so one bad frame costs one frame. A cause
that does not go away (a bug meeting this camera's data) fails every frame, several a second;
logging each would bury the journal, logging none would leave a camera that analyses nothing
looking healthy. So, per camera (pure logic; the clock is passed in):

- each kind of failure (exception type and the line it came from; its text may vary with the
  data) is logged once, with its traceback, then reminded every `remind_s` with how many more
  frames it cost;
- `failing_after` frames failed in a row turn the camera failing: its health says so (the
  heartbeat, its retained MQTT state, /healthz), until a frame is analysed again.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from gateway.redaction import redact

FAILING_AFTER = 5
"""Frames failed in a row before the camera's health says failing (about 2 s at 2 fps)."""
REMIND_S = 300.0
MAX_KINDS = 32
MAX_ERROR_CHARS = 200


@dataclass(frozen=True)
class FailureStep:
    """What one failed frame calls for."""

    kind: str
    """The exception type and where it was raised (`ValueError at counter.py:102`)."""
    error: str
    """The exception in one line, credentials masked."""
    log: bool
    """Write a line: the first failure of its kind, or a reminder."""
    repeats: int
    """Failures of this kind since its last line (not counting this one)."""
    consecutive: int
    failing_now: bool
    """This failure turned the camera failing."""


def failure_kind(error: BaseException) -> str:
    """`Type at file:line` of the innermost frame the exception passed through."""
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ is not None else []
    if not frames:
        return type(error).__name__
    last = frames[-1]
    return f"{type(error).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


def one_line(error: BaseException) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return redact(text)[:MAX_ERROR_CHARS]


class AnalysisFailures:
    """One camera's failed frames (see the module docstring)."""

    def __init__(self, failing_after: int = FAILING_AFTER, remind_s: float = REMIND_S) -> None:
        self.failing_after = failing_after
        self.remind_s = remind_s
        self.consecutive = 0
        self.failing = False
        self.last_error: str | None = None
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (last line at, failures since)

    def failed(self, error: BaseException, now: float) -> FailureStep:
        kind = failure_kind(error)
        self.consecutive += 1
        self.last_error = one_line(error)
        entry = self._kinds.get(kind)
        if entry is not None and now - entry[0] < self.remind_s:
            self._kinds[kind] = (entry[0], entry[1] + 1)
            log, repeats = False, 0
        else:
            log, repeats = True, entry[1] if entry is not None else 0
            self._remember(kind, now)
        failing_now = not self.failing and self.consecutive >= self.failing_after
        self.failing = self.failing or failing_now
        return FailureStep(kind, self.last_error, log, repeats, self.consecutive, failing_now)

    def succeeded(self) -> int:
        """A frame was analysed: returns how many frames had failed in a row before it (0: none)."""
        ended, self.consecutive, self.failing = self.consecutive, 0, False
        return ended

    def _remember(self, kind: str, now: float) -> None:
        self._kinds[kind] = (now, 0)
        if len(self._kinds) > MAX_KINDS:  # the kind logged longest ago goes
            del self._kinds[min(self._kinds, key=lambda k: self._kinds[k][0])]
