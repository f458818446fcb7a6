"""Run an iterator a few items ahead on its own thread.

Replay decodes and converts the next frames (about 2 ms each) while the detector works on this
one: on a multi-core box that work then costs no wall time. The queue is short, so memory stays
bounded; an exception in the producer is re-raised in the consumer; a consumer that stops early
(error, Ctrl-C) releases the producer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterator[T], depth: int = 3, name: str = "prefetch") -> Iterator[T]:
    slots: queue.Queue = queue.Queue(maxsize=depth)
    abandoned = threading.Event()

    def put(item: object) -> bool:
        while not abandoned.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer to raise
            put(_Failed(error))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        abandoned.set()
        thread.join(timeout=1)
