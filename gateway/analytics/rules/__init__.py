"""Rule evaluation: per-frame conditions, timed by one shared state machine (timing.Debounce)."""

from gateway.analytics.rules.engine import RuleEngine, Signal
from gateway.analytics.rules.scene import Observation, Scene
from gateway.analytics.rules.timing import Debounce, Schedule, Timing, Transition

__all__ = ["Debounce", "Observation", "RuleEngine", "Scene", "Schedule", "Signal", "Timing", "Transition"]
