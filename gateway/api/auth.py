"""Who may use the web API: the bearer token, browser sessions, login throttling, same-origin checks.

- `api.token` (from the config or `${ENV}`) is the one credential. Scripts send it as
  `Authorization: Bearer <token>`; browsers trade it once (login form, or the kiosk link
  `/?token=`) for a session: a random id in an HttpOnly, SameSite=Strict cookie. The gateway
  keeps only a hash of each id (in `data_dir`, so a restart does not log the wall screen out);
  logout revokes it, and changing the token revokes them all. Tokens are compared in constant
  time.
- Wrong credentials on every path (Bearer header, cookie, login form, kiosk link) are throttled
  per client (gateway/api/throttle.py: a guesser gets 5 tries in 5 minutes, however many
  connections it opens; a client that has not guessed wrong is never held back) and logged
  with the client's address, never the guess.
- Without a token the API is open, which is allowed only on a loopback bind, and then answers
  only loopback Host names (no DNS rebinding from a web page).
- State-changing requests from a browser (cookie or open mode) must come from the page's own
  origin, so another site cannot acknowledge alerts or log an officer out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.throttle import AuthThrottle
from gateway.config.api import EMPTY_TOKEN, ApiSection, is_blank, is_loopback

log = logging.getLogger("gateway.api")

SESSION_COOKIE = "gw_session"
SESSION_MAX_AGE_S = 30 * 86400
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
FAILED_AUTH_DELAY_S = 0.5
"""Each wrong credential costs its sender this long (the throttle bounds parallel guessing)."""


class ApiConfigError(ValueError):
    """The `api` section cannot be served safely (message says what to change)."""


class Redirect(Exception):
    """Answer with a redirect instead of an error (a browser asking for the page goes to /login)."""

    def __init__(self, location: str) -> None:
        self.location = location


def check_settings(settings: ApiSection) -> None:
    """Refuse an empty token, and an open API beyond this machine; warn about a short token.

    The config already refuses both (at `gateway check`); this guards settings built in code."""
    if is_blank(settings.token):
        raise ApiConfigError(f"api.token {EMPTY_TOKEN}")
    if settings.token is None and not is_loopback(settings.bind):
        raise ApiConfigError(f"api.bind is {settings.bind!r} but api.token is not set: the web API would be "
                             "open to the network. Set api.token or bind to 127.0.0.1.")
    if settings.token is None:
        log.info("web API on %s:%d without api.token: open to programs on this machine only (requests must "
                 "name a loopback host)", settings.bind, settings.port)
    for warning in settings.warnings():
        log.warning(warning)


# --------------------------------------------------------------------------- sessions


class SessionStore:
    """Browser sessions: random ids handed out at login, kept as hashes until they expire or are
    revoked. Persisted to `path` (if given) so that a gateway restart keeps officers logged in."""

    def __init__(self, token: bytes, path: Path | None = None, max_age_s: float = SESSION_MAX_AGE_S) -> None:
        self.path = path
        self.max_age_s = max_age_s
        self._token_mark = hmac.new(token, b"gateway-web-session/2", hashlib.sha256).hexdigest()
        self._sessions: dict[str, float] = {}  # sha256(id) -> expiry (epoch s)
        self._lock = threading.Lock()
        self._load()

    def create(self) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._forget_expired(time.time())
            self._sessions[_digest(session_id)] = time.time() + self.max_age_s
            self._save()
        return session_id

    def valid(self, session_id: str) -> bool:
        expires = self._sessions.get(_digest(session_id))
        return expires is not None and expires > time.time()

    def revoke(self, session_id: str) -> bool:
        with self._lock:
            removed = self._sessions.pop(_digest(session_id), None) is not None
            if removed:
                self._save()
        return removed

    def __len__(self) -> int:
        return len(self._sessions)

    def _forget_expired(self, now: float) -> None:
        for key in [key for key, expires in self._sessions.items() if expires <= now]:
            del self._sessions[key]

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("token") != self._token_mark:
                log.info("web sessions from before were issued for another api.token: every browser "
                         "logs in again")
                return
            self._sessions = {str(k): float(v) for k, v in data.get("sessions", {}).items()}
            self._forget_expired(time.time())
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            log.warning("web sessions file %s unreadable (%s); browsers log in again", self.path, exc)

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"token": self._token_mark, "sessions": self._sessions}),
                                 encoding="utf-8")
            temporary.chmod(0o600)
            temporary.replace(self.path)
        except OSError as exc:
            log.warning("web sessions not saved to %s (%s): browsers log in again after a restart",
                        self.path, exc)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


# --------------------------------------------------------------------------- auth


@dataclass(frozen=True)
class Verdict:
    """What one request's credentials are worth: `problem` None means let in; `retry_after`
    above 0 means the client is held back (429) and its credentials were not even compared."""

    how: str  # 'open', 'bearer', 'cookie', 'login form', 'kiosk link' or 'none'
    problem: str | None = None
    retry_after: float = 0.0

    @property
    def throttled(self) -> bool:
        return self.retry_after > 0


class Auth:
    """Bearer token or session cookie; open when no token is set. Every way of presenting a
    credential goes through one `AuthThrottle` and one log line per counted failure."""

    def __init__(self, token: str | None, sessions_path: Path | None = None,
                 throttle: AuthThrottle | None = None) -> None:
        """token None: the open (loopback-only) API; an empty token is refused (ApiConfigError)."""
        if is_blank(token):
            raise ApiConfigError(f"api.token {EMPTY_TOKEN}")
        self._token = token.encode("utf-8") if token is not None else None
        self.sessions = SessionStore(self._token, sessions_path) if self._token else None
        self.throttle = throttle or AuthThrottle()

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def token_ok(self, value: str) -> bool:
        return self._token is not None and hmac.compare_digest(value.encode("utf-8", "replace"), self._token)

    def check(self, request: Request) -> Verdict:
        """The request's credentials: the Bearer header, else the session cookie."""
        if self._token is None:
            return Verdict("open")
        client = client_address(request)
        header = request.headers.get("authorization")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer":
                return self._refuse(client, header, "bearer", "invalid credentials: use 'Authorization: Bearer'")
            return self.try_token(client, value.strip(), "bearer")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            assert self.sessions is not None
            if self.sessions.valid(cookie):  # unguessable: let in even while the address is held back
                return Verdict("cookie")
            return self._refuse(client, cookie, "cookie", "session expired: log in again")
        return Verdict("none", "authentication required: send 'Authorization: Bearer <token>'")

    def try_token(self, client: str, token: str, how: str) -> Verdict:
        """Compare a token sent by `client` (unless it is held back); count and log a wrong one."""
        wait = self.throttle.retry_after(client, time.monotonic())
        if wait > 0:
            return Verdict(how, "too many failed attempts: try again later", wait)
        if not self.token_ok(token):
            return self._refuse(client, token, how, "invalid credentials")
        self.throttle.succeeded(client)
        return Verdict(how)

    def _refuse(self, client: str, value: str, how: str, problem: str) -> Verdict:
        wait = self.throttle.retry_after(client, time.monotonic())
        if wait > 0:
            return Verdict(how, "too many failed attempts: try again later", wait)
        failures = self.throttle.failed(client, time.monotonic(), value)
        if failures is not None:
            limit, minutes = self.throttle.per_client, self.throttle.window_s / 60
            log.warning("API auth failed from %s (%s; %d of %d tries in %.0f min)", client, how, failures,
                        limit, minutes)
            if failures >= limit:
                log.warning("API auth: %s is refused for %.0f min after %d failed attempts; other clients "
                            "are not affected", client, minutes, limit)
        return Verdict(how, problem)

    def start_session(self, response: Response, request: Request) -> Response:
        """Set a new session cookie on `response` (after a good login or kiosk link)."""
        if self.sessions is not None:
            response.set_cookie(SESSION_COOKIE, self.sessions.create(), max_age=SESSION_MAX_AGE_S, path="/",
                                httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    def end_session(self, response: Response, request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and self.sessions is not None:
            self.sessions.revoke(cookie)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def wants_page(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def host_name(host_header: str) -> str:
    try:
        return urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return ""


def same_origin(request: Request) -> bool:
    """The request comes from this server's own pages (or from a non-browser client)."""
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site")
    if origin is None or origin == "null":  # "null": e.g. a form post under a strict referrer policy
        return site in ("same-origin", "none") or (origin is None and site is None)
    try:
        parts = urlsplit(origin)
        return bool(parts.netloc) and parts.netloc.lower() == request.headers.get("host", "").lower()
    except ValueError:
        return False


_bearer = HTTPBearer(auto_error=False, description="api.token; browsers use the session cookie from /login.")


def authorize_dependency(auth: Auth) -> Callable[..., Any]:
    """The dependency every secured route has: credentials, loopback-only when open, same origin.

    It is a coroutine: the throttle's check, the comparison and the count of a failure happen
    without a switch in between, so parallel guesses cannot slip past the count."""

    async def authorize(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None
    ) -> None:
        if not auth.enabled and host_name(request.headers.get("host", "")) not in LOOPBACK_HOSTS:
            raise HTTPException(403, "this gateway's API is open to loopback only; use http://127.0.0.1 "
                                     "or set api.token")
        verdict = auth.check(request)
        if verdict.problem is not None:
            if wants_page(request) and request.url.path in ("/", "/docs"):
                raise Redirect("/login")
            if verdict.throttled:
                raise HTTPException(429, verdict.problem, headers={"Retry-After": str(math.ceil(verdict.retry_after))})
            if verdict.how != "none":
                await asyncio.sleep(FAILED_AUTH_DELAY_S)
            raise HTTPException(401, verdict.problem, headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
        if verdict.how in ("cookie", "open") and request.method not in SAFE_METHODS and not same_origin(request):
            raise HTTPException(403, "cross-site request refused")

    return authorize
