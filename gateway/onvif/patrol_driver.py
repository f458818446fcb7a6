"""The patrol driver: moves a PTZ camera along its `PatrolPlan`, confirming every move.

Every visit:

1. GotoPreset to the stop's preset (named by token, name or number; see `ptz.find_preset`);
2. the move is *confirmed* before the stop's zones apply: by the camera's PTZ status where it
   reports one (MoveStatus IDLE and, where both are known, the position near the preset's), which
   also measures how long the move really took; else by waiting `patrol_move_s` after a
   GotoPreset that succeeded;
3. settle, watch, next stop (`PatrolPlan`, pure, in patrol.py).

Any failure on the way (refused credentials, a preset the camera does not have, a camera that
refuses GotoPreset or never gets there, a network error, even a bug) is logged with the camera
and the preset and retried with the gateway's backoff; nothing ends the patrol task. A patrol,
or one of its stops, that has not been reachable for `patrol_fault_after_s` says so in its
`status()` (`MoveFailures` keeps the time; the camera worker turns the fault into a
`patrol_fault` alert and logs it, since only it knows whether the alert is raised); if the task
does end anyway, `alive` turns False and the service stops feeding the systemd watchdog.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from gateway.backoff import Backoff
from gateway.onvif.patrol import (
    DEFAULT_FAULT_AFTER_S,
    DEFAULT_MOVE_S,
    DEFAULT_MOVE_TIMEOUT_S,
    FAILING,
    MOVING,
    STOPPED,
    MoveFailures,
    PatrolPlan,
    PatrolState,
)
from gateway.onvif.ptz import MoveNotConfirmed, PresetNotFound, PtzController, PtzPreset, reached
from gateway.onvif.session import OnvifError, OnvifProtocolError, OnvifSoapFault
from gateway.redaction import redact
from gateway.status import PatrolStatus

log = logging.getLogger("gateway.onvif.ptz")

STATUS_POLL_S = 0.5
"""How often a move is checked; the first check comes this long after GotoPreset, so that a
camera that still says IDLE before it starts moving is not taken at its word."""
PHASE_CHECK_S = 0.5
"""The driver re-reads the plan at least this often while it waits for a phase to end."""
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0
"""Backoff between failed move attempts."""
# --------------------------------------------------------------------------- the driver


def _describe_error(error: BaseException) -> str:
    if isinstance(error, OnvifError):
        return str(error)
    return f"{type(error).__name__}: {redact(str(error))[:200]}"


def _what_to_do(error: BaseException, state: PatrolState) -> str:
    """The operator's part in a failed move, when there is one."""
    if isinstance(error, PresetNotFound):
        return f"; fix patrol[{state.index}].preset (or add the preset on the camera)"
    return ""


