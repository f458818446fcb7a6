"""PTZ presets, PTZ status and the patrol driver that moves the camera along a `PatrolPlan`.

One file because it is one PTZ conversation with a camera: the patrol driver confirms each move
through the controller's GetStatus and the preset and status parsing (`find_preset`, `reached`);
the patrol plan itself is in patrol.py.

`PtzController` keeps one session per camera open on the shared `OnvifLoop`: it lists presets,
sends GotoPreset and reads GetStatus. `PatrolDriver` runs the patrol on that loop. Every visit:

1. GotoPreset to the stop's preset (named by token, name or number; see `find_preset`);
2. the move is *confirmed* before the stop's zones apply: by the camera's PTZ status where it
   reports one (MoveStatus IDLE and, where both are known, the position near the preset's), which
   also measures how long the move really took; else by waiting `patrol_move_s` after a
   GotoPreset that succeeded;
3. settle, watch, next stop (`PatrolPlan`).

Any failure on the way (refused credentials, a camera that refuses GotoPreset or never gets
there, a network error, even a bug) is logged with the camera and the preset and retried with
the gateway's backoff; nothing ends the patrol task. A patrol that has not been able to move for
`patrol_fault_after_s` says so in its `status()` (the camera worker turns that into a
`patrol_fault` alert); if the task does end anyway, `alive` turns False and the service stops
feeding the systemd watchdog.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.backoff import Backoff
from gateway.onvif.device import (
    DEFAULT_TIMEOUT_S,
    OnvifError,
    OnvifLoop,
    OnvifNotAuthorized,
    OnvifNotSupported,
    OnvifProtocolError,
    OnvifSession,
    OnvifSoapFault,
    _endpoint,
    _settings,
    choose_profile,
    parse_profiles,
)
from gateway.onvif.patrol import (
    DEFAULT_FAULT_AFTER_S,
    DEFAULT_MOVE_S,
    DEFAULT_MOVE_TIMEOUT_S,
    FAILING,
    MOVING,
    STOPPED,
    PatrolPlan,
    PatrolState,
    PatrolStatus,
)
from gateway.redaction import redact

log = logging.getLogger("gateway.onvif.ptz")

PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"
GENERIC_PAN_TILT_SPACE = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"
POSITION_TOLERANCE = 0.03
"""How near (in the generic -1..1 / 0..1 space, about 5 degrees of a 360-degree pan) the reported
position must be to the preset's for the camera to count as there."""
STATUS_POLL_S = 0.5
"""How often a move is checked; the first check comes this long after GotoPreset, so that a
camera that still says IDLE before it starts moving is not taken at its word."""
PHASE_CHECK_S = 0.5
"""The driver re-reads the plan at least this often while it waits for a phase to end."""
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0
"""Backoff between failed move attempts."""


class PresetNotFound(OnvifError):
    """The configured preset matches no preset on the camera (or a number matches two)."""


class MoveNotConfirmed(OnvifError):
    """GotoPreset was accepted but the camera did not report reaching the preset in time."""


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class PtzPosition:
    """A tt:PTZVector: pan/tilt/zoom (None where not given) and the coordinate spaces they are in."""

    pan: float | None = None
    tilt: float | None = None
    zoom: float | None = None
    pan_tilt_space: str | None = None
    zoom_space: str | None = None

    @classmethod
    def parse(cls, vector: Any) -> PtzPosition:
        pan_tilt = getattr(vector, "PanTilt", None) if vector is not None else None
        zoom = getattr(vector, "Zoom", None) if vector is not None else None
        return cls(_float(getattr(pan_tilt, "x", None)), _float(getattr(pan_tilt, "y", None)),
                   _float(getattr(zoom, "x", None)), _space(pan_tilt), _space(zoom))

    def describe(self) -> str:
        return ", ".join(f"{name} {value:.3f}" for name, value in
                         (("pan", self.pan), ("tilt", self.tilt), ("zoom", self.zoom)) if value is not None)


@dataclass(frozen=True)
class PtzPreset:
    token: str
    name: str
    position: PtzPosition = PtzPosition()

    def describe(self) -> str:
        return f"{self.name or '?'} ({self.token})"


def parse_presets(raw: Any) -> list[PtzPreset]:
    presets = []
    for item in raw or []:
        token = getattr(item, "token", None)
        if token is None:
            continue
        presets.append(PtzPreset(token=str(token), name=str(getattr(item, "Name", "") or ""),
                                 position=PtzPosition.parse(getattr(item, "PTZPosition", None))))
    return presets


