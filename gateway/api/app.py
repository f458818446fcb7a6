"""The gateway's web API and duty-officer page (FastAPI), served from the gateway itself.

Routes (OpenAPI at `/openapi.json`, a self-hosted reference page at `/docs`):

    GET  /healthz                           liveness, no auth
    GET  /readyz                            200 when every reader and the detector are alive, else 503
    GET  /api/info                          gateway id/name, version, whether auth is on
    GET  /api/cameras                       cameras with health
    GET  /api/cameras/{id}                  one camera
    GET  /api/cameras/{id}/snapshot.jpg     live annotated JPEG of the latest frame
    GET  /api/events                        events, newest first; filters camera/type/state/since/acked;
                                            paging limit/offset; `rev` to stream changes after
    GET  /api/events/stream                 server-sent events: `alert` for every new or changed event
    GET  /api/events/{id}                   one event with its latest payload (picture data stripped)
    GET  /api/events/{id}/snapshot.jpg      its evidence picture (?which=start|peak|latest)
    POST /api/events/{id}/ack               acknowledge: {"by", "case_id"?, "note"?} -> Outbox.record_ack
    GET  /metrics                           Prometheus text format
    GET  /                                  the duty-officer page (alerts, camera wall, installer view)

Authentication (`api.token`, from the config or `${ENV}`):
    Every route but `/healthz` and the login form needs `Authorization: Bearer <token>`, or the
    session cookie the page gets from the login form (`POST /login`), or by opening
    `/?token=<token>` once (a kiosk bookmark: the token is traded for the cookie and the browser
    is redirected to `/`, so it does not stay in the address bar; access logs mask it). The
    cookie is HttpOnly, SameSite=Strict, and holds an HMAC of the token, not the token; changing
    the token logs every browser out. Tokens are compared in constant time.
    Without a token the API is open, which is allowed only on a loopback bind (127.0.0.1, ::1,
    localhost): `create_app` refuses a non-loopback bind without a token (`ApiConfigError`).
    An open API answers only loopback Host names (no DNS-rebinding from a web page).
    State-changing requests from a browser (cookie or open mode) must come from the page's own
    origin (`Origin` checked), so another site cannot acknowledge alerts (403 otherwise).
    Missing or wrong credentials: 401 with `WWW-Authenticate: Bearer`; a browser asking for the
    page is redirected to the login form instead.

Nothing user-supplied becomes a path: event ids must be uuids, camera ids must be configured
ids, static files come from a fixed list. Every string that can hold a URL is redacted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import anyio
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator, BaseModel, ConfigDict, Field

from gateway import __version__
from gateway.api.view import CameraStatus, GatewayView, ZoneOutline
from gateway.config.models import IDENT_PATTERN, ApiSection
from gateway.events.types import ALERT_TYPE_NAMES
from gateway.history import EVENT_ID_RE, EventHistory, EventRecord
from gateway.metrics import GatewayMetrics
from gateway.onvif.patrol import PatrolStatus
from gateway.outbox import UnknownEventError
from gateway.redaction import redact

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
SESSION_COOKIE = "gw_session"
SESSION_MAX_AGE_S = 30 * 86400
SSE_HEARTBEAT_S = 15.0
SSE_MAX_CLIENTS = 64
SNAPSHOT_CACHE_S = 0.5
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
}
STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9]+)+$")
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
LOGIN_CSP = CSP.replace("style-src 'self'", "style-src 'unsafe-inline'")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
NO_STORE = {"Cache-Control": "no-store"}
MAX_BODY_BYTES = 64 * 1024

EventIdParam = Annotated[str, PathParam(pattern=EVENT_ID_RE.pattern, description="The event's uuid.")]
CameraIdParam = Annotated[str, PathParam(pattern=IDENT_PATTERN, description="A configured camera id.")]


class ApiConfigError(ValueError):
    """The `api` section cannot be served safely (message says what to change)."""


# =========================================================================== schemas


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


class Info(BaseModel):
    gateway_id: str
    gateway_name: str
    version: str
    auth: bool = Field(description="True when the API needs a token (the page then offers a logout).")
    time: str = Field(description="The gateway's clock, ISO-8601 with offset.")
    rev: int = Field(description="Newest event revision (stream changes after it).")


class ZoneOut(BaseModel):
    id: str
    name: str
    polygon: list[tuple[float, float]] = Field(description="Points in decoded-frame pixels.")


class CameraOut(BaseModel):
    id: str
    name: str
    grid_id: str
    address: str
    state: str = Field(description="connecting | streaming | backoff | stopped | offline")
    analysed_fps: float
    decoded_fps: float
    last_frame_age_s: float | None
    reconnects: int
    last_error: str | None = Field(description="Last stream error, credentials redacted.")
    skip_ratio: float | None
    frame_size: tuple[int, int] | None = Field(description="[width, height] of the decoded frame.")
    zones: list[ZoneOut]
    masks: list[ZoneOut]
    preset: str | None
    source: str = Field(description="Stream address, credentials redacted.")
    resolution: tuple[int, int] | None = Field(description="[width, height] the YAML's pixel polygons refer to.")
    coordinates: Literal["pixels", "normalized"]
    snapshot_url: str
    patrol: PatrolStatus | None = Field(default=None, description="PTZ patrol state; null without a patrol.")


class AckOut(BaseModel):
    by: str
    case_id: str
    at: str = Field(description="When the ack was recorded, ISO-8601 with offset.")
    note: str | None = None


class EventOut(BaseModel):
    event_id: str
    rev: int = Field(description="Revision of this event's last change (the stream's `id:`).")
    seq: int
    state: Literal["start", "update", "end"]
    active: bool
    type: str
    severity: int
    title_zh: str
    camera_id: str
    camera_name: str
    grid_id: str
    address: str
    lat: float | None
    lon: float | None
    zone_id: str | None
    zone_name: str | None
    rule_id: str | None
    count: int | None
    peak_count: int | None
    density_per_m2: float | None
    started_at: str
    updated_at: str
    ended_at: str | None
    snapshot_url: str | None = Field(description="The start picture, if kept.")
    peak_snapshot_url: str | None = Field(description="The latest picture taken when the count peaked, if any.")
    snapshot_evicted: bool = Field(description="Pictures were deleted by the size cap or retention.")
    ack: AckOut | None


class EventDetail(EventOut):
    payload: dict[str, Any] | None = Field(description="The latest gw.alert/1 payload, picture data stripped.")


class EventPageOut(BaseModel):
    items: list[EventOut]
    total: int
    limit: int
    offset: int
    rev: int = Field(description="Newest revision when read: open the stream with ?after=rev.")


ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
"""Printable text on one line (no control characters)."""
NAME = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
"""One line with at least one visible character."""
NOTE = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
"""Text that may have line breaks and tabs, no other control characters."""


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str = Field(default="web", min_length=1, max_length=64, pattern=NAME,
                    description="Who acknowledged (the officer's name).")
    case_id: str | None = Field(default=None, max_length=64, pattern=ONE_LINE,
                                description="Case number, if one was opened.")
    note: str | None = Field(default=None, max_length=500, pattern=NOTE)


class AckResult(BaseModel):
    event_id: str
    new: bool = Field(description="False when the same ack was already recorded.")
    ack: AckOut
    event: EventOut | None


class Problem(BaseModel):
    detail: str


# =========================================================================== auth


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(settings: ApiSection) -> None:
    """Refuse to serve an open API beyond this machine."""
    token = settings.token.get_secret_value() if settings.token is not None else ""
    if not token and not is_loopback(settings.bind):
        raise ApiConfigError(
            f"api.bind is {settings.bind!r} but api.token is not set: the web API would be open to the "
            "network. Set api.token (e.g. token: ${GATEWAY_API_TOKEN}) or bind to 127.0.0.1."
        )
    if token and len(token) < 16:
        log.warning("api.token is only %d characters; use at least 16 random characters", len(token))


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


class Auth:
    """Bearer token or session cookie, compared in constant time; open when no token is set."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode("utf-8") if token else None
        self.session = (
            hmac.new(self._token, b"gateway-web-session/1", hashlib.sha256).hexdigest() if self._token else None
        )

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def token_ok(self, value: str) -> bool:
        return self._token is not None and hmac.compare_digest(value.encode("utf-8"), self._token)

    def check(self, request: Request) -> tuple[str | None, str]:
        """(problem or None, how): how is 'open', 'bearer' or 'cookie'."""
        if self._token is None:
            return None, "open"
        header = request.headers.get("authorization")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer" and self.token_ok(value.strip()):
                return None, "bearer"
            return "invalid credentials", "bearer"
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            assert self.session is not None
            if hmac.compare_digest(cookie.encode("utf-8", "replace"), self.session.encode()):
                return None, "cookie"
            return "session expired: log in again", "cookie"
        return "authentication required: send 'Authorization: Bearer <token>'", "none"


