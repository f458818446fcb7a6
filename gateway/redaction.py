"""Credentials never leave the process: the one way to mask them in any text or URL.

Used by the log filter, by error messages and by every API/CLI/MQTT output that shows a URL
(camera streams, ONVIF answers, webhook addresses): there is no other redaction helper.
Four kinds of secret are masked:

- the password of a URL's userinfo (`rtsp://admin:***@10.0.0.5/...`). Cameras accept passwords
  that are not valid in a URL ('@', '/', ':', spaces), so the userinfo ends at the LAST '@'
  before the host, not at the first '/' or '@' a URL parser would stop at:
  `rtsp://admin:Pa@ss/word9@10.0.0.5/x` -> `rtsp://admin:***@10.0.0.5/x`;
- query parameters whose name looks like a secret, alone or in a composite (`pwd`, `user_pwd`,
  `access_token`, `apiKey`, `X-Amz-Signature`, ...: `secret_parameter`); users stay readable;
- every secret value the configuration took from the environment (`register_secrets`, called
  by the config loader), wherever it appears, raw or percent-encoded;
- given the URL a text is about (`redact(text, url)`), that URL's password and secret query
  values wherever they stand alone (an FFmpeg error that quotes the password by itself).

Masking more than needed is the accepted failure: an '@' later on the same line may take the
host with it, never a password with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

MASK = "***"
_HOST_AHEAD = r"(?=[\w.\-\[\]:]+(?:[/?#\s\"'<>),;]|$))"
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/\s]*):"
    r"(?P<password>(?:(?!://)\S){0,256}|(?:(?!://)[^\n]){0,256}?)@" + _HOST_AHEAD
)
"""scheme://user:password@host. The password is first tried as everything up to the last '@'
in the URL (no spaces) that a host follows; only when that finds none, up to the first such
'@' on the line (a password with a space). Neither runs into the next URL ('://')."""
_QUERY_PARAMETER = re.compile(r"(?P<lead>[?&;](?P<name>[A-Za-z0-9_.\-]{1,64})=)(?P<value>[^&#\s\"'<>]*)")
SECRET_WORDS = ("pwd", "pw", "pass", "passwd", "password", "token", "secret", "key", "auth", "sig", "signature",
                "credential", "cred")
"""A query parameter is secret when a word of its name is one of these, or starts or ends with
one (of 3+ letters): `user_pwd`, `accessToken`, `loginpass`, `sessionkey`, `passphrase`."""
_NAME_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
MIN_BLIND_MASK = 4
"""Shorter secrets are masked only where they stand alone (masking every 'ab' would garble text)."""
MIN_REGISTERED = 6
"""Secrets registered for the whole process are at least this long: a 3-character 'password'
masked in every log line would garble them (and such a password protects nothing)."""
MIN_OWN_SECRET = 3
"""A given URL's own password is masked alone from this length (only in text about that URL)."""

_registered: tuple[str, ...] = ()


def url_passwords(text: str) -> list[str]:
    """The userinfo passwords of the URLs in `text`, as `redact` sees them ('@', '/', spaces too)."""
    return [match["password"] for match in _URL_CREDENTIALS.finditer(text)]


def secret_parameter(name: str) -> bool:
    """Whether a query parameter of this name carries a secret (its value is masked)."""
    for word in _NAME_WORD.findall(name):
        word = word.lower()
        if word in SECRET_WORDS or any(len(stem) >= 3 and (word.startswith(stem) or word.endswith(stem))
                                       for stem in SECRET_WORDS):
            return True
    return False


def secret_values(url: str) -> list[str]:
    """The password and the secret query values of `url`."""
    values = url_passwords(url)
    values += [m["value"] for m in _QUERY_PARAMETER.finditer(url) if m["value"] and secret_parameter(m["name"])]
    return values


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


def redact(text: str, url: str | None = None) -> str:
    """`text` with URL passwords, secret query values and registered secrets masked; given the
    `url` the text is about, also that URL's password and secret values wherever they stand."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _QUERY_PARAMETER.sub(_mask_parameter, text)
    if url:
        forms = {form for value in secret_values(url) for form in (value, quote(value, safe=""), unquote(value))}
        text = mask_values(text, sorted((f for f in forms if len(f) >= MIN_OWN_SECRET), key=len, reverse=True))
    return mask_values(text, _registered)


def _mask_parameter(match: re.Match[str]) -> str:
    if not match["value"] or not secret_parameter(match["name"]):
        return match[0]
    return match["lead"] + MASK
