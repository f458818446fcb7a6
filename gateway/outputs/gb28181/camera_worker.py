"""`CameraWorker`: the one thread that carries out what a GB/T 28181 platform asks of cameras.

A PTZ command, a camera's preset list or its recordings can take seconds (an ONVIF round trip,
a camera that does not answer), so they never run on the SIP thread or under the device's lock:
the device returns a `CameraJob`, the transport submits it here, and the result goes back
through `done(job_id, result, error)`. One thread, jobs in the order they came: a platform's
"stop" is carried out after its "move". A bounded queue: past `MAX_JOBS` waiting, a job fails at
once (a flood of controls must not pile up minutes of head movements).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from gateway.outputs.gb28181.actions import CameraJob
from gateway.status import CameraControl, CameraControlError, RecordSource

log = logging.getLogger(__name__)

CAMERA_TIMEOUT_S = 5.0
"""What one camera job (a PTZ command, the presets, the recordings) may take."""
MAX_JOBS = 32

Done = Callable[[int, object, "str | None"], None]


class CameraWorker:
    """Runs `CameraJob`s through `control` and `records` (either may be None: the job fails
    with the reason, or RecordInfo gets an empty list) and reports each result to `done`."""

    def __init__(self, control: CameraControl | None, records: RecordSource | None, done: Done, *,
                 name: str, label: str) -> None:
        self._control, self._records, self._done = control, records, done
        self._label = label
        self._jobs: queue.Queue[CameraJob | None] = queue.Queue(maxsize=MAX_JOBS)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self) -> None:
        """Drop the jobs still waiting, finish the one running (bounded by its timeout)."""
        if not self._thread.is_alive():
            return
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        self._jobs.put(None)
        self._thread.join(timeout=CAMERA_TIMEOUT_S + 2)

    def submit(self, job: CameraJob) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self._done(job.job_id, None, f"{MAX_JOBS} camera commands are already waiting; try again")

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            result: object = None
            error: str | None = None
            try:
                result = self._carry_out(job)
            except CameraControlError as failure:
                error = str(failure)
            except Exception as failure:  # noqa: BLE001 - a job's bug must not kill the worker
                log.exception("%s: camera job %s for %s failed", self._label, job.kind, job.camera_id)
                error = f"{type(failure).__name__}: {failure}"
            self._done(job.job_id, result, error)

    def _carry_out(self, job: CameraJob) -> object:
        if job.kind == "records":
            if self._records is None:
                return []
            return self._records.clips(job.camera_id, job.start, job.end, timeout_s=CAMERA_TIMEOUT_S)
        if self._control is None:
            raise CameraControlError("camera control is not available on this gateway")
        if job.kind == "presets":
            return self._control.presets(job.camera_id, timeout_s=CAMERA_TIMEOUT_S)
        assert job.command is not None
        self._control.ptz(job.camera_id, job.command, timeout_s=CAMERA_TIMEOUT_S)
        return None