def _wants_page(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def _host_name(host_header: str) -> str:
    try:
        return urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return ""


def _same_origin(request: Request) -> bool:
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


def _authorize_dependency(auth: Auth) -> Callable[..., Any]:
    def authorize(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None
    ) -> None:
        if not auth.enabled and _host_name(request.headers.get("host", "")) not in LOOPBACK_HOSTS:
            raise HTTPException(403, "this gateway's API is open to loopback only; use http://127.0.0.1 "
                                     "or set api.token")
        problem, how = auth.check(request)
        if problem is not None:
            if _wants_page(request) and request.url.path in ("/", "/docs"):
                raise _Redirect("/login")
            raise HTTPException(401, problem, headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
        if how in ("cookie", "open") and request.method not in SAFE_METHODS and not _same_origin(request):
            raise HTTPException(403, "cross-site request refused")

    return authorize


# =========================================================================== server-sent events


class StreamHub:
    """Wakes every open event stream when the history changes (listener runs on any thread)."""

    def __init__(self) -> None:
        self.clients: set[asyncio.Event] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self._unsubscribe: Callable[[], None] | None = None

    def bind(self, history: EventHistory) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            self._unsubscribe = history.subscribe(self._on_change)

    def _on_change(self, _record: EventRecord, _kind: str) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake_all)
        except RuntimeError:
            pass  # the loop is shutting down

    def _wake_all(self) -> None:
        for event in list(self.clients):
            event.set()

    def close(self) -> None:
        """End every stream (server shutdown): must run on the event loop."""
        self.closing = True
        self._wake_all()

    def unbind(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.loop = None


class EventStreamResponse(StreamingResponse):
    """A streaming response that always watches for the client going away, then stops."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with anyio.create_task_group() as group:

            async def run(func: Callable[[], Any]) -> None:
                try:
                    await func()
                except OSError:
                    pass
                group.cancel_scope.cancel()

            group.start_soon(run, partial(self.stream_response, send))
            await run(partial(self.listen_for_disconnect, receive))


def _sse(event: str, data: Any, event_id: int | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


# =========================================================================== the app


def create_app(
    view: GatewayView,
    history: EventHistory,
    outbox: Any,
    settings: ApiSection,
    *,
    metrics: GatewayMetrics | None = None,
    publisher: Any | None = None,
    timezone: str | None = None,
    web_dir: Path = WEB_DIR,
    sse_heartbeat_s: float = SSE_HEARTBEAT_S,
) -> FastAPI:
    """The API and page over the service's live `view`, the event `history` and the `outbox`.

    metrics: the service's `GatewayMetrics` (it feeds `observe_inference`); one is made if
    omitted. publisher: the `MqttPublisher`, for publish latency in /metrics.
    timezone: IANA name for the times the API prints (acks); default the system's.
    Raises ApiConfigError for an open API on a non-loopback bind.
    """
    check_settings(settings)
    token = settings.token.get_secret_value() if settings.token is not None else None
    auth = Auth(token or None)
    tz = ZoneInfo(timezone) if timezone else None
    if metrics is None:
        metrics = GatewayMetrics(view=view, outbox=outbox, publisher=publisher, history=history)
    else:
        metrics.attach(view=view, outbox=outbox, publisher=publisher, history=history)
    hub = StreamHub()
    web = _WebFiles(web_dir)
    snapshots = _SnapshotCache(view)
    _install_access_log_filter()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.closing = False
        hub.bind(history)
        try:
            yield
        finally:
            hub.close()
            hub.unbind()

    app = FastAPI(
        title="Edge gateway API",
        version=__version__,
        description="Cameras, alerts and health of one edge video gateway. Auth: `Authorization: Bearer "
                    "<api.token>` on every route but /healthz.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.auth = auth
    app.add_middleware(_SecurityHeaders)
    authorize = _authorize_dependency(auth)
    secured = APIRouter(dependencies=[Depends(authorize)], responses={401: {"model": Problem}, 403: {"model": Problem}})

    def fmt_time(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, tz).astimezone(tz).isoformat(timespec="seconds")

    def ack_of(record: EventRecord) -> AckOut | None:
        truth = outbox.ack_for(record.event_id)
        mirror = record.ack
        if truth is not None:
            note = mirror.note if mirror and mirror.by == truth.by and mirror.case_id == truth.case_id else None
            return AckOut(by=truth.by, case_id=truth.case_id, at=fmt_time(truth.received_at), note=note)
        if mirror is not None:
            return AckOut(by=mirror.by, case_id=mirror.case_id, at=fmt_time(mirror.at), note=mirror.note)
        return None

    def event_out(record: EventRecord, detail: bool = False) -> EventOut:
        base = f"/api/events/{record.event_id}"
        fields = dict(
            event_id=record.event_id, rev=record.rev, seq=record.seq, state=record.state, active=record.active,
            type=record.type, severity=record.severity, title_zh=record.title_zh, camera_id=record.camera_id,
            camera_name=record.camera_name, grid_id=record.grid_id, address=record.address, lat=record.lat,
            lon=record.lon, zone_id=record.zone_id, zone_name=record.zone_name, rule_id=record.rule_id,
            count=record.count, peak_count=record.peak_count, density_per_m2=record.density_per_m2,
            started_at=record.started_at, updated_at=record.updated_at, ended_at=record.ended_at,
            snapshot_url=f"{base}/snapshot.jpg" if record.has_snapshot else None,
            peak_snapshot_url=f"{base}/snapshot.jpg?which=peak" if record.has_peak_snapshot else None,
            snapshot_evicted=record.snapshot_evicted, ack=ack_of(record),
        )
        if detail:
            return EventDetail(**fields, payload=_redact_tree(record.payload))
        return EventOut(**fields)

    def cameras() -> list[CameraOut]:
        return [_camera_out(camera) for camera in view.cameras()]

    def find_camera(camera_id: str) -> CameraOut:
        for camera in cameras():
            if camera.id == camera_id:
                return camera
        raise HTTPException(404, f"no camera {camera_id!r}")

    def find_event(event_id: str) -> EventRecord:
        record = history.get(event_id)
        if record is None:
            raise HTTPException(404, f"no event {event_id}")
        return record

    # ------------------------------------------------------------------ public

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness (no auth)")
    async def healthz() -> Health:
        return Health()

    @app.head("/healthz", include_in_schema=False)
    async def healthz_head() -> Response:
        return Response(status_code=200)

    @app.get("/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        if not auth.enabled:
            return RedirectResponse("/", 303)
        return _login_page()

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not auth.enabled:
            return RedirectResponse("/", 303)
        if not _same_origin(request):
            return _login_page("跨站登录被拒绝 / Cross-site login refused", 403)
        body = await request.body()
        if len(body) > 4096:
            return _login_page("请求过大 / Request too large", 413)
        try:
            token = parse_qs(body.decode("utf-8"), max_num_fields=4).get("token", [""])[0].strip()
        except (UnicodeDecodeError, ValueError):
            token = ""
        if not auth.token_ok(token):
            await asyncio.sleep(0.5)  # slows down guessing
            return _login_page("令牌不正确 / Wrong token", 401)
        return _with_session(RedirectResponse("/", 303), auth, request)

    @app.post("/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/login" if auth.enabled else "/", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(_Redirect)
    async def redirect(_request: Request, exc: _Redirect) -> Response:
        return RedirectResponse(exc.location, 303)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("API %s %s failed: %s", request.method, request.url.path, redact(repr(exc)))
        return JSONResponse({"detail": "internal error (see the gateway log)"}, 500)

    # ------------------------------------------------------------------ page

    @app.get("/", include_in_schema=False)
    async def index(request: Request, token: str | None = None) -> Response:
        if token is not None:  # kiosk link: trade the token for the cookie, drop it from the URL
            if auth.enabled and not auth.token_ok(token):
                await asyncio.sleep(0.5)
                return _login_page("令牌不正确 / Wrong token", 401)
            return _with_session(RedirectResponse("/", 303), auth, request)
        await run_in_threadpool(authorize, request)
        return web.page("index.html")

    @secured.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response:
        return JSONResponse(app.openapi())

    @secured.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return web.page("docs.html")

    @secured.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        return web.file(name)

    @secured.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return web.file("favicon.svg")

    # ------------------------------------------------------------------ health and metrics

    @secured.get("/readyz", response_model=Readiness, tags=["health"],
                 responses={503: {"model": Readiness, "description": "Some part is not alive."}},
                 summary="Readiness: every camera reader and the detector alive")
    def readyz() -> Response:
        try:
            checks = {str(k): bool(v) for k, v in view.readiness().items()}
        except Exception as exc:
            log.warning("readiness check failed: %s", redact(str(exc)))
            checks = {"gateway": False}
        ready = bool(checks) and all(checks.values())
        body = Readiness(ready=ready, checks=checks).model_dump()
        return JSONResponse(body, 200 if ready else 503, headers=NO_STORE)

    @secured.get("/metrics", tags=["health"], summary="Prometheus metrics",
                 responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type, headers=NO_STORE)

    @secured.get("/api/info", response_model=Info, tags=["gateway"])
    def info() -> Info:
        return Info(gateway_id=view.gateway_id, gateway_name=view.gateway_name or view.gateway_id,
                    version=__version__, auth=auth.enabled, time=fmt_time(time.time()), rev=history.rev)

    # ------------------------------------------------------------------ cameras

    @secured.get("/api/cameras", response_model=list[CameraOut], tags=["cameras"],
                 summary="Cameras with health")
    def list_cameras() -> list[CameraOut]:
        return cameras()

    @secured.get("/api/cameras/{camera_id}", response_model=CameraOut, tags=["cameras"],
                 responses={404: {"model": Problem}})
    def get_camera(camera_id: CameraIdParam) -> CameraOut:
        return find_camera(camera_id)

    @secured.get("/api/cameras/{camera_id}/snapshot.jpg", tags=["cameras"],
                 summary="Live annotated snapshot of the latest frame",
                 responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                            404: {"model": Problem, "description": "Unknown camera, or no frame yet."}})
    def camera_snapshot(camera_id: CameraIdParam) -> Response:
        find_camera(camera_id)
        jpeg = snapshots.get(camera_id)
        if not jpeg:
            raise HTTPException(404, f"camera {camera_id!r} has no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers=NO_STORE)

    # ------------------------------------------------------------------ events

    @secured.get("/api/events", response_model=EventPageOut, tags=["events"],
                 summary="Events, newest first, with filters and paging",
                 dependencies=[Depends(_known_query("camera", "type", "state", "since", "acked", "limit", "offset"))])
    def list_events(
        camera: Annotated[str | None, Query(pattern=IDENT_PATTERN, description="Camera id.")] = None,
        type: Annotated[Literal[ALERT_TYPE_NAMES] | None, Query(description="Event type.")] = None,  # type: ignore[valid-type]
        state: Annotated[Literal["start", "update", "end", "active"] | None,
                         Query(description="Lifecycle state of the last message; 'active' = not ended.")] = None,
        since: Annotated[datetime | None, BeforeValidator(_rfc3339),
                         Query(description="Only events updated at or after this time (RFC 3339, with offset: "
                                           "2024-05-01T08:00:00+08:00).")] = None,
        acked: Annotated[bool | None, Query(description="Only acknowledged (true) or unacknowledged (false).")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> EventPageOut:
        try:
            since_epoch = _epoch_or_none(since)
        except (OverflowError, ValueError, OSError):
            raise HTTPException(422, "since is out of range") from None
        page = history.list(camera=camera, type=type, state=state, since=since_epoch, acked=acked,
                            limit=limit, offset=offset)
        return EventPageOut(items=[event_out(r) for r in page.items], total=page.total, limit=page.limit,
                            offset=page.offset, rev=page.rev)

    @secured.get("/api/events/stream", tags=["events"], summary="Live event changes (server-sent events)",
                 dependencies=[Depends(_known_query("after"))],
                 responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                                  "description": "`event: hello` first, then `event: alert` with an EventOut "
                                                 "as data and its rev as `id:`; comments as heartbeats."},
                            429: {"model": Problem}})
    async def stream(
        request: Request,
        after: Annotated[int | None, Query(ge=0, le=2**62, description="Send changes after this revision "
                                                                         "(from GET /api/events).")] = None,
        last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        if len(hub.clients) >= SSE_MAX_CLIENTS:
            raise HTTPException(429, "too many live streams open")
        hub.bind(history)
        start = after
        if last_event_id and last_event_id.isdigit() and len(last_event_id) < 19:
            start = int(last_event_id)
        if start is None:
            start = history.rev
        return EventStreamResponse(
            _event_stream(hub, history, event_out, start, sse_heartbeat_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @secured.get("/api/events/{event_id}", response_model=EventDetail, tags=["events"],
                 responses={404: {"model": Problem}})
    def get_event(event_id: EventIdParam) -> EventOut:
        return event_out(find_event(event_id), detail=True)

    @secured.get("/api/events/{event_id}/snapshot.jpg", tags=["events"], summary="Evidence picture",
                 dependencies=[Depends(_known_query("which"))],
                 responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                            404: {"model": Problem, "description": "Unknown event, or no picture kept."}})
    def event_snapshot(
        event_id: EventIdParam,
        which: Annotated[Literal["start", "peak", "latest"], Query(description="start picture, latest peak "
                                                                                "picture, or the newer one")] = "start",
    ) -> Response:
        find_event(event_id)
        jpeg = history.snapshot(event_id, which)
        if jpeg is None:
            raise HTTPException(404, f"event {event_id} has no {which} picture (none taken, or deleted by retention)")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @secured.post("/api/events/{event_id}/ack", response_model=AckResult, tags=["events"],
                  summary="Acknowledge an event (recorded with the centre's acks in the outbox)",
                  responses={400: {"model": Problem, "description": "The body is not JSON text."},
                             404: {"model": Problem}, 409: {"model": Problem}})
    def acknowledge(event_id: EventIdParam, body: AckIn) -> AckResult:
        record = history.get(event_id)
        if record is None and not outbox.is_known_event(event_id):
            raise HTTPException(404, f"no event {event_id}")
        try:
            ack, new = outbox.record_ack(event_id, body.case_id or "", body.by)
        except UnknownEventError:
            raise HTTPException(409, f"event {event_id} is too old to acknowledge (the outbox forgot it)") from None
        updated = history.note_ack(ack, body.note) if new or body.note else history.get(event_id)
        if new:
            log.info("event %s acknowledged on the web page by %s%s", event_id, body.by,
                     f" as case {body.case_id}" if body.case_id else "")
        note = body.note if body.note else (updated.ack.note if updated and updated.ack else None)
        return AckResult(
            event_id=event_id, new=new,
            ack=AckOut(by=ack.by, case_id=ack.case_id, at=fmt_time(ack.received_at), note=note),
            event=event_out(updated) if updated else None,
        )

    app.include_router(secured)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, 422)

    return app


async def _event_stream(hub: StreamHub, history: EventHistory, event_out: Callable[[EventRecord], EventOut],
                        start: int, heartbeat_s: float) -> AsyncIterator[str]:
    wake = asyncio.Event()
    hub.clients.add(wake)
    last = start
    try:
        yield "retry: 2000\n\n" + _sse("hello", {"rev": history.rev, "after": last})
        if history.rev > last:
            wake.set()
        while not hub.closing:
            try:
                await asyncio.wait_for(wake.wait(), timeout=heartbeat_s)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"
                continue
            wake.clear()
            if hub.closing:
                break
            def read(after: int) -> list[tuple[int, dict[str, Any]]]:
                return [(r.rev, event_out(r).model_dump()) for r in history.changes_since(after, 100)]

            changes = await run_in_threadpool(read, last)
            if len(changes) == 100:
                wake.set()  # more to send: go round again at once
            if changes:
                last = max(last, changes[-1][0])
                yield "".join(_sse("alert", body, rev) for rev, body in changes)
    finally:
        hub.clients.discard(wake)


# =========================================================================== helpers


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def _rfc3339(value: Any) -> Any:
    """A date-time with an offset, as the schema says (not a bare number or a naive time)."""
    if isinstance(value, str) and not RFC3339.match(value):
        raise ValueError("use an RFC 3339 date-time with offset, e.g. 2024-05-01T08:00:00+08:00")
    return value


def _known_query(*names: str) -> Callable[[Request], None]:
    """Reject unknown query parameters (a typo such as ?camra=gate must not silently list everything)."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        names = [name for name, _ in request.query_params.multi_items()]
        errors = [{"loc": ("query", name), "msg": f"unknown query parameter {name!r}; "
                   f"known: {', '.join(sorted(allowed))}", "type": "extra_forbidden"}
                  for name in sorted(set(names) - allowed)]
        errors += [{"loc": ("query", name), "msg": f"query parameter {name!r} given more than once",
                    "type": "repeated"} for name in sorted({n for n in names if names.count(n) > 1} & allowed)]
        if errors:
            raise RequestValidationError(errors)

    return check


def _redact_tree(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_tree(v) for v in value]
    return value


def _epoch_or_none(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        from datetime import timezone as _tz

        moment = moment.replace(tzinfo=_tz.utc)
    return moment.timestamp()


def _zone_out(zone: ZoneOutline | dict[str, Any]) -> ZoneOut:
    zone = ZoneOutline.coerce(zone)
    return ZoneOut(id=redact(zone.id), name=redact(zone.name), polygon=[(float(x), float(y)) for x, y in zone.polygon])


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _camera_out(camera: CameraStatus) -> CameraOut:
    return CameraOut(
        id=camera.id,
        name=redact(camera.name),
        grid_id=redact(camera.grid_id),
        address=redact(camera.address),
        state=camera.state,
        analysed_fps=round(_finite(camera.analysed_fps) or 0.0, 2),
        decoded_fps=round(_finite(camera.decoded_fps) or 0.0, 2),
        last_frame_age_s=None if _finite(camera.last_frame_age_s) is None else round(camera.last_frame_age_s, 2),
        reconnects=int(camera.reconnects or 0),
        last_error=redact(camera.last_error) if camera.last_error else None,
        skip_ratio=None if _finite(camera.skip_ratio) is None else round(camera.skip_ratio, 3),
        frame_size=tuple(camera.frame_size) if camera.frame_size else None,
        zones=[_zone_out(z) for z in camera.zones],
        masks=[_zone_out(z) for z in camera.masks],
        preset=redact(camera.preset) if camera.preset else None,
        source=redact(camera.source or ""),
        resolution=tuple(camera.resolution) if camera.resolution else None,
        coordinates=camera.coordinates,
        snapshot_url=f"/api/cameras/{camera.id}/snapshot.jpg",
        patrol=camera.patrol,  # its last_error is redacted where it is made (gateway.onvif.ptz)
    )


class _SnapshotCache:
    """Reuse a live JPEG for a moment: several pages refreshing the same camera cost one encode."""

    def __init__(self, view: GatewayView, ttl_s: float = SNAPSHOT_CACHE_S) -> None:
        self.view = view
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, bytes]] = {}

    def get(self, camera_id: str) -> bytes | None:
        now = time.monotonic()
        hit = self._cache.get(camera_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        jpeg = self.view.camera_snapshot(camera_id)
        if jpeg:
            self._cache[camera_id] = (now, jpeg)
        else:
            self._cache.pop(camera_id, None)
        return jpeg


class _WebFiles:
    """The page's files, read once at start from a fixed folder; served only by exact name."""

    def __init__(self, folder: Path) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            log.error("web page folder %s is missing (%s): the API works, the page does not", folder, exc)
            entries = []
        for path in entries:
            media = STATIC_TYPES.get(path.suffix)
            if media and path.is_file() and STATIC_NAME.match(path.name):
                self.files[path.name] = (path.read_bytes(), media)

    def file(self, name: str) -> Response:
        entry = self.files.get(name) if STATIC_NAME.match(name) else None
        if entry is None:
            raise HTTPException(404, "no such file")
        return Response(entry[0], media_type=entry[1], headers={"Cache-Control": "no-cache"})

    def page(self, name: str) -> Response:
        response = self.file(name)
        response.headers["Cache-Control"] = "no-store"
        return response


class _SecurityHeaders:
    """Pure ASGI middleware (streams pass straight through): browser hardening headers."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            response = JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, 413)
            await response(scope, receive, send)
            return
        seen = 0
        outer_receive = receive

        async def receive() -> Any:  # chunked bodies are counted as they arrive
            nonlocal seen
            message = await outer_receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise ValueError("request body too large")
            return message

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in self.HEADERS if k not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_session(response: Response, auth: Auth, request: Request) -> Response:
    if auth.session is not None:
        response.set_cookie(SESSION_COOKIE, auth.session, max_age=SESSION_MAX_AGE_S, path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
    return response


LOGIN_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>登录 · 边缘视频网关</title>
<style>
body{{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#0f172a;
font-family:"PingFang SC","Microsoft YaHei","Noto Sans CJK SC","WenQuanYi Micro Hei",system-ui,sans-serif;color:#e2e8f0}}
form{{background:#1e293b;padding:32px 36px;border-radius:14px;width:320px;box-shadow:0 20px 50px rgba(0,0,0,.4)}}
h1{{font-size:20px;margin:0 0 4px}} p{{margin:0 0 20px;color:#94a3b8;font-size:13px}}
label{{display:block;font-size:13px;margin-bottom:6px;color:#cbd5e1}}
input{{width:100%;box-sizing:border-box;padding:10px 12px;border-radius:8px;border:1px solid #334155;background:#0f172a;
color:#f8fafc;font-size:15px}} input:focus{{outline:2px solid #3b82f6;border-color:transparent}}
button{{margin-top:18px;width:100%;padding:11px;border:0;border-radius:8px;background:#2563eb;color:#fff;font-size:15px;
cursor:pointer}} button:hover{{background:#1d4ed8}}
.err{{background:#7f1d1d;color:#fecaca;padding:8px 10px;border-radius:8px;font-size:13px;margin-bottom:14px}}
</style></head><body>
<form method="post" action="/login">
<h1>边缘视频网关 · 值班台</h1><p>Edge gateway · duty desk</p>
{error}
<label for="token">访问令牌 / Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<button type="submit">登录 / Log in</button>
</form></body></html>"""


def _login_page(error: str | None = None, status: int = 200) -> HTMLResponse:
    block = f'<div class="err">{html.escape(error)}</div>' if error else ""
    response = HTMLResponse(LOGIN_PAGE.format(error=block), status, headers=NO_STORE)
    response.headers["Content-Security-Policy"] = LOGIN_CSP
    return response


class _QueryTokenFilter(logging.Filter):
    """Masks `token=...` in uvicorn's access log lines (the kiosk link carries it once)."""

    PATTERN = re.compile(r"(token=)[^&\s\"]*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1***", record.msg)
        return True


_ACCESS_FILTER = _QueryTokenFilter()


def _install_access_log_filter() -> None:
    logger = logging.getLogger("uvicorn.access")
    if _ACCESS_FILTER not in logger.filters:
        logger.addFilter(_ACCESS_FILTER)


# =========================================================================== serving


class ApiServer(uvicorn.Server):
    """uvicorn server that ends the live event streams first on shutdown (else they would hold
    the graceful shutdown open until the page goes away)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: Any = None) -> None:
        hub = getattr(self._app.state, "hub", None)
        if hub is not None:
            hub.close()
        await super().shutdown(sockets)


def make_server(app: FastAPI, settings: ApiSection, *, port: int | None = None, log_level: str = "warning",
                **config: Any) -> ApiServer:
    """A uvicorn server for `app` on `settings.bind:settings.port` (or `port`), using the gateway's logging.

    Run it with `server.run()` in a thread (or `await server.serve()`); stop with
    `server.should_exit = True`.
    """
    check_settings(settings)
    options: dict[str, Any] = dict(host=settings.bind, port=settings.port if port is None else port,
                                   log_config=None, log_level=log_level, access_log=True,
                                   timeout_graceful_shutdown=3, proxy_headers=False, server_header=False)
    options.update(config)
    return ApiServer(uvicorn.Config(app, **options), app)