class PatrolDriver:
    """Moves a camera along a `PatrolPlan` on the shared loop (see the module docstring).

    `state()` and `status()` are thread-safe: the analysis reads the first for every frame, the
    supervision and the API the second. `moves` lists (visit, preset token) of every GotoPreset
    sent, newest last (the last 256).
    """

    def __init__(self, camera_id: str, controller: PtzController, plan: PatrolPlan, *,
                 move_s: float = DEFAULT_MOVE_S, move_timeout_s: float = DEFAULT_MOVE_TIMEOUT_S,
                 fault_after_s: float = DEFAULT_FAULT_AFTER_S,
                 clock: Callable[[], float] = time.monotonic, backoff: Backoff | None = None,
                 status_poll_s: float = STATUS_POLL_S):
        self.camera_id = camera_id
        self.controller = controller
        self.plan = plan
        self.move_s = move_s
        self.move_timeout_s = move_timeout_s
        self.fault_after_s = fault_after_s
        self.clock = clock
        self.status_poll_s = status_poll_s
        self.moves: list[tuple[int, str]] = []
        self._backoff = backoff or Backoff(min_s=RETRY_MIN_S, max_s=RETRY_MAX_S)
        self._lock = threading.Lock()  # guards the plan and the counters below
        self._status_readable: bool | None = None
        self._failing = MoveFailures()
        self._confirmed = 0
        self._failures = 0
        self._last_move_s: float | None = None
        self._confirmed_by: str | None = None
        self._task: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- read from any thread

    def state(self) -> PatrolState:
        with self._lock:
            return self.plan.state_at(self.clock())

    @property
    def alive(self) -> bool:
        """The patrol task runs (False before `start`, after `stop` and if it ever died)."""
        return self._task is not None and not self._task.done()

    def status(self) -> PatrolStatus:
        now = self.clock()
        alive = self.alive
        with self._lock:
            state = self.plan.state_at(now)
            failing = self._failing.worst(now)
            if not alive:
                kind = STOPPED
            elif state.phase == MOVING and self._failing.failing(state.index):
                kind = FAILING
            else:
                kind = state.phase
            return PatrolStatus(
                state=kind, stop=state.index, preset=state.preset,
                fault=failing is not None and failing.for_s >= self.fault_after_s,
                moves=self._confirmed, move_failures=self._failures,
                failing_for_s=None if failing is None else round(max(0.0, failing.for_s), 1),
                last_move_s=None if self._last_move_s is None else round(self._last_move_s, 2),
                confirmed_by=self._confirmed_by, last_error=None if failing is None else failing.error,
                failing_stop=None if failing is None else failing.stop)

    def interrupt(self) -> None:
        """The camera was turned away from the plan (a sensor's preset): the view changes, analysis
        pauses, and when the current stop's time is over the patrol moves the camera back."""
        with self._lock:
            self.plan.turned_away(self.clock())

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.controller.loop.run(self._start(), timeout=5)

    async def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"patrol-{self.camera_id}")
            self._task.add_done_callback(self._finished)

    def stop(self, timeout: float = 5.0) -> None:
        if self.controller.loop.running:
            self.controller.loop.run(self._stop(timeout), timeout + 1)

    async def _stop(self, timeout: float) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=timeout)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """Should the task ever end other than by `stop`, say so now (not as 'Task exception was
        never retrieved' at shutdown), and count the patrol as failing from now on."""
        if task.cancelled():
            return
        error = task.exception()
        why = "patrol task ended" + (f": {_describe_error(error)}" if error else "")
        with self._lock:
            now = self.clock()
            self._failing.failed(self.plan.state_at(now).index, now, why)
        log.error("camera %s: PTZ patrol stopped (%s); the systemd watchdog restarts the gateway",
                  self.camera_id, why, exc_info=error)

    # ----------------------------------------------------------------- the loop

    async def run(self) -> None:
        while True:
            state = self.state()
            if state.phase == MOVING:
                error = await self._move(state)
                if error is not None:
                    await self._retry_later(state, error)
                continue
            now = self.clock()
            with self._lock:
                due = self.plan.due(now)
                if due:
                    self.plan.advance(now)
            if not due:
                await self._sleep_until(state.phase_ends_at if state.phase_ends_at is not None else now)

    async def _sleep_until(self, deadline: float) -> None:
        while (left := deadline - self.clock()) > 0:
            await asyncio.sleep(min(left, PHASE_CHECK_S))

    async def _move(self, state: PatrolState) -> Exception | None:
        """GotoPreset and confirm arrival; the error if either failed (every kind: none may end
        the patrol)."""
        try:
            target = await self.controller.aresolve(state.preset)
            sent_at = self.clock()
            await self.controller.agoto_preset(target)
            self.moves.append((state.visit, target.token))
            del self.moves[:-256]
            confirmed_by = await self._confirm(target, sent_at)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - logged and retried by the caller
            return error
        self._arrived(state, target, sent_at, confirmed_by)
        return None

    async def _confirm(self, target: PtzPreset, sent_at: float) -> str:
        """Wait until the camera is at `target`: "status" if it said so, "time" if it cannot."""
        if self._status_readable is not False:
            deadline = sent_at + self.move_timeout_s
            while True:
                await asyncio.sleep(self.status_poll_s)
                try:
                    status = await self.controller.astatus()
                    ranges = await self.controller.aranges()
                except (OnvifSoapFault, OnvifProtocolError) as error:
                    self._status_unreadable(error.detail)
                    break
                verdict = reached(status, target, ranges)
                if verdict is None:
                    self._status_unreadable("it reports neither MoveStatus nor Position")
                    break
                self._status_readable = True
                if verdict:
                    return "status"
                if self.clock() >= deadline:
                    raise MoveNotConfirmed(self.controller.endpoint, (
                        f"the camera did not reach preset {target.describe()} within "
                        f"{self.move_timeout_s:g} s (it reports: {status.describe()})"))
        await self._sleep_until(sent_at + self.move_s)
        return "time"

    def _status_unreadable(self, why: str) -> None:
        if self._status_readable is None:
            log.info("camera %s: no usable PTZ status (%s); a move counts as done %g s "
                     "(patrol_move_s) after GotoPreset", self.camera_id, why, self.move_s)
        self._status_readable = False

    def _arrived(self, state: PatrolState, target: PtzPreset, sent_at: float, confirmed_by: str) -> None:
        now = self.clock()
        with self._lock:
            if self.plan.state_at(now).visit != state.visit:
                return  # turned away for a linked sensor meanwhile: that view holds
            self.plan.arrived(now, target.token, target.name)
            failing_since = self._failing.reached(state.index)
            self._confirmed += 1
            self._last_move_s, self._confirmed_by = now - sent_at, confirmed_by
            self._backoff.reset()
        if failing_since is not None:
            log.info("camera %s: PTZ patrol moving again: at patrol[%d] (preset %s) after %.0f s of "
                     "failed moves", self.camera_id, state.index, target.describe(), now - failing_since)
        else:
            log.debug("camera %s: patrol[%d] at preset %s after %.1f s (%s)", self.camera_id,
                      state.index, target.describe(), now - sent_at, confirmed_by)

    async def _retry_later(self, state: PatrolState, error: Exception) -> None:
        """Log the failure, wait out the backoff, and give the stop up if its time is over."""
        delay = self._backoff.next_delay()
        described = _describe_error(error)
        with self._lock:
            self._failures += 1
            self._failing.failed(state.index, self.clock(), described)
        log.warning("camera %s: patrol[%d] (preset %s): cannot move the camera: %s%s; retrying in %.1f s "
                    "(no analysis until it gets there)", self.camera_id, state.index, state.preset,
                    described, _what_to_do(error, state), delay,
                    exc_info=None if isinstance(error, OnvifError) else error)
        await asyncio.sleep(delay)
        now = self.clock()
        with self._lock:
            give_up = self.plan.state_at(now).visit == state.visit and self.plan.due(now)
            following = self.plan.advance(now) if give_up else None
        if following is not None:
            log.info("camera %s: patrol[%d] (preset %s) skipped this round; next: patrol[%d] (preset %s)",
                     self.camera_id, state.index, state.preset, following.index, following.preset)
