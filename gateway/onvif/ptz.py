"""PTZ presets and status, and `PtzController`: one camera's PTZ conversation.

`PtzController` keeps one session per camera open on the shared `OnvifLoop`: it lists presets,
sends GotoPreset and reads GetStatus, and carries out what a platform asks for (ContinuousMove
with speeds, Stop, SetPreset, RemovePreset). The patrol driver (patrol_driver.py) moves the camera with
it; the patrol plan itself is in patrol.py. Preset names are resolved
by `find_preset` (token, name, or the number a camera gives it); arrival is judged by `reached`,
in the ranges the camera declares for its position spaces (`SpaceRanges`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.onvif.device import choose_profile, parse_profiles
from gateway.onvif.session import (
    DEFAULT_TIMEOUT_S,
    OnvifError,
    OnvifLoop,
    OnvifNotAuthorized,
    OnvifNotSupported,
    OnvifProtocolError,
    OnvifSession,
    OnvifSoapFault,
    connection_settings,
    endpoint,
)

log = logging.getLogger("gateway.onvif.ptz")

PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"
GENERIC_PAN_TILT_SPACE = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"
POSITION_TOLERANCE = 0.03
"""How near (in the generic -1..1 / 0..1 space, about 5 degrees of a 360-degree pan) the reported
position must be to the preset's for the camera to count as there."""


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


@dataclass(frozen=True)
class AxisRange:
    """The range one axis of a position space covers, as the camera declares it (PTZ node)."""

    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


GENERIC_RANGE = AxisRange(-1.0, 1.0)


@dataclass(frozen=True)
class SpaceRanges:
    """pan/tilt/zoom ranges of the camera's absolute position spaces, by space URI (from GetNodes).

    Cameras do not all keep to the generic -1..1: some report degrees (0..360) while naming
    the generic space. Distances are therefore measured as a share of the range the camera
    declares for the space, or, when it declares none, of the range the compared positions
    themselves span (at least the generic one)."""

    pan_tilt: dict[str, tuple[AxisRange, AxisRange]] = field(default_factory=dict)
    zoom: dict[str, AxisRange] = field(default_factory=dict)


def parse_space_ranges(nodes: Any) -> SpaceRanges:
    """The absolute position spaces of every PTZ node of a GetNodes answer."""
    ranges = SpaceRanges()
    for node in nodes or []:
        spaces = getattr(node, "SupportedPTZSpaces", None)
        for space in getattr(spaces, "AbsolutePanTiltPositionSpace", None) or []:
            x, y = _axis(getattr(space, "XRange", None)), _axis(getattr(space, "YRange", None))
            if getattr(space, "URI", None) and x and y:
                ranges.pan_tilt[str(space.URI)] = (x, y)
        for space in getattr(spaces, "AbsoluteZoomPositionSpace", None) or []:
            x = _axis(getattr(space, "XRange", None))
            if getattr(space, "URI", None) and x:
                ranges.zoom[str(space.URI)] = x
    return ranges


def _axis(raw: Any) -> AxisRange | None:
    low, high = _float(getattr(raw, "Min", None)), _float(getattr(raw, "Max", None))
    return AxisRange(low, high) if low is not None and high is not None and high > low else None


def _observed(*values: float) -> AxisRange:
    """No declared range: the range the positions themselves show, never narrower than -1..1."""
    return AxisRange(min(-1.0, *values), max(1.0, *values))


def _gap(a: float, b: float, axis: AxisRange, wraps: bool) -> float:
    """The distance between two values as a share of the axis's generic width 2 (so the
    tolerance means the same in every space); a panning axis wraps around its range.
    Never negative."""
    scale = 2.0 / axis.width
    gap = abs(a - b)
    if wraps:
        gap %= axis.width
        gap = min(gap, axis.width - gap)
    return gap * scale


