"""PTZCmd decoding (GB/T 28181-2016 A.3): every command kind, the commands WVP sends byte for
byte, and malformed ones refused with the reason."""

from __future__ import annotations

import pytest

from gateway.outputs.gb28181.ptzcmd import PtzCmdError, decode, encode
from gateway.status import PtzCommand


def wvp_ptz(left_right: int, up_down: int, in_out: int, move_speed: int, zoom_speed: int) -> str:
    """WVP's SipUtils.cmdString, transcribed: what its PTZ buttons send (1 left/up/out, 2 right/down/in)."""
    code = ({2: 0x01, 1: 0x02}.get(left_right, 0) | {2: 0x04, 1: 0x08}.get(up_down, 0)
            | {2: 0x10, 1: 0x20}.get(in_out, 0))
    if 0 < zoom_speed < 16:
        zoom_speed = 16
    check = (0xA5 + 0x0F + 0x01 + code + move_speed + move_speed + (zoom_speed & 0xF0)) % 0x100
    return f"A50F01{code:02X}{move_speed:02X}{move_speed:02X}{f'{zoom_speed:X}'[0]}0{check:02X}"


def wvp_front_end(code: int, parameter1: int, parameter2: int, combine2: int = 0) -> str:
    """WVP's SIPCommander.frontEndCmdString (presets and the other front-end commands)."""
    check = (0xA5 + 0x0F + 0x01 + code + parameter1 + parameter2 + (combine2 << 4)) % 0x100
    return f"A50F01{code:02X}{parameter1:02X}{parameter2:02X}{combine2 << 4:02X}{check:02X}"


@pytest.mark.parametrize("command, expected", [
    (wvp_ptz(2, 0, 0, 255, 0), PtzCommand("move", pan=1.0)),  # right, full speed
    (wvp_ptz(1, 0, 0, 51, 0), PtzCommand("move", pan=-0.2)),  # left
    (wvp_ptz(0, 1, 0, 255, 0), PtzCommand("move", tilt=1.0)),  # up
    (wvp_ptz(0, 2, 0, 255, 0), PtzCommand("move", tilt=-1.0)),  # down
    (wvp_ptz(2, 1, 0, 255, 0), PtzCommand("move", pan=1.0, tilt=1.0)),  # right and up
    (wvp_ptz(0, 0, 2, 0, 240), PtzCommand("move", zoom=1.0)),  # zoom in, speed F
    (wvp_ptz(0, 0, 1, 0, 16), PtzCommand("move", zoom=round(-1 / 15, 4))),  # zoom out, slowest
    (wvp_ptz(0, 0, 0, 0, 0), PtzCommand("stop")),
    (wvp_front_end(0x82, 0, 3), PtzCommand("goto", preset="3")),
    (wvp_front_end(0x81, 0, 12), PtzCommand("set", preset="12")),
    (wvp_front_end(0x83, 0, 255), PtzCommand("remove", preset="255")),
])
def test_every_command_kind_as_wvp_sends_it(command: str, expected: PtzCommand):
    assert decode(command) == expected
    assert decode(command.lower()) == expected  # hex case does not matter


def test_speeds_scale_to_onvif_velocities_and_a_zero_speed_still_moves():
    assert decode(encode(0x01, 0x80, 0)).pan == pytest.approx(128 / 255, abs=1e-4)
    assert decode(encode(0x09, 0, 0)) == PtzCommand("move", pan=round(1 / 255, 4), tilt=round(1 / 255, 4))


def test_encode_is_the_inverse_and_matches_wvp():
    assert encode(0x01, 0xFF, 0xFF) == wvp_ptz(2, 0, 0, 255, 0)
    assert encode(0x82, 0, 3) == wvp_front_end(0x82, 0, 3)
    assert decode(encode(0x05, 10, 20, 0, address=0x123)) == PtzCommand("move", pan=round(10 / 255, 4),
                                                                        tilt=round(-20 / 255, 4))


@pytest.mark.parametrize("command, reason", [
    ("A50F0101", "16 hex digits"),
    ("A50F010180800000XX", "16 hex digits"),
    ("A50F01018080GG00", "not hexadecimal"),
    ("A40F010180800000", "starts with A4"),
    ("A50E010180800000", "byte 2 checksum is E, expected F"),
    (encode(0x01, 0x80, 0x80)[:-2] + "00", r"checksum \(byte 8\) is 00, expected B6"),
    (encode(0x03, 0x80, 0x80), "left and right at once"),
    (encode(0x0C, 0x80, 0x80), "up and down at once"),
    (encode(0x30, 0, 0, 5), "zoom in and out at once"),
    (encode(0x82, 0, 0), "preset number 0 is outside 1-255"),
    (encode(0x44, 0x40, 0), "focus/iris control"),
    (encode(0x84, 1, 2), "cruise"),
    (encode(0x89, 1, 0), "scan"),
    (encode(0x8C, 1, 0), "auxiliary switch"),
    (encode(0xC1, 0, 0), "unknown PTZCmd instruction C1h"),
])
def test_malformed_and_unsupported_commands_are_refused_with_the_reason(command: str, reason: str):
    with pytest.raises(PtzCmdError, match=reason):
        decode(command)
