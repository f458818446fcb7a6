"""How tests wait for something to happen: on the event itself, with generous patience.

A wait ends the moment its condition holds, so patience costs nothing when things work; it is
spent only when something is broken. It is generous because CI machines are small and loaded
(2 cores, other work beside the tests): a test that waits 5 s for a thread to be scheduled
fails one run in a hundred, and a flaky test blocks every landing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

PATIENCE_S = 30.0
"""How long to wait for something that should happen within a second on an idle machine."""


def wait_until(condition: Callable[[], Any], timeout: float = PATIENCE_S, what: str = "the condition",
               step: float = 0.02) -> Any:
    """Poll `condition` until it returns something truthy (returned); AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)