def _space(vector: Any) -> str | None:
    space = getattr(vector, "space", None) if vector is not None else None
    return str(space) if space else None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


_NUMBER_AT_END = re.compile(r"(\d+)\s*$")
_LISTED_PRESETS = 20


def _number_at_end(text: str) -> int | None:
    match = _NUMBER_AT_END.search(text)
    return int(match.group(1)) if match else None


def find_preset(presets: Sequence[PtzPreset], wanted: str, endpoint: str = "") -> PtzPreset:
    """The preset `wanted` names: its token, else its exact name, else its name ignoring case.

    A number ("3") that is neither a token nor a name means the preset's number as the camera
    numbers it: Hikvision and Dahua use it as the token ("3", matched above), other firmware
    puts it at the end of the token or name ("PresetToken_3", "Preset_3", "预置点 3"). The one
    preset whose token or name ends in that number is taken; two different presets that do
    are an error naming both (write the token or the exact name then), never a guess.
    """
    wanted = str(wanted).strip()
    for matches in (lambda p: p.token == wanted, lambda p: p.name == wanted,
                    lambda p: p.name.casefold() == wanted.casefold()):
        for preset in presets:
            if matches(preset):
                return preset
    if wanted.isdecimal():
        number = int(wanted)
        numbered = [p for p in presets if number in (_number_at_end(p.token), _number_at_end(p.name))]
        if len(numbered) == 1:
            return numbered[0]
        if numbered:
            raise PresetNotFound(endpoint, f"PTZ preset {wanted!r} is ambiguous: the number matches "
                                           f"{', '.join(p.describe() for p in numbered)}; "
                                           "write the preset's token or its exact name")
    known = ", ".join(p.describe() for p in presets[:_LISTED_PRESETS]) or "none"
    if len(presets) > _LISTED_PRESETS:
        known += f" and {len(presets) - _LISTED_PRESETS} more"
    raise PresetNotFound(endpoint, f"no PTZ preset {wanted!r} (presets: {known})")


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class PtzStatus:
    """A GetStatus answer. moving: None when the camera reports no usable MoveStatus."""

    moving: bool | None
    position: PtzPosition = PtzPosition()

    def describe(self) -> str:
        words = {True: "moving", False: "idle", None: "move status unknown"}[self.moving]
        return ", ".join(part for part in (words, self.position.describe()) if part)


def _word(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "_value_1", value)).strip().upper()


def parse_status(raw: Any) -> PtzStatus:
    status = getattr(raw, "PTZStatus", None) or raw
    move = getattr(status, "MoveStatus", None)
    words = [_word(getattr(move, axis, None)) for axis in ("PanTilt", "Zoom")] if move is not None else []
    known = [word for word in words if word in ("IDLE", "MOVING")]
    moving = ("MOVING" in known) if known else None
    return PtzStatus(moving, PtzPosition.parse(getattr(status, "Position", None)))


def _gap(a: float, b: float, wraps: bool) -> float:
    gap = abs(a - b)
    return min(gap, 2.0 - gap) if wraps and gap > 1.0 else gap


