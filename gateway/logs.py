"""Logging set-up: readable lines for a terminal, JSON lines for journald (`--log-format json`).

Every line passes through a filter that masks credentials in URLs (`rtsp://user:***@host`),
so a library that logs a URL it was given cannot leak a camera password.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

from gateway.redaction import redact


def human_duration(seconds: float) -> str:
    """A span for a log line an operator reads: "45 s", "12 min", "6.0 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `camera` is a field of its own when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        camera = getattr(record, "camera", None)
        if camera:
            entry["camera"] = camera
        if record.exc_info:
            entry["exc"] = record.exc_text or redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


MAX_QUOTED_CHARS = 120
"""What a log line (or an error shown in health) may quote of data that came from the network."""


def clip(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with its full length said: never a payload."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def quoted(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """repr(value), clipped: for an inbound value in an error message."""
    return clip(repr(value), limit)


class LogLimiter:
    """At most `burst` lines per source per `window_s`; the rest are counted, and the next line
    that gets through says how many were held back. Used where the network decides how often we
    log (sensors, acks, refused requests): a flood must not flood the journal.

    `kind` names the SOURCE of the lines (a sensor, a broker, a topic and what went wrong on
    it), never their text: a payload whose error differs every time is still one source. Text
    arguments are clipped (`clip`), so a line never carries more than a short prefix of a
    payload. The clock is passed in, so the policy is testable without waiting."""

    def __init__(self, burst: int = 5, window_s: float = 60.0) -> None:
        self.burst = burst
        self.window_s = window_s
        self._windows: dict[str, tuple[float, int, int]] = {}  # kind -> (window start, logged, held back)
        self._lock = threading.Lock()

    def allow(self, kind: str, now: float) -> tuple[bool, int]:
        """(log this line?, lines held back since the last one that was logged)."""
        with self._lock:
            start, logged, held = self._windows.get(kind, (now, 0, 0))
            if now - start >= self.window_s:
                start, logged = now, 0
            if logged < self.burst:
                self._windows[kind] = (start, logged + 1, 0)
                return True, held
            self._windows[kind] = (start, logged, held + 1)
            if len(self._windows) > 256:  # sources are configured ones, but keep the map bounded anyway
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < self.window_s}
            return False, held + 1

    def log(self, logger: logging.Logger, level: int, kind: str, message: str, *args: object,
            now: float | None = None, exc_info: BaseException | None = None) -> bool:
        """Log unless `kind` used up its lines in this window; True if logged."""
        allowed, held = self.allow(kind, time.monotonic() if now is None else now)
        if allowed:
            suffix = f" ({held} more like it held back in the last {self.window_s:.0f} s)" if held else ""
            shown = tuple(clip(str(arg)) if isinstance(arg, str | BaseException) else arg for arg in args)
            logger.log(level, message + suffix, *shown, exc_info=exc_info)
        return allowed
