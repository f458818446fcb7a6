"""The `api:` section: where the web page and API listen, and the token that guards them.

An API without a token is allowed on a loopback bind only: `gateway check` refuses
`bind: 0.0.0.0` without one (the same rule the server enforces at start), and warns about a
token too short to resist guessing. An empty token (`${API_TOKEN}` with the variable empty,
`${API_TOKEN:-}`, `""`) is refused on any bind: it reads as "auth on" in the file while
guarding nothing, so it is an error rather than a quiet fall back to an open API.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.base import OneLine, Secret, StrictModel

SHORT_TOKEN = 16
"""Tokens shorter than this are warned about (at `gateway check` and at start)."""
EMPTY_TOKEN = ("is empty (is the ${VARIABLE} it comes from unset or empty?): an empty token guards nothing. "
               "Set it to at least 16 random characters (e.g. `openssl rand -hex 16`), or remove the key to "
               "serve without a token on 127.0.0.1 only")
"""Why an empty `api.token` is refused, at `gateway check` and when the server starts."""


def is_blank(token: SecretStr | str | None) -> bool:
    """A token that is set but holds nothing (empty or spaces): a missing secret, not a secret."""
    if token is None:
        return False
    value = token.get_secret_value() if isinstance(token, SecretStr) else token
    return not value.strip()


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiSection(StrictModel):
    bind: OneLine = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    token: Secret | None = Field(default=None, description="Needed on any bind but loopback; use ${ENV}.")
    proxy_headers: bool = Field(
        default=False, description="Behind a TLS reverse proxy: believe its X-Forwarded-Proto/For "
                                   "(session cookies then get Secure).")
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"], description="Addresses whose forwarded headers are believed.")
    public_url: str | None = Field(
        default=None, description="How the centre reaches this gateway's API (http://10.20.3.7:8080): the "
                                  "alerts' clip links start with it; default: links relative to the gateway.")

    @field_validator("public_url")
    @classmethod
    def _http_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be an http:// or https:// address with a host (and no query), e.g. "
                             "http://10.20.3.7:8080")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if is_blank(value):
            raise ValueError(EMPTY_TOKEN)
        return value

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> ApiSection:
        if self.token is None and not is_loopback(self.bind):
            raise ValueError(f"api.bind is {self.bind!r} but api.token is not set: the web API would be open "
                             "to the network. Set api.token (e.g. token: ${GATEWAY_API_TOKEN}) or bind to "
                             "127.0.0.1.")
        return self

    def warnings(self) -> list[str]:
        """What `gateway check` and the start warn about (the file is still valid)."""
        token = self.token.get_secret_value() if self.token is not None else ""
        if token and len(token) < SHORT_TOKEN:
            return [f"api.token is only {len(token)} characters; use at least {SHORT_TOKEN} random characters "
                    "(e.g. `openssl rand -hex 16`)"]
        return []
