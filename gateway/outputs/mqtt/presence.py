"""The gateway's presence at the centre's broker: the retained `status` (online with the whole
health, or offline as Last Will and on a clean stop), and each camera's retained messages: its
state (health) and its live counts (gateway.events.counts).

Those are set from the supervisor's thread and published by the connection's thread, so they
live here behind a lock: the latest message per topic, and which ones the broker has not seen
yet (all of them again after a reconnect). Live counts are offered every second and taken only
when they changed, at most every `counts_every_s` per camera (`gateway.events.counts.CountsThrottle`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from gateway.events.counts import CountsThrottle
from gateway.outputs.mqtt.messages import iso_now
from gateway.status import GatewayView

log = logging.getLogger("gateway.outputs.mqtt")


class RetainedStates:
    """The latest retained message of every topic, and which ones are still to publish."""

    def __init__(self, counts_every_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._counts = CountsThrottle(counts_every_s)

    def set(self, topic: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._states[topic] = payload
            self._dirty.add(topic)

    def offer_counts(self, topic: str, payload: dict[str, Any], now: float) -> bool:
        """Take a camera's live counts if they are due (changed, and the interval passed)."""
        with self._lock:
            if not self._counts.due(topic, payload, now):
                return False
            self._states[topic] = payload
            self._dirty.add(topic)
            return True

    def unsent(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(topic, self._states[topic]) for topic in self._dirty]

    def sent(self, topic: str, payload: dict[str, Any]) -> None:
        """`payload` reached the broker (unless a newer one was set meanwhile)."""
        with self._lock:
            if self._states.get(topic) is payload:
                self._dirty.discard(topic)

    def resend_all(self) -> None:
        """A new connection: the broker may have lost what it had."""
        with self._lock:
            self._dirty.update(self._states)


def online_status(gateway_id: str, started: float, view: GatewayView | None,
                  connection: dict[str, Any]) -> dict[str, Any]:
    """The retained `status` while connected: who, since when, the gateway's whole health (every
    camera, the detector, every output, the disk), and this connection's own figures."""
    status: dict[str, Any] = {"state": "online", "gateway_id": gateway_id, "at": iso_now(time.time()),
                              "uptime_s": round(time.monotonic() - started, 1)}
    if view is not None:
        try:
            status.update({k: v for k, v in view.health().items() if k not in ("state", "gateway_id")})
        except Exception as exc:  # noqa: BLE001 - the heartbeat must go out even if health fails
            log.warning("the gateway's health could not be read (%s); heartbeat sent without camera/detector "
                        "health", exc)
    status["outbox_depth"] = connection["outbox_depth"]
    status["oldest_undelivered_age_s"] = connection["oldest_undelivered_age_s"]
    status["mqtt"] = {k: connection[k] for k in ("protocol", "published", "resent", "reconnects", "evictions",
                                                  "publish_latency")}
    return status


def offline_status(gateway_id: str, reason: str) -> bytes:
    """The retained `status` when the gateway is gone (Last Will) or stops."""
    return json.dumps({"state": "offline", "gateway_id": gateway_id, "reason": reason}).encode()
