"""What the API serves to browsers besides JSON: the page's files, the login page, and the
headers and limits every response gets.

The page's files are read once at start from a fixed folder and served only by exact name, so
nothing a client sends becomes a path. Every response carries a strict Content-Security-Policy
(no inline script anywhere; the login page alone may use inline style), and request bodies are
capped before the app sees them.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

log = logging.getLogger("gateway.api")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
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
NO_STORE = {"Cache-Control": "no-store"}
MAX_BODY_BYTES = 64 * 1024
ERROR_SLOT = "<!--error-->"
"""Where the login page shows why the last attempt failed (escaped text, never markup)."""


class WebFiles:
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

    def login_page(self, error: str | None = None, status: int = 200) -> HTMLResponse:
        """The login form, with `error` (plain text) shown above it."""
        entry = self.files.get("login.html")
        page = entry[0].decode("utf-8") if entry else f"<!doctype html><form method=post action=/login>{ERROR_SLOT}" \
            "<input name=token type=password><button>Log in</button></form>"
        block = f'<div class="err">{html.escape(error)}</div>' if error else ""
        response = HTMLResponse(page.replace(ERROR_SLOT, block), status, headers=NO_STORE)
        response.headers["Content-Security-Policy"] = LOGIN_CSP
        return response


class SecurityHeaders:
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

        async def counted_receive() -> Any:  # chunked bodies are counted as they arrive
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:  # answered as a clean 413 by the route's exception handling
                raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes")
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

        await self.app(scope, counted_receive, send_with_headers)


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


def install_access_log_filter() -> None:
    logger = logging.getLogger("uvicorn.access")
    if _ACCESS_FILTER not in logger.filters:
        logger.addFilter(_ACCESS_FILTER)
