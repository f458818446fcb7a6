"""Rolling put -> delivered latency of one output, for its health, the heartbeat and /metrics."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class LatencyWindow:
    """The last `size` latencies (seconds); `summary()` in milliseconds."""

    samples: deque = field(default_factory=lambda: deque(maxlen=1000))

    def add(self, value: float) -> None:
        self.samples.append(value)

    def summary(self) -> dict[str, float | int | None]:
        values = sorted(self.samples)
        if not values:
            return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
        pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)  # noqa: E731
        return {"n": len(values), "p50_ms": pick(0.5), "p95_ms": pick(0.95), "max_ms": round(values[-1] * 1000, 1)}
