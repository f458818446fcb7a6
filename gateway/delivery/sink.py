"""The two shapes every output of the gateway takes.

`AlertSink` is what the router sees: one configured output (MQTT, a webhook, a GB/T 28181
platform) that accepts alerts durably and delivers them on its own thread. `submit` returns once
the alerts are safe in that output's own outbox, so one output's outage never blocks or loses
another's alerts.

`Transport` is the small part that differs between outputs that deliver one alert at a time
(webhook, GB/T 28181): it sends one payload and says whether the far end took it. A durable sink
wraps a transport with its outbox, the retry loop and the backoff, so that logic exists once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


class DeliveryFailed(Exception):
    """The output did not take the alert (refused, timed out, not registered): retry later.

    The message is for the operator's log: what the far end said, never a credential.
    """


@runtime_checkable
class AlertSink(Protocol):
    """One configured output, as the router and the supervisor see it."""

    name: str
    """Stable, unique among outputs: 'mqtt', 'webhook:<id>', 'gb28181:<id>' (logs, health, metrics)."""

    def start(self) -> None:
        """Start delivering in the background; returns at once (a far end that is down never blocks)."""
        ...

    def stop(self) -> None:
        """Deliver what can be delivered within a short grace time, then stop; the rest stays queued."""
        ...

    @property
    def alive(self) -> bool:
        """Its delivery thread runs (what the systemd watchdog and /healthz check)."""
        ...

    def health(self) -> dict[str, Any]:
        """State for the heartbeat, /healthz and /metrics: connected, queued, delivered, last error."""
        ...

    def submit(self, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """Queue alert payloads durably (returns once they are on disk, with their outbox row ids),
        then wake the sender."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Sends single alerts to one far end; a durable sink owns its outbox, retries and backoff."""

    name: str

    def open(self) -> None:
        """Start any background machinery (e.g. SIP registration); must not block."""
        ...

    def close(self) -> None:
        ...

    @property
    def alive(self) -> bool:
        """Its own background threads (if any) run."""
        ...

    def deliver(self, payload: dict[str, Any], timeout_s: float) -> None:
        """Send one alert payload; return when the far end took it, raise DeliveryFailed if not."""
        ...

    def health(self) -> dict[str, Any]:
        ...
