"""The one timestamp format of the alert contract."""

from __future__ import annotations

from datetime import datetime


def iso(moment: datetime) -> str:
    """ISO-8601 with offset, to the millisecond (enough to measure alert latency)."""
    if moment.tzinfo is None:
        raise ValueError("alert timestamps must be timezone-aware")
    return moment.isoformat(timespec="milliseconds")
