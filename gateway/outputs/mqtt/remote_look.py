"""Remote look: a fresh picture of a camera for the centre (`cmd/snapshot` -> a reply topic).

The request is checked by the inbound handlers (inbound.py: camera known, rate limit, reply topic
allowed); the picture is taken here, on a thread of its own, because encoding a JPEG must not
stall the connection's thread. At most two requests wait; more are refused as busy. Replies go
back to the connection through `Replies`, a small locked queue it drains when a slot is free.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from typing import Any

from gateway.outputs.mqtt.inbound import CentreInbound, Reply
from gateway.outputs.mqtt.messages import SnapshotRequest
from gateway.status import GatewayView


def json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


class Replies:
    """Replies waiting to be published (the newest 16; an older one is dropped, not the connection)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: deque[tuple[str, bytes]] = deque(maxlen=16)

    def add(self, reply: Reply) -> None:
        with self._lock:
            self._waiting.append((reply.topic, json_bytes(reply.payload)))

    def take(self) -> tuple[str, bytes] | None:
        with self._lock:
            return self._waiting.popleft() if self._waiting else None


class RemoteLook:
    """The snapshot worker: takes pictures for checked requests, answers through `replies`."""

    def __init__(self, inbound: CentreInbound, view: GatewayView | None, replies: Replies,
                 wake: Any = lambda: None) -> None:
        self.inbound, self.view, self.replies, self._wake = inbound, view, replies, wake
        self._jobs: queue.Queue[SnapshotRequest | None] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-snapshots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(1.0)

    def take(self, request: SnapshotRequest) -> None:
        """Queue a checked request; refused as busy when two are already waiting."""
        try:
            self._jobs.put_nowait(request)
        except queue.Full:
            for reply in self.inbound.refuse_busy(request):
                assert isinstance(reply, Reply)
                self._answer(reply)

    def _run(self) -> None:
        while True:
            request = self._jobs.get()
            if request is None:
                return
            try:
                jpeg = self.view.camera_snapshot(request.camera_id) if self.view is not None else None
                reply = self.inbound.snapshot_answer(request, jpeg, time.time())
            except Exception as exc:  # noqa: BLE001 - the requester gets an error reply, the thread lives on
                reply = self.inbound.snapshot_failed(request, exc)
            self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        self.replies.add(reply)
        self._wake()
