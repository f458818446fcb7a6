"""The `gateway:` section (who this gateway is, where it keeps its data) and `storage:` (how much)."""

from __future__ import annotations

import difflib
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, field_validator

from gateway.config.base import Ident, OneLine, StrictModel


class GatewaySection(StrictModel):
    id: Ident = Field(description="Unique gateway id; used in MQTT topics and the client id.")
    name: OneLine = ""
    township: OneLine = ""
    timezone: str = "Asia/Shanghai"
    data_dir: Path = Path("/var/lib/gateway")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use an IANA name such as Asia/Shanghai"
            raise ValueError(f"unknown time zone {value!r} ({hint})") from None
        return value


class StorageSection(StrictModel):
    outbox_max_mb: float = Field(default=200, gt=0, description="Cap of each output's outbox file.")
    snapshot_max_mb: float = Field(default=500, gt=0)
    snapshot_retention_days: float = Field(default=30, gt=0)
    clips_max_mb: float = Field(default=1024, gt=0, description="Size of the evidence clip folder; the "
                                "oldest clips are deleted first (the alerts stay).")
    hold_max_mb: float = Field(default=16, gt=0, description="Alerts kept in memory per output while the "
                               "data disk cannot take them (full); the newest are kept.")
