"""What arrives from outside the gateway, checked once: JSON objects and plain text.

JSON objects (acks, remote-look requests, sensor payloads): anything can arrive on an MQTT
topic: bytes that are not UTF-8, not JSON, a JSON list, or JSON nested thousands of levels deep
(which makes Python's parser raise RecursionError). Every such payload becomes one
`PayloadError` naming what is wrong, so the caller logs one line and counts it instead of
logging a traceback per message.

Plain text (names, case numbers, notes), as the page, the log and MQTT show it: besides ASCII
control characters, Unicode has characters that break a line where no `\\n` is (U+0085 next
line, U+2028 line separator, U+2029 paragraph separator) and characters that reorder what
follows them on screen (bidirectional overrides, isolates and marks: U+202E makes
"张三\u202Enimda" read as "张三admin"). In an officer's name or a case number they can only
forge a log line or disguise who acknowledged, so they are refused (`unsafe_character`); the
same set is in the API's patterns (`ONE_LINE`, `NAME`, `NOTE`), so the page's form and MQTT
refuse the same text.
"""

from __future__ import annotations

import json
import re
from typing import Any

# --------------------------------------------------------------------------- JSON objects


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


# --------------------------------------------------------------------------- plain text



UNSAFE_RANGES = "\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
"""C0 and C1 controls, DEL, line and paragraph separators, bidirectional marks, embeddings,
overrides and isolates (a regex character-class body, for Python's re and pydantic's)."""
NOTE_UNSAFE_RANGES = UNSAFE_RANGES.replace("\\x00-\\x1f", "\\x00-\\x08\\x0b-\\x1f")
"""The same, with line feed and tab allowed (a note may have several lines)."""

ONE_LINE = f"^[^{UNSAFE_RANGES}]*$"
NAME = f"^[^{UNSAFE_RANGES}]*[^\\s{UNSAFE_RANGES}][^{UNSAFE_RANGES}]*$"
"""One line with at least one visible character."""
NOTE = f"^[^{NOTE_UNSAFE_RANGES}]*$"

_UNSAFE = re.compile(f"[{UNSAFE_RANGES}]")
_NOTE_UNSAFE = re.compile(f"[{NOTE_UNSAFE_RANGES}]")


def unsafe_character(text: str, lines: bool = False) -> str | None:
    """The first character `text` may not hold, as `U+2028` (None: plain text). lines: allow
    line feeds and tabs (notes)."""
    found = (_NOTE_UNSAFE if lines else _UNSAFE).search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"
