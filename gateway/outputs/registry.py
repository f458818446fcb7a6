"""The configured outputs (`GatewayConfig.delivery_outputs`) as sinks, each with its own outbox.

Outbox files live in the data directory, one per output, named after the output so a reordered
`outputs:` list never hands one output's queue to another:

    outbox.sqlite3                 the MQTT output (the same file as before outputs existed, so
                                   alerts queued before an upgrade are still delivered)
    outbox-webhook-<id>.sqlite3    a webhook output
    outbox-gb28181-<id>.sqlite3    a GB/T 28181 output
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.backoff import Backoff
from gateway.config.models import GatewayConfig
from gateway.config.outputs import Gb28181Output, MqttOutput, Output, WebhookOutput
from gateway.delivery.durable import DurableSink
from gateway.delivery.outbox import DB_NAME, MiB, Outbox
from gateway.delivery.router import Output as RoutedOutput
from gateway.delivery.sink import AlertSink
from gateway.outputs.gb28181 import Gb28181Transport
from gateway.outputs.mqtt.sink import AckListener, CaseListener, HealthProvider, MqttSink, SnapshotProvider
from gateway.outputs.webhook import WebhookTransport, omit_snapshot
from gateway.status import CameraControl, RecordSource


class OutputError(ValueError):
    """An output that cannot be built from its settings (the message names it)."""


def outbox_path(data_dir: Path, output: Output) -> Path:
    if isinstance(output, MqttOutput):
        return data_dir / DB_NAME
    return data_dir / f"outbox-{output.type}-{output.id}.sqlite3"


def build_outputs(
    config: GatewayConfig,
    *,
    health_provider: HealthProvider | None = None,
    snapshot_provider: SnapshotProvider | None = None,
    camera_known: Callable[[str], bool] | None = None,
    camera_online: Callable[[str], bool] | None = None,
    on_ack: AckListener | None = None,
    on_case: CaseListener | None = None,
    control: CameraControl | None = None,
    records: RecordSource | None = None,
) -> list[RoutedOutput]:
    """One sink and outbox per configured output, in order; nothing is started yet.

    The callbacks go to the MQTT output: the heartbeat's health, remote-look pictures (and which
    camera ids exist), and the centre's acks and case progress; `camera_online` to GB/T 28181
    outputs (the catalogue's channel status), with `control` (the platform's PTZ and preset
    queries) and `records` (its RecordInfo queries).
    """
    storage, gateway = config.storage, config.gateway
    built: list[RoutedOutput] = []
    for output in config.delivery_outputs:
        cap_mb = getattr(output, "outbox_max_mb", None) or storage.outbox_max_mb
        outbox = Outbox(outbox_path(gateway.data_dir, output), int(cap_mb * MiB),
                        hold_max_bytes=int(storage.hold_max_mb * MiB))
        sink: AlertSink
        if isinstance(output, MqttOutput):
            sink = MqttSink(output, gateway.id, outbox, health_provider=health_provider,
                            snapshot_provider=snapshot_provider, camera_known=camera_known, on_ack=on_ack,
                            on_case=on_case)
        elif isinstance(output, WebhookOutput):
            sink = DurableSink(
                output.sink_name, outbox, WebhookTransport(output, gateway.id),
                backoff=Backoff(output.retry_min_s, max(output.retry_min_s, output.retry_max_s)),
                timeout_s=output.timeout_s, prepare=omit_snapshot if output.snapshots == "omit" else None,
            )
        elif isinstance(output, Gb28181Output):
            transport = Gb28181Transport(output, cameras=config.cameras, timezone=gateway.timezone,
                                         gateway_name=gateway.name, camera_online=camera_online,
                                         sensors=config.sensors, control=control, records=records)
            sink = DurableSink(output.sink_name, outbox, transport,
                               backoff=Backoff(1.0, max(1.0, output.retry_max_s)), timeout_s=output.answer_timeout_s)
        else:  # pragma: no cover - the config union has no other member
            raise OutputError(f"unknown output type {type(output).__name__}")
        built.append(RoutedOutput(sink, outbox))
    return built
