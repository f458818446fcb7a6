"""The `mqtt:` section: the township centre's broker that alerts are published to."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.config.base import OneLine, Secret, StrictModel


class MqttTls(StrictModel):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(default=False, description="Skip hostname verification (testing only).")


class MqttSection(StrictModel):
    host: OneLine = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: OneLine | None = None
    password: Secret | None = None
    tls: MqttTls | None = None
    client_id: OneLine | None = Field(default=None, description="Default: gw-<gateway id>.")
    prefix: str = Field(default="gw", pattern=r"^[^#+]+$")
    qos: Literal[0, 1] = 1
    heartbeat_s: float = Field(default=30, gt=0)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    counts_every_s: float = Field(
        default=5, ge=0.5, le=3600, description="Live counts (retained, cameras/<id>/counts) go out when they change, "
                                                "at most this often per camera.")
