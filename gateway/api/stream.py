"""The live event stream (server-sent events) of the page: every new or changed alert, pushed.

`StreamHub` is told by the event history (on whatever thread records an alert) and wakes every
open stream on the server's event loop; each stream then reads the changes since the last one
it sent, so a slow client never holds back another and a reconnecting one resumes with
`Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import anyio
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from gateway.delivery.history import EventHistory
from gateway.events.record import EventRecord

SSE_HEARTBEAT_S = 15.0
SSE_MAX_CLIENTS = 64


class StreamHub:
    """Wakes every open event stream when the history changes (listener runs on any thread)."""

    def __init__(self) -> None:
        self.clients: set[asyncio.Event] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self._unsubscribe: Callable[[], None] | None = None

    def bind(self, history: EventHistory) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            self._unsubscribe = history.subscribe(self._on_change)

    def _on_change(self, _record: EventRecord, _kind: str) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake_all)
        except RuntimeError:
            pass  # the loop is shutting down

    def _wake_all(self) -> None:
        for event in list(self.clients):
            event.set()

    def close(self) -> None:
        """End every stream (server shutdown): must run on the event loop."""
        self.closing = True
        self._wake_all()

    def unbind(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.loop = None


class EventStreamResponse(StreamingResponse):
    """A streaming response that always watches for the client going away, then stops."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with anyio.create_task_group() as group:

            async def run(func: Callable[[], Any]) -> None:
                try:
                    await func()
                except OSError:
                    pass
                group.cancel_scope.cancel()

            group.start_soon(run, partial(self.stream_response, send))
            await run(partial(self.listen_for_disconnect, receive))


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


async def event_stream(hub: StreamHub, history: EventHistory, event_out: Callable[[EventRecord], Any],
                       start: int, heartbeat_s: float) -> AsyncIterator[str]:
    """`hello`, then every change after revision `start` as `alert` (id = rev), keep-alive
    comments while nothing happens; ends when the server closes the hub."""

    def read(after: int) -> list[tuple[int, dict[str, Any]]]:
        return [(r.rev, event_out(r).model_dump()) for r in history.changes_since(after, 100)]

    wake = asyncio.Event()
    hub.clients.add(wake)
    last = start
    try:
        yield "retry: 2000\n\n" + sse("hello", {"rev": history.rev, "after": last})
        if history.rev > last:
            wake.set()
        while not hub.closing:
            try:
                await asyncio.wait_for(wake.wait(), timeout=heartbeat_s)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            wake.clear()
            if hub.closing:
                break
            changes = await run_in_threadpool(read, last)
            if len(changes) == 100:
                wake.set()  # more to send: go round again at once
            if changes:
                last = max(last, changes[-1][0])
                yield "".join(sse("alert", body, rev) for rev, body in changes)
    finally:
        hub.clients.discard(wake)
