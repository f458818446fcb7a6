"""`outputs:` — where alerts go. Every output gets every alert, from its own outbox.

    outputs:
      - type: mqtt                      # the township centre's broker (same keys as `mqtt:`)
        host: 10.20.0.5
      - type: webhook                   # a case system that takes HTTP
        id: cases
        url: https://cases.example.cn/api/gateway-alerts
        secret: ${WEBHOOK_SECRET}       # X-Signature: sha256=<HMAC-SHA256 of the body>
      - type: gb28181                   # the centre's GB/T 28181 video platform (gateway.config.gb28181)
        ...

Compatibility: a file with only the top-level `mqtt:` section (or neither section) keeps working:
that section is the first output. With both, `mqtt:` comes first and `outputs:` must not name a
second MQTT output (there is one MQTT connection: it also carries presence, acks and case
progress). With `outputs:` and no `mqtt:` section, only the listed outputs are used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from gateway.config.base import IDENT_PATTERN, LocatedValueError, Secret, StrictModel
from gateway.config.gb28181 import Gb28181Output
from gateway.config.mqtt import MqttSection


class MqttOutput(MqttSection):
    """The MQTT output: the keys of the top-level `mqtt:` section plus `type: mqtt`."""

    type: Literal["mqtt"]

    @property
    def sink_name(self) -> str:
        return "mqtt"


class WebhookOutput(StrictModel):
    """POST every alert (gw.alert/1 JSON) to `url`; 2xx means delivered, anything else is retried."""

    type: Literal["webhook"]
    id: str = Field(default="webhook", pattern=IDENT_PATTERN,
                    description="Names this output in logs, health and metrics ('webhook:<id>').")
    url: str = Field(description="http:// or https:// URL the alerts are POSTed to.")
    secret: Secret | None = Field(default=None, description="HMAC-SHA256 key for the X-Signature "
                                     "header; write it as ${ENV}.")
    token: Secret | None = Field(default=None, description="Sent as 'Authorization: Bearer <token>'; "
                                    "write it as ${ENV}.")
    snapshots: Literal["inline", "omit"] = Field(default="inline", description="inline: the evidence JPEG "
                                                 "as base64 in the payload; omit: snapshot is null.")
    timeout_s: float = Field(default=10, gt=0, le=300, description="Per request (connect, send, answer).")
    verify_tls: bool = Field(default=True, description="Check the server's certificate (https).")
    ca_file: Path | None = Field(default=None, description="CA bundle for a private CA; default the system's.")
    retry_min_s: float = Field(default=1, gt=0, le=3600, description="First wait after a failed delivery.")
    retry_max_s: float = Field(default=60, gt=0, le=3600, description="Longest wait between retries.")
    outbox_max_mb: float | None = Field(default=None, gt=0, description="Default storage.outbox_max_mb.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if any(ch in value for ch in "\r\n\t "):
            raise ValueError("must not contain spaces or line breaks")
        return value

    @field_validator("ca_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @property
    def sink_name(self) -> str:
        return f"webhook:{self.id}"


# --------------------------------------------------------------------------- the list

Output = Annotated[MqttOutput | WebhookOutput | Gb28181Output, Field(discriminator="type")]


def resolve_outputs(mqtt: MqttSection, mqtt_given: bool, outputs: list[Output]) -> list[Output]:
    """The outputs in use, in order: the top-level `mqtt:` first when given (or when nothing is)."""
    if outputs and not mqtt_given:
        return list(outputs)
    return [MqttOutput(type="mqtt", **mqtt.model_dump()), *outputs]


def output_problems(mqtt_given: bool, outputs: list[Output], camera_ids: set[str],
                    sensor_ids: set[str] | frozenset[str] = frozenset()) -> Iterator[LocatedValueError]:
    """One MQTT output at most, unique output names, GB/T 28181 channels of known cameras and sensors."""
    first_mqtt = "mqtt" if mqtt_given else None
    names: dict[str, int] = {}
    for index, output in enumerate(outputs):
        where = f"outputs[{index}]"
        if isinstance(output, MqttOutput):
            if first_mqtt is not None:
                yield LocatedValueError(f"{where}.type", f"a second MQTT output (the first is {first_mqtt}); "
                                        "the gateway keeps one MQTT connection: move the top-level mqtt: "
                                        "section into outputs: or drop one")
            first_mqtt = first_mqtt or where
            continue
        name = output.sink_name
        if name in names:
            yield LocatedValueError(f"{where}.id", f"duplicate output {name!r} (first at outputs[{names[name]}]); "
                                    "give each output of a type its own id")
        names.setdefault(name, index)
        if isinstance(output, Gb28181Output):
            for problem in output.channel_problems(camera_ids, sensor_ids):
                yield LocatedValueError(f"{where}.{problem.subpath}", problem.message)
