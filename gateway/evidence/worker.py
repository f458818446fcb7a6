"""The gateway's one clip writer thread: every camera's clips are written here.

Not the camera's reader thread (it must never wait on a disk), not the analysis scheduler
(a slow SD card would delay every camera's analysis): one thread for all cameras is enough,
because remuxing costs next to nothing; what it waits on is the disk. It sleeps until a ring
subscription says packets arrived (`wake`), waits a moment so packets are written in small
batches rather than one wake-up per packet per camera, and pumps every camera's recorder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway.evidence.clips import ClipRecorder
from gateway.evidence.store import ClipInfo

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.5
"""With nothing arriving, clips are still checked this often (a stalled camera, a planned end)."""
BATCH_S = 0.05
"""After a wake-up, wait this long so one pump writes a few packets of each camera."""


class ClipWorker:
    """Runs `pump` of every registered recorder on one thread; a `Worker` for supervision.

    on_finished(info) is called on this thread for each clip that finished (the integrator
    updates the event's history and the alert's `evidence.clip` from it); it must not block.
    `stop()` ends every clip still recording as partial ("the gateway stopped").
    """

    def __init__(self, on_finished: Callable[[ClipInfo], None] | None = None,
                 idle_poll_s: float = IDLE_POLL_S, batch_s: float = BATCH_S):
        self.on_finished = on_finished
        self.idle_poll_s, self.batch_s = idle_poll_s, batch_s
        self.wake = threading.Event()
        """Give this to each `ClipRecorder` (wake=...): its subscriptions set it."""
        self._recorders: tuple[ClipRecorder, ...] = ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, recorder: ClipRecorder) -> None:
        with self._lock:
            self._recorders = (*self._recorders, recorder)

    def remove(self, recorder: ClipRecorder) -> None:
        """Stop pumping a camera's recorder (close it first: its clips end as partial)."""
        with self._lock:
            self._recorders = tuple(r for r in self._recorders if r is not recorder)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the clip writer is already started")
        self._thread = threading.Thread(target=self._run, name="clip-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """End the thread, then every clip still recording (partial). False if the thread is
        still inside a write after `timeout` (a hung disk); it is a daemon."""
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("clip writer still inside a disk write after %.0f s; its clips stay "
                            "'recording' until the next start marks them partial", timeout)
                return False
        for recorder in self._recorders:
            self._report(self._guarded(recorder, lambda r: r.close("the gateway stopped")))
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(self.idle_poll_s)
            if self._stop.wait(self.batch_s):
                break
            self.wake.clear()
            for recorder in self._recorders:
                self._report(self._guarded(recorder, lambda r: r.pump()))

    def _guarded(self, recorder: ClipRecorder, step: Callable[[ClipRecorder], list[ClipInfo]]) -> list[ClipInfo]:
        try:
            return step(recorder)
        except Exception:  # noqa: BLE001 - one camera's clip trouble must not stop the others' clips
            log.exception("camera %s: writing its clips failed; its other clips and other cameras go on",
                          recorder.camera_id)
            return []

    def _report(self, finished: list[ClipInfo]) -> None:
        if self.on_finished is None:
            return
        for info in finished:
            try:
                self.on_finished(info)
            except Exception:  # noqa: BLE001 - a listener's failure must not stop the clip writer
                log.exception("clip of event %s: the finished-clip listener failed", info.event_id)
