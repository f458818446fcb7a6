"""One shape for everything that owns a thread or an asyncio task, so supervision sees them all.

Camera readers, the analysis scheduler, the outputs' delivery threads, the sensor brokers' input
threads, the shared ONVIF loop, each camera's PTZ patrol and ONVIF event listener: each starts,
stops and says whether it is alive. Their owners name them (the owner knows the camera or the
output), and the service's supervision walks one list: a worker that dies stops the systemd
watchdog and turns `/healthz` to failing, whichever kind it is — nothing stops silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable


@runtime_checkable
class Worker(Protocol):
    """Something that owns a thread or a task. `alive` is False before `start`, after `stop`
    and after it died; `stop` may take a timeout but needs none."""

    def start(self) -> object: ...

    def stop(self) -> object: ...

    @property
    def alive(self) -> bool: ...


Workers = Mapping[str, Worker]
"""Workers by the name an operator reads in the log: "camera gate-3: reader thread"."""


def dead(workers: Workers) -> list[str]:
    """'<name> is dead' for every worker that is not alive, in the order given."""
    return [f"{name} is dead" for name, worker in workers.items() if not worker.alive]
