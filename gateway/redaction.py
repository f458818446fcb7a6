"""Credentials never leave the process: one function masks them in any text.

Used by the log filter, by error messages and by every API/CLI output that shows a URL.
"""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^/\s]*)@"
)


def redact(text: str) -> str:
    """Replace the password of every `scheme://user:password@` in `text` with ***."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
