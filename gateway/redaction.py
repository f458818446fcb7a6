"""Credentials never leave the process: one function masks them in any text.

Used by the log filter, by error messages and by every API/CLI/MQTT output that shows a URL.
Three kinds of secret are masked:

- the password of a URL's userinfo (`rtsp://admin:***@10.0.0.5/...`), even when it holds a
  slash or a space that a URL parser would stop at;
- query parameters whose name means a password or token (`?pwd=***`, `&password=***`,
  `token=***`: Hikvision- and Dahua-style stream URLs carry them);
- every secret value the configuration took from the environment (`register_secrets`, called
  by the config loader), wherever it appears, raw or percent-encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>(?:(?!://)[^\n]){0,256}?)@"
    r"(?=[\w.\-\[\]:]+(?:[/?#\s\"'<>)]|$))"
)
"""scheme://user:password@host — the password runs to the last '@' before the host, so one
holding '@', '/' or a space (invalid in a URL, accepted by cameras) is masked whole."""
SECRET_PARAMETERS = ("password", "passwd", "pwd", "pass", "token", "access_token", "auth", "authorization",
                     "key", "apikey", "api_key", "secret", "sig", "signature")
_SECRET_QUERY = re.compile(
    r"(?P<lead>[?&;](?:" + "|".join(SECRET_PARAMETERS) + r")=)(?P<value>[^&#\s\"']*)", re.IGNORECASE)
MIN_BLIND_MASK = 4
"""Shorter secrets are masked only where they stand alone (masking every 'ab' would garble text)."""
MIN_REGISTERED = 6
"""Secrets registered for the whole process are at least this long: a 3-character 'password'
masked in every log line would garble them (and such a password protects nothing)."""

_registered: tuple[str, ...] = ()


def url_passwords(text: str) -> list[str]:
    """The userinfo passwords of the URLs in `text`, as `redact` sees them (slashes and spaces too)."""
    return [match["password"] for match in _URL_CREDENTIALS.finditer(text)]


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values (passwords, tokens from ${ENV}) so every later `redact` masks them."""
    global _registered
    forms = set(_registered)
    for value in values:
        if len(value) >= MIN_REGISTERED:
            forms.update({value, quote(value, safe="")})
    _registered = tuple(sorted(forms, key=len, reverse=True))


def mask_values(text: str, secrets: Iterable[str]) -> str:
    """`text` with every one of `secrets` replaced by ***."""
    for secret in secrets:
        if not secret or secret not in text:
            continue
        if len(secret) >= MIN_BLIND_MASK:
            text = text.replace(secret, MASK)
        else:
            text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", MASK, text)
    return text


def redact(text: str) -> str:
    """`text` with URL passwords, secret query parameters and registered secrets masked."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _SECRET_QUERY.sub(lambda m: m["lead"] + (MASK if m["value"] else ""), text)
    return mask_values(text, _registered)
