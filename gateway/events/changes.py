"""When an open event's count has changed enough to send an update: relative to the count, and
only once the change has lasted.

A fixed `min_change` of 2 people means something at 5 people and nothing at 40, where a
counting model's estimate moves by that much between two frames of the same crowd: one crowd
event on a live page sent 83 updates in 78 s. `ChangeGate` sends an update when the count has
moved from the last count sent by the rule's threshold, `max(min_change, min_change_share *
that count)`, and has stayed at least half that far away (hysteresis) for `settle_s` without a
break. A count that wobbles around its last sent value never gets there; a crowd that grows by
a fifth is reported `settle_s` after it did.

Pure: the caller passes each count with its time (seconds, monotonic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeRule:
    min_change: int = 2
    min_change_share: float = 0.0
    settle_s: float = 0.0

    def threshold(self, sent: int) -> float:
        """How far from the count last sent a count must move to be worth an update."""
        return max(float(self.min_change), self.min_change_share * abs(sent))


class ChangeGate:
    """Decides, frame by frame, whether the count moved meaningfully since the last update."""

    def __init__(self, rule: ChangeRule):
        self.rule = rule
        self.sent = 0
        self._away_since: float | None = None

    def reset(self, sent: int) -> None:
        """A message carrying `sent` went out: changes are measured from it now."""
        self.sent = sent
        self._away_since = None

    def moved(self, count: int, t: float) -> bool:
        """True when `count` (at time `t`) is a meaningful change from the count last sent."""
        threshold = self.rule.threshold(self.sent)
        distance = abs(count - self.sent)
        if self._away_since is None:
            if distance < threshold:
                return False
            self._away_since = t
        elif distance < math.ceil(threshold / 2):
            self._away_since = None  # back near the count sent: it was noise
            return False
        return distance >= threshold and t - self._away_since >= self.rule.settle_s