def _same_space(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def _near(a: PtzPosition, b: PtzPosition) -> bool | None:
    """Are two positions the same within the tolerance? None when they cannot be compared."""
    gaps = []
    if (a.pan is not None and a.tilt is not None and b.pan is not None and b.tilt is not None
            and _same_space(a.pan_tilt_space, b.pan_tilt_space)):
        wraps = (a.pan_tilt_space or b.pan_tilt_space or GENERIC_PAN_TILT_SPACE) == GENERIC_PAN_TILT_SPACE
        gaps += [_gap(a.pan, b.pan, wraps), _gap(a.tilt, b.tilt, False)]
    if a.zoom is not None and b.zoom is not None and _same_space(a.zoom_space, b.zoom_space):
        gaps.append(_gap(a.zoom, b.zoom, False))
    return all(gap <= POSITION_TOLERANCE for gap in gaps) if gaps else None


def reached(status: PtzStatus, preset: PtzPreset) -> bool | None:
    """Has the camera arrived at `preset`? True: idle and (where both are known) at its position;
    False: still moving, or stopped elsewhere; None: the status says neither (use the timer)."""
    if status.moving:
        return False
    near = _near(status.position, preset.position)
    if near is not None:
        return near
    return True if status.moving is False else None


# --------------------------------------------------------------------------- requests


async def ptz_profile_token(session: OnvifSession, wanted: str | None = None) -> str:
    """Token of the media profile to move: the configured one if it has PTZ, else the first that has."""
    if not session.has_service(PTZ_NS):
        raise OnvifNotSupported(session.endpoint, "the device has no PTZ service")
    profiles = parse_profiles(await session.call("media", "GetProfiles"))
    with_ptz = [p for p in profiles if p.ptz]
    if wanted:
        chosen = choose_profile(profiles, wanted, session.endpoint)
        if chosen.ptz:
            return chosen.token
    if not with_ptz:
        raise OnvifNotSupported(session.endpoint, "no media profile has a PTZ configuration")
    return with_ptz[0].token


async def get_presets(session: OnvifSession, profile_token: str) -> list[PtzPreset]:
    return parse_presets(await session.call("ptz", "GetPresets", {"ProfileToken": profile_token}))


async def goto_preset(session: OnvifSession, profile_token: str, preset_token: str,
                      speed: float | None = None) -> None:
    request: dict[str, Any] = {"ProfileToken": profile_token, "PresetToken": preset_token}
    if speed is not None:
        request["Speed"] = {"PanTilt": {"x": speed, "y": speed}, "Zoom": {"x": speed}}
    await session.call("ptz", "GotoPreset", request)


async def get_status(session: OnvifSession, profile_token: str) -> PtzStatus:
    return parse_status(await session.call("ptz", "GetStatus", {"ProfileToken": profile_token}))


class PtzController:
    """One camera's PTZ over a kept-open session on the shared loop; blocking methods for threads.

    The session is reopened once after a network error (the camera may have rebooted). A session
    is kept only once its PTZ profile is known: a camera that refuses the credentials after
    listing its services (ONVIF lets anyone list them) is asked again from the start next time.
    """

    def __init__(self, settings: Any, *, loop: OnvifLoop, profile: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S):
        self.settings = getattr(settings, "onvif", settings)
        self.loop = loop
        self.profile = profile if profile is not None else getattr(self.settings, "profile", None)
        self.timeout = timeout
        host, port, _user, _password = _settings(self.settings)
        self.endpoint = _endpoint(host, port)
        self._session: OnvifSession | None = None
        self._profile_token: str | None = None
        self._presets: list[PtzPreset] | None = None
        self._lock: asyncio.Lock | None = None

    async def _ready(self) -> tuple[OnvifSession, str]:
        session, token = self._session, self._profile_token
        if session is not None and session.camera is not None and token is not None:
            return session, token
        await self.aclose()
        session = OnvifSession(self.settings, self.timeout)
        try:
            await session.open()
            token = await ptz_profile_token(session, self.profile)
        except BaseException:
            await session.close()
            raise
        self._session, self._profile_token = session, token
        return session, token

    async def _with_retry(self, action: Callable[[OnvifSession, str], Any]) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            for attempt in (1, 2):
                session, token = await self._ready()
                try:
                    return await action(session, token)
                except OnvifError as error:
                    if attempt == 2 or isinstance(error, (PresetNotFound, OnvifNotSupported,
                                                          OnvifSoapFault, OnvifNotAuthorized)):
                        raise  # only connection trouble is worth a fresh session
                    await self.aclose()

    async def apresets(self, refresh: bool = False) -> list[PtzPreset]:
        if self._presets is None or refresh:
            self._presets = await self._with_retry(get_presets)
        return list(self._presets)

    async def aresolve(self, preset: str) -> PtzPreset:
        """The camera's preset that `preset` (token, name or number) names; the list is read
        again once when it is not found (presets may have been added since)."""
        try:
            return find_preset(await self.apresets(), preset, self.endpoint)
        except PresetNotFound:
            return find_preset(await self.apresets(refresh=True), preset, self.endpoint)

    async def agoto_preset(self, target: PtzPreset, speed: float | None = None) -> None:
        async def move(session: OnvifSession, token: str) -> None:
            await goto_preset(session, token, target.token, speed)

        await self._with_retry(move)

    async def agoto(self, preset: str, speed: float | None = None) -> PtzPreset:
        """Move to `preset` (token, name or number); returns the preset it resolved to."""
        target = await self.aresolve(preset)
        await self.agoto_preset(target, speed)
        return target

    async def astatus(self) -> PtzStatus:
        return await self._with_retry(get_status)

    async def aclose(self) -> None:
        session, self._session, self._profile_token = self._session, None, None
        if session is not None:
            await session.close()

    def presets(self, refresh: bool = False) -> list[PtzPreset]:
        return self.loop.run(self.apresets(refresh), self.timeout * 3)

    def goto(self, preset: str, speed: float | None = None) -> PtzPreset:
        return self.loop.run(self.agoto(preset, speed), self.timeout * 3)

    def status(self) -> PtzStatus:
        return self.loop.run(self.astatus(), self.timeout * 3)

    def close(self) -> None:
        if self.loop.running:
            self.loop.run(self.aclose(), self.timeout)


# --------------------------------------------------------------------------- the driver


def _describe_error(error: BaseException) -> str:
    if isinstance(error, OnvifError):
        return str(error)
    return f"{type(error).__name__}: {redact(str(error))[:200]}"


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
        self._failing_since: float | None = None
        self._fault_logged = False
        self._confirmed = 0
        self._failures = 0
        self._last_move_s: float | None = None
        self._confirmed_by: str | None = None
        self._last_error: str | None = None
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
            failing_for = None if self._failing_since is None else max(0.0, now - self._failing_since)
            if not alive:
                kind = STOPPED
            elif state.phase == MOVING and failing_for is not None:
                kind = FAILING
            else:
                kind = state.phase
            return PatrolStatus(
                state=kind, stop=state.index, preset=state.preset,
                fault=kind in (FAILING, STOPPED) and failing_for is not None
                and failing_for >= self.fault_after_s,
                moves=self._confirmed, move_failures=self._failures,
                failing_for_s=None if failing_for is None else round(failing_for, 1),
                last_move_s=None if self._last_move_s is None else round(self._last_move_s, 2),
                confirmed_by=self._confirmed_by, last_error=self._last_error)

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
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self.clock()
            self._last_error = "patrol task ended" + (f": {_describe_error(error)}" if error else "")
        log.error("camera %s: PTZ patrol stopped (%s); the systemd watchdog restarts the gateway",
                  self.camera_id, self._last_error, exc_info=error)

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
                except (OnvifSoapFault, OnvifProtocolError) as error:
                    self._status_unreadable(error.detail)
                    break
                verdict = reached(status, target)
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
            self.plan.arrived(now)
            failed_for = None if self._failing_since is None else now - self._failing_since
            self._failing_since, self._last_error, self._fault_logged = None, None, False
            self._confirmed += 1
            self._last_move_s, self._confirmed_by = now - sent_at, confirmed_by
            self._backoff.reset()
        if failed_for is not None:
            log.info("camera %s: PTZ patrol moving again: at patrol[%d] (preset %s) after %.0f s of "
                     "failed moves", self.camera_id, state.index, target.describe(), failed_for)
        else:
            log.debug("camera %s: patrol[%d] at preset %s after %.1f s (%s)", self.camera_id,
                      state.index, target.describe(), now - sent_at, confirmed_by)

    async def _retry_later(self, state: PatrolState, error: Exception) -> None:
        """Log the failure, wait out the backoff, and give the stop up if its time is over."""
        now = self.clock()
        delay = self._backoff.next_delay()
        with self._lock:
            if self._failing_since is None:
                self._failing_since = now
            self._failures += 1
            self._last_error = _describe_error(error)
            failing_for = now - self._failing_since
            report_fault = failing_for >= self.fault_after_s and not self._fault_logged
            self._fault_logged = self._fault_logged or report_fault
        log.warning("camera %s: patrol[%d] (preset %s): cannot move the camera: %s; retrying in %.1f s "
                    "(no analysis until it gets there)", self.camera_id, state.index, state.preset,
                    self._last_error, delay, exc_info=None if isinstance(error, OnvifError) else error)
        if report_fault:
            log.error("camera %s: PTZ patrol has not moved for %.0f s (patrol_fault_after_s %g): "
                      "raising a patrol_fault alert; it ends when the camera moves again",
                      self.camera_id, failing_for, self.fault_after_s)
        await asyncio.sleep(delay)
        now = self.clock()
        with self._lock:
            give_up = self.plan.state_at(now).visit == state.visit and self.plan.due(now)
            following = self.plan.advance(now) if give_up else None
        if following is not None:
            log.info("camera %s: patrol[%d] (preset %s) skipped this round; next: patrol[%d] (preset %s)",
                     self.camera_id, state.index, state.preset, following.index, following.preset)
