"""PTZCmd, the 8-byte front-end control command of GB/T 28181-2016 Appendix A.3, decoded. Pure.

A platform's DeviceControl MESSAGE carries `<PTZCmd>A50F01...</PTZCmd>`: 16 hex digits.

    byte 1   A5h
    byte 2   high nibble: version (0); low nibble: checksum of the first bytes =
             (byte 1 high nibble + byte 1 low nibble + byte 2 high nibble) mod 16
    byte 3   address, low 8 bits
    byte 4   instruction
    byte 5-6 data 1 and 2
    byte 7   high nibble: data 3; low nibble: address, high 4 bits
    byte 8   checksum: (byte 1 + ... + byte 7) mod 256

Instructions (byte 4):
- PTZ, bits 7-6 = 00: bit 5 zoom out, bit 4 zoom in, bit 3 up, bit 2 down, bit 1 left,
  bit 0 right; data 1 = pan speed, data 2 = tilt speed (00h-FFh), data 3 = zoom speed (0-Fh).
  No direction bit = stop. Opposite bits together (left and right) are malformed.
- FI, bits 7-4 = 0100: focus and iris (A.3.3). Not carried out: ONVIF PTZ has no lens control.
- Presets (A.3.4): 81h set, 82h call, 83h delete; data 2 = preset number 1-255.
- Cruise 84h-88h, scan 89h-8Ah, auxiliary switches 8Ch-8Dh: not carried out.

`decode` turns a valid command into the gateway's `PtzCommand` (speeds scaled to -1..1 as ONVIF
velocities: pan > 0 right, tilt > 0 up, zoom > 0 in) or raises `PtzCmdError` saying what is
wrong (bad length, checksum, contradictory bits) or not supported.
"""

from __future__ import annotations

from gateway.status import PtzCommand

FIRST_BYTE = 0xA5
RIGHT, LEFT, DOWN, UP, ZOOM_IN, ZOOM_OUT = (1 << bit for bit in range(6))
SET_PRESET, CALL_PRESET, DELETE_PRESET = 0x81, 0x82, 0x83
UNSUPPORTED = {
    **{code: "cruise (巡航)" for code in range(0x84, 0x89)},
    0x89: "scan (扫描)", 0x8A: "scan (扫描)",
    0x8C: "auxiliary switch (辅助开关)", 0x8D: "auxiliary switch (辅助开关)",
}


class PtzCmdError(ValueError):
    """A PTZCmd that is malformed (the reason) or asks for what the gateway does not do."""


def decode(text: str) -> PtzCommand:
    """`<PTZCmd>` text -> PtzCommand; raises PtzCmdError."""
    data = _bytes(text)
    if data[0] != FIRST_BYTE:
        raise PtzCmdError(f"PTZCmd starts with {data[0]:02X}, not A5")
    expected_head = ((data[0] >> 4) + (data[0] & 0x0F) + (data[1] >> 4)) % 16
    if data[1] & 0x0F != expected_head:
        raise PtzCmdError(f"PTZCmd byte 2 checksum is {data[1] & 0x0F:X}, expected {expected_head:X}")
    expected_sum = sum(data[:7]) % 256
    if data[7] != expected_sum:
        raise PtzCmdError(f"PTZCmd checksum (byte 8) is {data[7]:02X}, expected {expected_sum:02X}")
    instruction = data[3]
    if instruction & 0xC0 == 0:
        return _motion(instruction, data[4], data[5], data[6] >> 4)
    if instruction & 0xF0 == 0x40:
        raise PtzCmdError("focus/iris control (FI instruction) is not supported: ONVIF PTZ has no lens control")
    if instruction in (SET_PRESET, CALL_PRESET, DELETE_PRESET):
        return _preset(instruction, data[5])
    if instruction in UNSUPPORTED:
        raise PtzCmdError(f"{UNSUPPORTED[instruction]} (instruction {instruction:02X}h) is not supported")
    raise PtzCmdError(f"unknown PTZCmd instruction {instruction:02X}h")


def encode(instruction: int, data1: int = 0, data2: int = 0, data3: int = 0, address: int = 1) -> str:
    """The PTZCmd text for these fields (the inverse of `decode`, for tests and tools)."""
    head = [FIRST_BYTE, (FIRST_BYTE >> 4) + (FIRST_BYTE & 0x0F) & 0x0F]
    body = [address & 0xFF, instruction & 0xFF, data1 & 0xFF, data2 & 0xFF,
            ((data3 & 0x0F) << 4) | (address >> 8 & 0x0F)]
    raw = head + body
    return bytes(raw + [sum(raw) % 256]).hex().upper()


def _bytes(text: str) -> bytes:
    cleaned = text.strip()
    if len(cleaned) != 16:
        raise PtzCmdError(f"PTZCmd must be 16 hex digits (8 bytes), got {len(cleaned)} characters")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise PtzCmdError(f"PTZCmd {cleaned[:16]!r} is not hexadecimal") from None


def _motion(bits: int, pan_speed: int, tilt_speed: int, zoom_speed: int) -> PtzCommand:
    for first, second, axis in ((LEFT, RIGHT, "left and right"), (UP, DOWN, "up and down"),
                                (ZOOM_IN, ZOOM_OUT, "zoom in and out")):
        if bits & first and bits & second:
            raise PtzCmdError(f"PTZCmd asks for {axis} at once (instruction {bits:02X}h)")
    if bits == 0:
        return PtzCommand("stop")
    pan = _direction(bits, RIGHT, LEFT) * _speed(pan_speed, 255)
    tilt = _direction(bits, UP, DOWN) * _speed(tilt_speed, 255)
    zoom = _direction(bits, ZOOM_IN, ZOOM_OUT) * _speed(zoom_speed, 15)
    return PtzCommand("move", pan=pan, tilt=tilt, zoom=zoom)


def _direction(bits: int, positive: int, negative: int) -> int:
    return 1 if bits & positive else -1 if bits & negative else 0


def _speed(value: int, top: int) -> float:
    """A speed field as a share of its top; 0 with a direction bit set moves at the slowest
    speed rather than not at all (what the operator pressed a button for)."""
    return round(max(value, 1) / top, 4)


def _preset(instruction: int, number: int) -> PtzCommand:
    if not 1 <= number <= 255:
        raise PtzCmdError(f"preset number {number} is outside 1-255")
    action = {SET_PRESET: "set", CALL_PRESET: "goto", DELETE_PRESET: "remove"}[instruction]
    return PtzCommand(action, preset=str(number))  # type: ignore[arg-type]
