"""JSON objects that arrive from the network (acks, remote-look requests, sensor payloads).

Anything can arrive on an MQTT topic: bytes that are not UTF-8, not JSON, a JSON list, or JSON
nested thousands of levels deep (which makes Python's parser raise RecursionError). Every such
payload becomes one `PayloadError` naming what is wrong, so the caller logs one line and counts
it instead of logging a traceback per message.
"""

from __future__ import annotations

import json
from typing import Any


class PayloadError(ValueError):
    """The payload is not a usable JSON object; the message says why (never echoes it)."""


def json_object(payload: bytes | str, limit: int) -> dict[str, Any]:
    """The JSON object in `payload` (at most `limit` bytes), or PayloadError."""
    if len(payload) > limit:
        raise PayloadError(f"payload is {len(payload)} bytes, more than the {limit} allowed")
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        value = json.loads(text)
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"payload is not JSON ({exc.msg} at char {exc.pos})") from None
    except RecursionError:
        raise PayloadError("payload is JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise PayloadError(f"payload is a JSON {type(value).__name__}, expected an object")
    return value
