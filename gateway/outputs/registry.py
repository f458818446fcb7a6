"""The configured outputs (`GatewayConfig.delivery_outputs`) as sinks, each with its own outbox.

Every output module registers how it is built from its configuration section (`@output`), so
adding an output touches its own module and its config section only (plus the one line in
`gateway/outputs/__init__.py` that imports it, and its member of the config's `Output` union).
What an output may use of the running gateway is one `OutputContext`: its outbox, the live view
(health, pictures, which cameras are up), camera control (PTZ, presets), the case ledger, the
recordings (evidence clips, for GB/T 28181 RecordInfo and playback) and the cameras' encoded
video (GB/T 28181 live video).

Outbox files live in the data directory, one per output, named after the output so a reordered
`outputs:` list never hands one output's queue to another:

    outbox.sqlite3                 the MQTT output (the same file as before outputs existed, so
                                   alerts queued before an upgrade are still delivered)
    outbox-webhook-<id>.sqlite3    a webhook output
    outbox-gb28181-<id>.sqlite3    a GB/T 28181 output
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.config.models import GatewayConfig
from gateway.config.outputs import MqttOutput, Output
from gateway.delivery.ledger import AckAnnouncer, CaseLedger
from gateway.delivery.outbox import DB_NAME, MiB, Outbox
from gateway.delivery.router import Output as RoutedOutput
from gateway.delivery.sink import AlertSink
from gateway.status import CameraControl, GatewayView, RecordSource, VideoSource


class OutputError(ValueError):
    """An output that cannot be built from its settings (the message names it)."""


@dataclass(frozen=True)
class OutputContext:
    """What an output is given of the running gateway when it is built."""

    config: GatewayConfig
    outbox: Outbox
    view: GatewayView | None = None
    control: CameraControl | None = None
    ledger: CaseLedger | None = None
    records: RecordSource | None = None
    video: VideoSource | None = None


S = TypeVar("S")
Builder = Callable[[Any, OutputContext], AlertSink]
_BUILDERS: dict[type, Builder] = {}


def output(settings_type: type[S]) -> Callable[[Callable[[S, OutputContext], AlertSink]], Builder]:
    """Register the builder of the output configured by `settings_type` (its config section)."""

    def register(build: Callable[[S, OutputContext], AlertSink]) -> Builder:
        _BUILDERS[settings_type] = build
        return build

    return register


def outbox_path(data_dir: Path, settings: Output) -> Path:
    if isinstance(settings, MqttOutput):
        return data_dir / DB_NAME
    return data_dir / f"outbox-{settings.type}-{settings.id}.sqlite3"


def build_outputs(config: GatewayConfig, *, view: GatewayView | None = None, control: CameraControl | None = None,
                  ledger: CaseLedger | None = None, records: RecordSource | None = None,
                  video: VideoSource | None = None) -> list[RoutedOutput]:
    """One sink and outbox per configured output, in order; nothing is started yet. Outputs that
    tell the centre about page acknowledgements (MQTT) are announced to the ledger."""
    storage, gateway = config.storage, config.gateway
    built: list[RoutedOutput] = []
    for settings in config.delivery_outputs:
        build = _BUILDERS.get(type(settings))
        if build is None:
            raise OutputError(f"no output is registered for {type(settings).__name__} (type {settings.type!r}): "
                              "is its module imported in gateway/outputs/__init__.py?")
        cap_mb = getattr(settings, "outbox_max_mb", None) or storage.outbox_max_mb
        outbox = Outbox(outbox_path(gateway.data_dir, settings), int(cap_mb * MiB),
                        hold_max_bytes=int(storage.hold_max_mb * MiB))
        sink = build(settings, OutputContext(config, outbox, view, control, ledger, records, video))
        if ledger is not None and isinstance(sink, AckAnnouncer):
            ledger.add_announcer(sink)
        built.append(RoutedOutput(sink, outbox))
    return built
