"""The duty-officer page, its files, and the API's own description (OpenAPI, offline docs)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from gateway.api.context import Context
from gateway.api.routes.session import trade_token

public = APIRouter(include_in_schema=False)
"""The page itself checks credentials (it may have to trade a kiosk token first)."""
router = APIRouter(include_in_schema=False)

KIOSK_NOTICE = "/#token-in-history"
"""Where a kiosk link lands: the page tells the operator the token is now in the browser's history."""


@public.get("/")
async def index(request: Request, ctx: Context, token: str | None = None) -> Response:
    if token is not None:  # kiosk link: trade the token for a session, drop it from the address bar
        if not ctx.auth.enabled:
            return RedirectResponse("/", 303)
        return await trade_token(ctx, request, token, "kiosk link", lambda: RedirectResponse(KIOSK_NOTICE, 303))
    await request.app.state.authorize(request)
    return ctx.web.page("index.html")


@router.get("/openapi.json")
def openapi(request: Request) -> Response:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(ctx: Context) -> Response:
    return ctx.web.page("docs.html")


@router.get("/static/{name}")
async def static(name: str, ctx: Context) -> Response:
    return ctx.web.file(name)


@router.get("/favicon.ico")
async def favicon(ctx: Context) -> Response:
    return ctx.web.file("favicon.svg")
