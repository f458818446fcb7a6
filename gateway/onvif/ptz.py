"""PTZ presets and patrols: a pure `PatrolPlan` clock, and the driver that moves the camera.

A patrol (`camera.patrol: [{preset, dwell_s, settle_s, zones}]`) cycles a PTZ camera through
presets.  Each visit to a stop has three phases:

    moving (move_s)  →  settling (settle_s)  →  watching (dwell_s)  →  next stop ...

Analysis runs only while *watching*: during the move the picture sweeps and during the settle
the image is still refocusing/exposing, and either would produce false counts.  `PatrolPlan` is
pure arithmetic over a clock (no threads, no I/O): `state_at(t)` says which stop and phase hold at
time t, `visit` numbers every stop change so the analytics can end open events exactly when the
view changes ("events that span a preset change end cleanly"), and `zones` of the state are the
zones that apply to that preset.

`PatrolDriver` runs on the shared `OnvifLoop`: at every visit it sends GotoPreset.  If that fails
(or the preset does not exist) the visit is marked `position_ok=False`, which also stops analysis
for it: applying the zones of one preset to the view of another would raise wrong alerts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.onvif.device import (
    DEFAULT_TIMEOUT_S,
    OnvifError,
    OnvifLoop,
    OnvifNotAuthorized,
    OnvifNotSupported,
    OnvifSession,
    OnvifSoapFault,
    choose_profile,
    parse_profiles,
)

log = logging.getLogger("gateway.onvif.ptz")

PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"
DEFAULT_MOVE_S = 3.0

MOVING, SETTLING, WATCHING = "moving", "settling", "watching"


class PresetNotFound(OnvifError):
    """The configured preset matches neither a preset token nor a preset name on the camera."""


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class PtzPreset:
    token: str
    name: str
    pan: float | None = None
    tilt: float | None = None
    zoom: float | None = None


def parse_presets(raw: Any) -> list[PtzPreset]:
    presets = []
    for item in raw or []:
        token = getattr(item, "token", None)
        if token is None:
            continue
        position = getattr(item, "PTZPosition", None)
        pan_tilt = getattr(position, "PanTilt", None) if position is not None else None
        zoom = getattr(position, "Zoom", None) if position is not None else None
        presets.append(PtzPreset(
            token=str(token), name=str(getattr(item, "Name", "") or ""),
            pan=_float(getattr(pan_tilt, "x", None)), tilt=_float(getattr(pan_tilt, "y", None)),
            zoom=_float(getattr(zoom, "x", None))))
    return presets


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def find_preset(presets: Sequence[PtzPreset], wanted: str, endpoint: str = "") -> PtzPreset:
    """The preset whose token is `wanted`, else whose name is (exactly, then ignoring case)."""
    wanted = str(wanted).strip()
    for matches in (lambda p: p.token == wanted, lambda p: p.name == wanted,
                    lambda p: p.name.casefold() == wanted.casefold()):
        for preset in presets:
            if matches(preset):
                return preset
    known = ", ".join(f"{p.name or '?'} ({p.token})" for p in presets) or "none"
    raise PresetNotFound(endpoint, f"no PTZ preset {wanted!r} (presets: {known})")


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


class PtzController:
    """One camera's PTZ over a kept-open session on the shared loop; blocking methods for threads.

    The session is reopened once after a network error (the camera may have rebooted).
    """

    def __init__(self, settings: Any, *, loop: OnvifLoop, profile: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S):
        self.settings = getattr(settings, "onvif", settings)
        self.loop = loop
        self.profile = profile if profile is not None else getattr(self.settings, "profile", None)
        self.timeout = timeout
        self._session: OnvifSession | None = None
        self._profile_token: str | None = None
        self._presets: list[PtzPreset] | None = None
        self._lock: asyncio.Lock | None = None

    async def _ready(self) -> tuple[OnvifSession, str]:
        if self._session is None or self._session.camera is None:
            session = OnvifSession(self.settings, self.timeout)
            await session.open()
            self._session = session
            self._profile_token = await ptz_profile_token(session, self.profile)
        assert self._profile_token is not None
        return self._session, self._profile_token

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

    async def agoto(self, preset: str, speed: float | None = None) -> PtzPreset:
        """Move to `preset` (token or name); returns the preset it resolved to."""
        presets = await self.apresets()
        try:
            target = find_preset(presets, preset, self._session.endpoint if self._session else "")
        except PresetNotFound:
            target = find_preset(await self.apresets(refresh=True), preset,
                                 self._session.endpoint if self._session else "")

        async def move(session: OnvifSession, token: str) -> None:
            await goto_preset(session, token, target.token, speed)

        await self._with_retry(move)
        return target

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def presets(self, refresh: bool = False) -> list[PtzPreset]:
        return self.loop.run(self.apresets(refresh), self.timeout * 3)

    def goto(self, preset: str, speed: float | None = None) -> PtzPreset:
        return self.loop.run(self.agoto(preset, speed), self.timeout * 3)

    def close(self) -> None:
        if self.loop.running:
            self.loop.run(self.aclose(), self.timeout)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PatrolState:
    """Where the patrol is at one moment.

    index: the stop (position in `camera.patrol`); preset: the configured preset (name or token);
    zones: zone ids that apply at this stop (empty: all of the camera's zones); phase: moving,
    settling or watching; visit: how many stop changes since the plan started (changes exactly
    when the view changes); position_ok: False when the driver could not move the camera there.
    """

    index: int
    preset: str
    zones: tuple[str, ...]
    phase: str
    visit: int
    phase_started_at: float
    phase_ends_at: float
    position_ok: bool = True

    @property
    def analysing(self) -> bool:
        return self.phase == WATCHING and self.position_ok


class PatrolPlan:
    """The patrol timetable: pure, deterministic, one cycle after another from `start`."""

    def __init__(self, stops: Sequence[Any], *, move_s: float = DEFAULT_MOVE_S, start: float = 0.0):
        if not stops:
            raise ValueError("a patrol needs at least one stop")
        if move_s < 0:
            raise ValueError("move_s must be >= 0")
        self.stops = tuple(stops)
        self.move_s = float(move_s)
        self.start = float(start)
        self._phases: list[tuple[int, str, float]] = []  # (stop index, phase, length)
        for index, stop in enumerate(self.stops):
            dwell = float(getattr(stop, "dwell_s"))
            if dwell <= 0:
                raise ValueError(f"patrol stop {index}: dwell_s must be > 0")
            settle = float(getattr(stop, "settle_s", 0) or 0)
            self._phases += [(index, MOVING, self.move_s), (index, SETTLING, settle), (index, WATCHING, dwell)]
        self.cycle_s = sum(length for _, _, length in self._phases)

    def stop_length(self, index: int) -> float:
        return sum(length for i, _, length in self._phases if i == index)

    def state_at(self, t: float) -> PatrolState:
        """The stop and phase at time `t` (same clock as `start`; before start: the first move)."""
        elapsed = max(0.0, t - self.start)
        cycle, offset = divmod(elapsed, self.cycle_s)
        cycle_start = self.start + cycle * self.cycle_s
        position = 0.0
        for index, phase, length in self._phases:
            if length > 0 and offset < position + length:
                stop = self.stops[index]
                return PatrolState(
                    index=index, preset=str(getattr(stop, "preset")),
                    zones=tuple(getattr(stop, "zones", ()) or ()), phase=phase,
                    visit=int(cycle) * len(self.stops) + index,
                    phase_started_at=cycle_start + position,
                    phase_ends_at=cycle_start + position + length)
            position += length
        raise AssertionError("unreachable: offset < cycle length")

    def next_change(self, t: float) -> float:
        """When the phase holding at `t` ends."""
        return self.state_at(t).phase_ends_at

    def visits_between(self, t0: float, t1: float) -> list[PatrolState]:
        """The stop changes in (t0, t1]: the first state (moving) of every visit that began then."""
        first, last = self.state_at(t0).visit, self.state_at(t1).visit
        changes = []
        for visit in range(first + 1, last + 1):
            cycle, index = divmod(visit, len(self.stops))
            begins = self.start + cycle * self.cycle_s + sum(
                self.stop_length(i) for i in range(index))
            changes.append(self.state_at(begins + 1e-9))
        return changes


class PatrolDriver:
    """Moves a camera along a `PatrolPlan` on the shared loop.

    `state()` (thread-safe) is the plan's state at now, with `position_ok=False` for a visit
    whose GotoPreset failed.  `on_change(state)` is called on the loop thread at every visit,
    as it begins (before GotoPreset is sent): that is when open events of the old view end.
    """

    def __init__(self, camera_id: str, controller: PtzController, plan: PatrolPlan, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[PatrolState], None] | None = None):
        self.camera_id = camera_id
        self.controller = controller
        self.plan = plan
        self.clock = clock
        self.on_change = on_change
        self.moves: list[tuple[int, str]] = []  # (visit, preset token) sent to the camera
        self._failed_visits: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def state(self) -> PatrolState:
        state = self.plan.state_at(self.clock())
        if state.visit in self._failed_visits:
            return replace(state, position_ok=False)
        return state

    def interrupt(self) -> None:
        """The camera was turned away from the plan (a sensor's preset): the current stop counts
        as out of position, so analysis pauses, and the next stop moves the camera back."""
        self._failed_visits.add(self.plan.state_at(self.clock()).visit)

    def start(self) -> None:
        self.controller.loop.run(self._start(), timeout=5)

    async def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"patrol-{self.camera_id}")

    def stop(self, timeout: float = 5.0) -> None:
        if self.controller.loop.running:
            self.controller.loop.run(self._stop(), timeout + 1)

    async def _stop(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=5)

    async def run(self) -> None:
        last_visit = -1
        while True:
            now = self.clock()
            state = self.plan.state_at(now)
            if state.visit != last_visit:
                last_visit = state.visit
                if self.on_change is not None:  # the view changes now: end what spans it
                    try:
                        self.on_change(state)
                    except Exception:  # noqa: BLE001
                        log.exception("%s: patrol callback failed", self.camera_id)
                await self._visit(state)
            # Sleep to the end of this visit's phases, re-checking at every phase boundary.
            await asyncio.sleep(max(0.01, min(state.phase_ends_at - self.clock(), 1.0)))

    async def _visit(self, state: PatrolState) -> None:
        try:
            preset = await self.controller.agoto(state.preset)
        except OnvifError as error:
            self._failed_visits.add(state.visit)
            if len(self._failed_visits) > 64:
                self._failed_visits = {v for v in self._failed_visits if v >= state.visit - 8}
            log.warning("%s: patrol stop %d (%s): cannot move the camera: %s; analysis paused "
                        "until the next stop", self.camera_id, state.index, state.preset, error)
            return
        self.moves.append((state.visit, preset.token))
        del self.moves[:-256]
        log.debug("%s: patrol stop %d: preset %s (%s)", self.camera_id, state.index,
                  preset.name or preset.token, preset.token)
