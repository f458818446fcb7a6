"""The gateway's web API and duty-officer page (FastAPI), served from the gateway itself.

`create_app` only assembles: the shared `ApiContext`, the security middleware, and one router
per resource (gateway/api/routes/). Routes (OpenAPI at `/openapi.json`, offline reference at `/docs`):

    GET  /healthz                           liveness, no auth
    GET  /readyz                            200 when every reader and the detector are alive, else 503
    GET  /api/info                          gateway id/name, version, whether auth is on, alert types
    GET  /api/cameras                       cameras with health
    GET  /api/cameras/{id}                  one camera
    GET  /api/cameras/{id}/snapshot.jpg     live annotated JPEG of the latest frame
    GET  /api/events                        events, newest first; filters camera/type/state/since/acked;
                                            paging limit/offset; `rev` to stream changes after
    GET  /api/events/stream                 server-sent events: `alert` for every new or changed event
    GET  /api/events/{id}                   one event with its latest payload (picture data stripped)
    GET  /api/events/{id}/snapshot.jpg      its evidence picture (?which=start|peak|latest; ?size=thumb for lists)
    GET  /api/events/{id}/clip              its video clip (MP4, HTTP Range; gateway/api/routes/clips.py)
    POST /api/events/{id}/ack               acknowledge: {"by", "case_id"?, "note"?} -> the case ledger,
                                            and to the centre (MQTT `acks`)
    GET  /metrics                           Prometheus text format
    GET  /                                  the duty-officer page (alerts, camera wall, installer view)
    GET|POST /login, POST /logout           browser sessions (gateway/api/auth.py says who may do what)
    /api/cameras/{id}/counting...           the page's counting-model tool (gateway/api/routes/counting.py)

Nothing user-supplied becomes a path: event ids must be uuids, camera ids must be configured
ids, static files come from a fixed list. Every string that can hold a URL is redacted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from gateway import __version__
from gateway.api.auth import ApiConfigError, Auth, Redirect, authorize_dependency, check_settings
from gateway.api.context import ApiContext, SnapshotCache
from gateway.api.metrics import GatewayMetrics
from gateway.api.routes import cameras, counting, events, health, page, session
from gateway.api.routes import clips as clip_routes
from gateway.api.schemas import Problem
from gateway.api.stream import SSE_HEARTBEAT_S, StreamHub
from gateway.api.throttle import AuthThrottle
from gateway.api.web import WEB_DIR, SecurityHeaders, WebFiles, install_access_log_filter
from gateway.calibration.studio import CountingStudio
from gateway.config.models import ApiSection
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import CaseLedger
from gateway.evidence.store import ClipStore
from gateway.redaction import redact
from gateway.status import GatewayView

log = logging.getLogger("gateway.api")

__all__ = ["ApiConfigError", "create_app"]


def create_app(
    view: GatewayView,
    history: EventHistory,
    ledger: CaseLedger,
    settings: ApiSection,
    *,
    metrics: GatewayMetrics | None = None,
    timezone: str | None = None,
    web_dir: Path = WEB_DIR,
    sse_heartbeat_s: float = SSE_HEARTBEAT_S,
    sessions_path: Path | None = None,
    clips: ClipStore | None = None,
    counting_studio: CountingStudio | None = None,
    throttle: AuthThrottle | None = None,
) -> FastAPI:
    """The API and page over the gateway's live `view` (cameras, health: /healthz shows every
    output and the disk from it), the event `history` and the case `ledger` (acknowledgements,
    case steps; a page acknowledgement is told to the centre through it).

    metrics: the service's `GatewayMetrics`; one over the view and the history is made if
    omitted. timezone: IANA name for the times the API prints (acks); default the system's.
    sessions_path: where browser sessions survive a restart. clips: the evidence clip store (served
    at /api/events/{id}/clip).
    counting_studio: the page's counting-model tool (gateway/api/routes/counting.py); None: not offered.
    throttle: how many wrong credentials a client may send (default `AuthThrottle()`).
    Raises ApiConfigError for an empty token, or an open API on a non-loopback bind.
    """
    check_settings(settings)
    token = settings.token.get_secret_value() if settings.token is not None else None
    auth = Auth(token, sessions_path, throttle)
    if metrics is None:
        metrics = GatewayMetrics(view=view, history=history)
    context = ApiContext(view=view, history=history, ledger=ledger, metrics=metrics, auth=auth, hub=StreamHub(),
                         web=WebFiles(web_dir), snapshots=SnapshotCache(view),
                         timezone=ZoneInfo(timezone) if timezone else None, sse_heartbeat_s=sse_heartbeat_s,
                         clips=clips)
    install_access_log_filter()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        context.hub.closing = False
        context.hub.bind(history)
        try:
            yield
        finally:
            context.hub.close()
            context.hub.unbind()

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
    authorize = authorize_dependency(auth)
    app.state.context = context
    app.state.authorize = authorize
    app.state.hub = context.hub
    app.state.metrics = metrics
    app.state.counting = counting_studio
    app.add_middleware(SecurityHeaders)

    secured = [Depends(authorize)]
    refusals: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in (401, 403, 429)}
    app.include_router(health.public)
    app.include_router(session.router)
    app.include_router(page.public)
    for router in (page.router, health.router, cameras.router, events.router, clip_routes.router, counting.router):
        app.include_router(router, dependencies=secured, responses=refusals)
    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Redirect)
    async def redirect(_request: Request, exc: Redirect) -> Response:
        return RedirectResponse(exc.location, 303)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("API %s %s failed: %s", request.method, request.url.path, redact(repr(exc)))
        return JSONResponse({"detail": "internal error (see the gateway log)"}, 500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, 422)
