"""Browser sessions: the login form, the kiosk link's token trade, logout.

Every attempt with a token goes through `trade_token`, so the form and the kiosk link share the
API's one throttle (gateway/api/throttle.py): a client that failed too often is told to wait
(429 with Retry-After) before its token is even compared, and every failure is logged with the
client's address, never the guess.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from gateway.api.auth import FAILED_AUTH_DELAY_S, client_address, same_origin
from gateway.api.context import ApiContext, Context

log = logging.getLogger("gateway.api")

router = APIRouter(include_in_schema=False)


async def trade_token(ctx: ApiContext, request: Request, token: str, how: str,
                      success: Callable[[], Response]) -> Response:
    """`success()` with a new session cookie for the right token; else the login page with why.

    how: 'login form' or 'kiosk link', as the log names the path a failure came by."""
    client = client_address(request)
    verdict = ctx.auth.try_token(client, token, how)
    if verdict.throttled:
        wait = math.ceil(verdict.retry_after)
        response = ctx.web.login_page(f"尝试次数过多，请 {wait} 秒后再试 / Too many attempts: try again in {wait} s",
                                      429)
        response.headers["Retry-After"] = str(wait)
        return response
    if verdict.problem is not None:
        await asyncio.sleep(FAILED_AUTH_DELAY_S)
        return ctx.web.login_page("令牌不正确 / Wrong token", 401)
    log.info("web login from %s", client)
    return ctx.auth.start_session(success(), request)


@router.get("/login")
async def login_form(ctx: Context) -> Response:
    if not ctx.auth.enabled:
        return RedirectResponse("/", 303)
    return ctx.web.login_page()


@router.post("/login")
async def login(request: Request, ctx: Context) -> Response:
    if not ctx.auth.enabled:
        return RedirectResponse("/", 303)
    if not same_origin(request):
        return ctx.web.login_page("跨站登录被拒绝 / Cross-site login refused", 403)
    body = await request.body()
    if len(body) > 4096:
        return ctx.web.login_page("请求过大 / Request too large", 413)
    try:
        token = parse_qs(body.decode("utf-8"), max_num_fields=4).get("token", [""])[0].strip()
    except (UnicodeDecodeError, ValueError):
        token = ""
    return await trade_token(ctx, request, token, "login form", lambda: RedirectResponse("/", 303))


@router.post("/logout")
async def logout(request: Request, ctx: Context) -> Response:
    if not same_origin(request):
        return Response("cross-site request refused", 403)
    return ctx.auth.end_session(RedirectResponse("/login" if ctx.auth.enabled else "/", 303), request)