def _same_space(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def _near(a: PtzPosition, b: PtzPosition, ranges: SpaceRanges | None = None) -> bool | None:
    """Are two positions the same within the tolerance? None when they cannot be compared."""
    ranges = ranges or SpaceRanges()
    gaps = []
    if (a.pan is not None and a.tilt is not None and b.pan is not None and b.tilt is not None
            and _same_space(a.pan_tilt_space, b.pan_tilt_space)):
        space = a.pan_tilt_space or b.pan_tilt_space or GENERIC_PAN_TILT_SPACE
        declared = ranges.pan_tilt.get(space)
        pan_axis, tilt_axis = declared or (_observed(a.pan, b.pan), _observed(a.tilt, b.tilt))
        gaps += [_gap(a.pan, b.pan, pan_axis, wraps=True), _gap(a.tilt, b.tilt, tilt_axis, wraps=False)]
    if a.zoom is not None and b.zoom is not None and _same_space(a.zoom_space, b.zoom_space):
        zoom_axis = ranges.zoom.get(a.zoom_space or b.zoom_space or "") or _observed(a.zoom, b.zoom)
        gaps.append(_gap(a.zoom, b.zoom, zoom_axis, wraps=False))
    return all(gap <= POSITION_TOLERANCE for gap in gaps) if gaps else None


def reached(status: PtzStatus, preset: PtzPreset, ranges: SpaceRanges | None = None) -> bool | None:
    """Has the camera arrived at `preset`? True: idle and (where both are known) at its position;
    False: still moving, or stopped elsewhere; None: the status says neither (use the timer).
    `ranges`: the camera's declared position spaces (see `SpaceRanges`)."""
    if status.moving:
        return False
    near = _near(status.position, preset.position, ranges)
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


async def get_space_ranges(session: OnvifSession) -> SpaceRanges:
    """The camera's declared position ranges; empty when it cannot say (GetNodes is optional
    in practice: arrival is then judged by the positions' own range)."""
    try:
        return parse_space_ranges(await session.call("ptz", "GetNodes"))
    except (OnvifSoapFault, OnvifProtocolError) as error:
        log.debug("%s: no PTZ node spaces (%s); judging arrival by the positions' own range",
                  session.endpoint, error)
        return SpaceRanges()


def _clamp(value: float) -> float:
    return max(-1.0, min(1.0, float(value)))


async def continuous_move(session: OnvifSession, profile_token: str, pan: float, tilt: float,
                          zoom: float) -> None:
    """Move at these generic velocities (-1..1 each; 0 = that axis still) until Stop."""
    await session.call("ptz", "ContinuousMove", {
        "ProfileToken": profile_token,
        "Velocity": {"PanTilt": {"x": _clamp(pan), "y": _clamp(tilt)}, "Zoom": {"x": _clamp(zoom)}},
    })


async def stop(session: OnvifSession, profile_token: str) -> None:
    await session.call("ptz", "Stop", {"ProfileToken": profile_token, "PanTilt": True, "Zoom": True})


async def set_preset(session: OnvifSession, profile_token: str, name: str | None,
                     token: str | None = None) -> str:
    """Store the current position as a preset (a new one, or `token` overwritten); its token."""
    request: dict[str, Any] = {"ProfileToken": profile_token}
    if name:
        request["PresetName"] = name
    if token:
        request["PresetToken"] = token
    answer = await session.call("ptz", "SetPreset", request)
    return str(getattr(answer, "PresetToken", answer) or token or "")


async def remove_preset(session: OnvifSession, profile_token: str, token: str) -> None:
    await session.call("ptz", "RemovePreset", {"ProfileToken": profile_token, "PresetToken": token})


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
        host, port, _user, _password = connection_settings(self.settings)
        self.endpoint = endpoint(host, port)
        self._session: OnvifSession | None = None
        self._profile_token: str | None = None
        self._presets: list[PtzPreset] | None = None
        self._ranges: SpaceRanges | None = None
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

    async def aranges(self) -> SpaceRanges:
        """The camera's declared position ranges (read once)."""
        if self._ranges is None:
            self._ranges = await self._with_retry(lambda session, _token: get_space_ranges(session))
        return self._ranges

    async def amove(self, pan: float, tilt: float, zoom: float) -> None:
        await self._with_retry(lambda session, token: continuous_move(session, token, pan, tilt, zoom))

    async def astop(self) -> None:
        await self._with_retry(stop)

    async def aset_preset(self, preset: str, name: str | None = None) -> PtzPreset:
        """Store the current position as `preset` (token, name or number): an existing preset
        is overwritten, else a new one is made, named `name` or `preset` (so a number given by
        a GB/T 28181 platform finds it again by name)."""
        try:
            existing: PtzPreset | None = await self.aresolve(preset)
        except PresetNotFound:
            existing = None
        label = name or (existing.name if existing else preset)

        async def store(session: OnvifSession, token: str) -> str:
            return await set_preset(session, token, label, existing.token if existing else None)

        stored = await self._with_retry(store)
        self._presets = None  # the list changed
        return PtzPreset(stored or (existing.token if existing else ""), label)

    async def aremove_preset(self, preset: str) -> PtzPreset:
        target = await self.aresolve(preset)
        await self._with_retry(lambda session, token: remove_preset(session, token, target.token))
        self._presets = None
        return target

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

    def move(self, pan: float, tilt: float, zoom: float) -> None:
        """Start a continuous move (generic velocities -1..1); it lasts until `stop`."""
        self.loop.run(self.amove(pan, tilt, zoom), self.timeout * 3)

    def stop(self) -> None:
        self.loop.run(self.astop(), self.timeout * 3)

    def set_preset(self, preset: str, name: str | None = None) -> PtzPreset:
        return self.loop.run(self.aset_preset(preset, name), self.timeout * 3)

    def remove_preset(self, preset: str) -> PtzPreset:
        return self.loop.run(self.aremove_preset(preset), self.timeout * 3)

    def close(self) -> None:
        if self.loop.running:
            self.loop.run(self.aclose(), self.timeout)
