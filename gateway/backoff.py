"""Capped exponential backoff with jitter: how every reconnecting part of the gateway waits.

Cameras, the MQTT publisher and ONVIF subscriptions all retry the same way. Jitter spreads the
retries, so a hundred cameras behind one rebooted NVR, or many gateways after a centre outage,
do not all knock again in the same second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay n is min(max_s, min_s * factor^n), minus up to `jitter` of it: in [0.75, 1] x base
    by default. `failures` counts the delays handed out since the last `reset()`."""

    min_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0
    jitter: float = 0.25
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def __post_init__(self) -> None:
        if self.min_s <= 0 or self.max_s < self.min_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {self.min_s}, {self.max_s}")

    def next_delay(self) -> float:
        base = min(self.max_s, self.min_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.failures = 0
