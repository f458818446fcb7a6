"""The PTZ operations a platform's commands use, for the fake ONVIF device (tests/onvif_device.py):
GetNodes (the position spaces and their ranges), ContinuousMove, Stop, SetPreset, RemovePreset,
answered as the ONVIF PTZ service specification (ver20/ptz/wsdl) says. A mixin: the device's
state (`_position`, `_move`, `_velocity`, `presets`, `ranges`, its lock) lives in
`FakeOnvifDevice`; the head moves while a continuous move runs and presets are stored for real.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from xml.sax.saxutils import escape

import onvif_device as fake  # the device module imports this one: names are looked up at call time


class PtzOperations:
    """Mixed into FakeOnvifDevice (which provides the attributes used here)."""

    _lock: threading.Condition
    _position: tuple[float, float, float]
    _move: Any
    _velocity: Any
    _next_preset: int
    presets: list[Any]
    ranges: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    declare_spaces: bool
    move_s: float
    ptz_calls: list[tuple[str, str]]
    stopped_at: list[tuple[float, float, float]]

    def _ptz_profile(self, request: Any) -> str:
        raise NotImplementedError

    def ptz_position(self) -> tuple[tuple[float, float, float], bool]:
        raise NotImplementedError

    def _continuous_position(self, now: float) -> tuple[tuple[float, float, float], bool]:
        """Where a continuous move has taken the head (lock held): each axis runs at its
        velocity x half its range per second, stopping at the range's ends."""
        assert self._velocity is not None
        velocity, started, ends_at = self._velocity
        moving = ends_at is None or now < ends_at
        elapsed = (now if moving else ends_at) - started
        position = tuple(max(low, min(high, value + speed * (high - low) / 2 * elapsed))
                         for value, speed, (low, high) in zip(self._position, velocity, self.ranges, strict=True))
        if not moving:
            self._position, self._velocity = position, None
        return position, moving

    def _settle(self) -> None:
        """Freeze the head where it is now (lock held): a new command starts from there."""
        now = time.monotonic()
        if self._velocity is not None:
            self._position, _ = self._continuous_position(now)
            self._velocity = None
        if self._move is not None:
            origin, target, started = self._move
            progress = min(1.0, (now - started) / self.move_s) if self.move_s > 0 else 1.0
            self._position = tuple(a + (b - a) * progress for a, b in zip(origin, target, strict=True))
            self._move = None

    def op_GetNodes(self, request, path):  # noqa: N802
        """One node whose absolute spaces declare the ranges the head reports in (tt:PTZNode)."""
        if not self.declare_spaces:
            raise fake.Fault(fake.FaultSpec())
        (pan_low, pan_high), (tilt_low, tilt_high), (zoom_low, zoom_high) = self.ranges
        generic = "http://www.onvif.org/ver10/tptz/{}Spaces/{}GenericSpace"
        return ('<tptz:GetNodesResponse><tptz:PTZNode token="PTZNode_1" FixedHomePosition="false">'
                "<tt:Name>PTZ</tt:Name><tt:SupportedPTZSpaces>"
                f"<tt:AbsolutePanTiltPositionSpace><tt:URI>{generic.format('PanTilt', 'Position')}</tt:URI>"
                f"<tt:XRange><tt:Min>{pan_low}</tt:Min><tt:Max>{pan_high}</tt:Max></tt:XRange>"
                f"<tt:YRange><tt:Min>{tilt_low}</tt:Min><tt:Max>{tilt_high}</tt:Max></tt:YRange>"
                "</tt:AbsolutePanTiltPositionSpace>"
                f"<tt:AbsoluteZoomPositionSpace><tt:URI>{generic.format('Zoom', 'Position')}</tt:URI>"
                f"<tt:XRange><tt:Min>{zoom_low}</tt:Min><tt:Max>{zoom_high}</tt:Max></tt:XRange>"
                "</tt:AbsoluteZoomPositionSpace>"
                f"<tt:ContinuousPanTiltVelocitySpace><tt:URI>{generic.format('PanTilt', 'Velocity')}</tt:URI>"
                "<tt:XRange><tt:Min>-1</tt:Min><tt:Max>1</tt:Max></tt:XRange>"
                "<tt:YRange><tt:Min>-1</tt:Min><tt:Max>1</tt:Max></tt:YRange></tt:ContinuousPanTiltVelocitySpace>"
                f"<tt:ContinuousZoomVelocitySpace><tt:URI>{generic.format('Zoom', 'Velocity')}</tt:URI>"
                "<tt:XRange><tt:Min>-1</tt:Min><tt:Max>1</tt:Max></tt:XRange></tt:ContinuousZoomVelocitySpace>"
                "</tt:SupportedPTZSpaces><tt:MaximumNumberOfPresets>255</tt:MaximumNumberOfPresets>"
                "<tt:HomeSupported>false</tt:HomeSupported></tptz:PTZNode></tptz:GetNodesResponse>", None)

    def op_ContinuousMove(self, request, path):  # noqa: N802
        """ONVIF PTZ 5.3.3: move at the given velocities (an omitted axis stays still) until
        Stop, another move, or the optional Timeout."""
        self._ptz_profile(request)
        tptz, tt = fake.NAMESPACES["tptz"], fake.NAMESPACES["tt"]
        velocity = request.find(f"{{{tptz}}}Velocity")
        if velocity is None:
            raise fake.Fault(fake.FaultSpec("env:Sender", "ter:InvalidArgVal", "Velocity missing"))
        pan_tilt, zoom = velocity.find(f"{{{tt}}}PanTilt"), velocity.find(f"{{{tt}}}Zoom")
        try:
            speeds = (float(pan_tilt.get("x")) if pan_tilt is not None else 0.0,
                      float(pan_tilt.get("y")) if pan_tilt is not None else 0.0,
                      float(zoom.get("x")) if zoom is not None else 0.0)
        except (TypeError, ValueError):
            raise fake.Fault(fake.FaultSpec("env:Sender", "ter:InvalidArgVal", "Bad velocity")) from None
        if any(abs(speed) > 1.0 for speed in speeds):
            raise fake.Fault(fake.FaultSpec("env:Sender", "ter:InvalidArgVal", "Velocity out of the space's range"),
                        "<ter:InvalidVelocity/>")
        timeout = request.findtext(f"{{{tptz}}}Timeout")
        self.ptz_calls.append(("ContinuousMove", " ".join(f"{speed:g}" for speed in speeds)))
        with self._lock:
            self._settle()
            started = time.monotonic()
            self._velocity = (speeds, started, started + fake.parse_duration(timeout) if timeout else None)
        return "<tptz:ContinuousMoveResponse/>", None

    def op_Stop(self, request, path):  # noqa: N802
        """ONVIF PTZ 5.3.5: stop pan/tilt and/or zoom (both when neither flag is given)."""
        self._ptz_profile(request)
        tptz = fake.NAMESPACES["tptz"]
        flags = {axis: (request.findtext(f"{{{tptz}}}{axis}") or "true").strip().lower() in ("true", "1")
                 for axis in ("PanTilt", "Zoom")}
        self.ptz_calls.append(("Stop", " ".join(axis for axis, on in flags.items() if on)))
        self.stopped_at.append(self.ptz_position()[0])
        with self._lock:
            if self._velocity is not None and not all(flags.values()):
                speeds, started, ends = self._velocity
                self._position, _ = self._continuous_position(time.monotonic())
                kept = (0.0, 0.0, speeds[2]) if flags["PanTilt"] else (speeds[0], speeds[1], 0.0)
                self._velocity = (kept, time.monotonic(), ends)
            else:
                self._settle()
        return "<tptz:StopResponse/>", None

    def op_SetPreset(self, request, path):  # noqa: N802
        """ONVIF PTZ 5.4.2: store the current position as a preset: a new one (PresetName) or
        an existing one overwritten (PresetToken); the answer carries the token."""
        self._ptz_profile(request)
        tptz = fake.NAMESPACES["tptz"]
        name = request.findtext(f"{{{tptz}}}PresetName")
        token = request.findtext(f"{{{tptz}}}PresetToken")
        (pan, tilt, zoom), _moving = self.ptz_position()
        with self._lock:
            if token:
                preset = next((p for p in self.presets if p.token == token), None)
                if preset is None:
                    raise fake.Fault(fake.FaultSpec("env:Sender", "ter:InvalidArgVal", "No such preset"),
                                f"<ter:NoToken>{escape(token)}</ter:NoToken>")
                preset.pan, preset.tilt, preset.zoom = pan, tilt, zoom
                if name:
                    preset.name = name
            else:
                if name and any(p.name == name for p in self.presets):
                    raise fake.Fault(fake.FaultSpec("env:Sender", "ter:InvalidArgVal", "Preset name exists"),
                                "<ter:PresetExist/>")
                self._next_preset += 1
                token = f"PresetToken_{self._next_preset}"
                self.presets.append(fake.FakePreset(token, name or token, pan, tilt, zoom))
            self.ptz_calls.append(("SetPreset", token))
        return (f"<tptz:SetPresetResponse><tptz:PresetToken>{escape(token)}</tptz:PresetToken>"
                "</tptz:SetPresetResponse>", None)

    def op_RemovePreset(self, request, path):  # noqa: N802
        self._ptz_profile(request)
        token = request.findtext(f"{{{fake.NAMESPACES['tptz']}}}PresetToken") or ""
        with self._lock:
            preset = next((p for p in self.presets if p.token == token), None)
            if preset is None:
                raise fake.Fault(fake.FaultSpec("env:Sender", "ter:InvalidArgVal", "No such preset"),
                            f"<ter:NoToken>{escape(token)}</ter:NoToken>")
            self.presets.remove(preset)
            self.ptz_calls.append(("RemovePreset", token))
        return "<tptz:RemovePresetResponse/>", None

