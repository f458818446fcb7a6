"""Shared parts of the delivery tests: real alerts, a gateway config with outputs, the router.

* Alerts: `gateway.events.OpenEvent` lifecycles with a real evidence JPEG (the first frame of
  ../shared/data/vtest.avi), schema-valid, exactly what the analysis thread hands the router.
* `delivery_config`: a `GatewayConfig` (validated like a YAML file would be) with MQTT and/or
  webhook outputs; `make_router` builds the real outputs (`build_outputs`), history and router.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from conftest import VTEST
from gateway.config.models import GatewayConfig
from gateway.delivery.diskwatch import DiskFullWatch
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import CaseLedger
from gateway.delivery.router import AlertRouter
from gateway.events import (
    AlertMessage,
    AlertSource,
    AlertSubject,
    Evidence,
    OpenEvent,
    Reading,
    UpdatePolicy,
    take_snapshot,
)
from gateway.outputs.registry import build_outputs

TZ = ZoneInfo("Asia/Shanghai")
GATEWAY_ID = "gw-delivery"
SOURCE = AlertSource(GATEWAY_ID, "gate", "东门广场", "DM-03", "东门街道人民路 18 号", 30.27, 120.15, (768, 576))


@functools.cache
def frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(VTEST))
    try:
        ok, image = capture.read()
    finally:
        capture.release()
    assert ok, f"cannot read a frame of {VTEST}"
    return image


def snapshot():
    boxes = np.array([[100, 200, 140, 300], [300, 250, 340, 360]], np.float32)
    evidence = Evidence(boxes, np.array([1, 2]), np.ones(2, bool))
    return take_snapshot(frame(), evidence, datetime.now(TZ))


def start_alert(index: int, *, picture: bool = False, zone: str = "plaza",
                source: AlertSource = SOURCE) -> tuple[OpenEvent, AlertMessage]:
    """A new crowd event (severity 3) and its start message (count = 3 + index)."""
    subject = AlertSubject("crowd", 3, "广场中心", zone, "广场中心", f"crowd-{zone}", {"type": "crowd", "min_people": 3})
    event = OpenEvent(source, subject, UpdatePolicy(min_change=1, every_s=60), datetime.now(TZ))
    members = [{"track_id": 1, "box": [100.0, 200.0, 140.0, 300.0], "score": 0.9}]
    message = event.start(Reading(3 + index, members), float(index), datetime.now(TZ),
                          snapshot if picture else (lambda: None))
    return event, message


def alerts(count: int, *, picture: bool = False) -> list[AlertMessage]:
    """`count` start messages of distinct events."""
    return [start_alert(index, picture=picture)[1] for index in range(count)]


def delivery_config(data_dir: Path, *, mqtt_port: int | None = None, webhook_url: str | None = None,
                    storage: dict[str, Any] | None = None, gateway_id: str = GATEWAY_ID,
                    more_outputs: list[dict[str, Any]] = (), cameras: list[dict[str, Any]] = (),
                    **webhook: Any) -> GatewayConfig:
    """A validated config: MQTT (when `mqtt_port`) first, then a webhook (when `webhook_url`),
    then `more_outputs` as written in YAML."""
    outputs: list[dict[str, Any]] = []
    if mqtt_port is not None:
        outputs.append({"type": "mqtt", "host": "127.0.0.1", "port": mqtt_port, "keepalive_s": 5, "heartbeat_s": 1})
    if webhook_url is not None:
        outputs.append({"type": "webhook", "id": "cases", "url": webhook_url, "timeout_s": 2,
                        "retry_min_s": 0.2, "retry_max_s": 2, **webhook})
    return GatewayConfig.model_validate({
        "gateway": {"id": gateway_id, "name": "东门网关", "timezone": "Asia/Shanghai", "data_dir": str(data_dir)},
        "detector": {"model": str(data_dir / "unused.onnx")},
        "outputs": [*outputs, *more_outputs],
        "cameras": list(cameras),
        "storage": storage or {},
    })


def make_router(config: GatewayConfig, *, disk_clear_s: float = 10.0, view: Any = None) -> AlertRouter:
    """The real history, case ledger, outputs and router of `config` (started), as the service
    builds them; `view`: the live view the outputs read (None: no cameras). The caller stops it."""
    history = EventHistory.from_config(config.gateway.data_dir, config.storage)
    ledger = CaseLedger(config.gateway.data_dir, history=history, timezone=TZ)
    outputs = build_outputs(config, view=view, ledger=ledger)
    router = AlertRouter(outputs, history, gateway_id=config.gateway.id, ledger=ledger,
                         disk_watch=DiskFullWatch(config.gateway, disk_clear_s), timezone=TZ,
                         data_dir=config.gateway.data_dir)
    router.start()
    return router


def sink(router: AlertRouter, name: str):
    return next(s for s in router.sinks if s.name == name)
