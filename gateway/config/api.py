"""The `api:` section: where the web page and API listen, and the token that guards them.

An API without a token is allowed on a loopback bind only: `gateway check` refuses
`bind: 0.0.0.0` without one (the same rule the server enforces at start), and warns about a
token too short to resist guessing.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.config.base import OneLine, Secret, StrictModel

SHORT_TOKEN = 16
"""Tokens shorter than this are warned about (at `gateway check` and at start)."""


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
