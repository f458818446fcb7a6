"""The gateway's web API and duty-officer page.

`create_app(view, history, outbox, settings)` builds the FastAPI app; the running service
implements `GatewayView` (live camera state) for it. `make_server` wraps it in uvicorn.
The view types import without FastAPI; the app is imported on first use.
"""

from __future__ import annotations

from typing import Any

from gateway.status import CAMERA_STATES, CameraStatus, GatewayView, ZoneOutline

__all__ = [
    "CAMERA_STATES",
    "ApiConfigError",
    "ApiServer",
    "CameraStatus",
    "GatewayView",
    "ZoneOutline",
    "create_app",
    "make_server",
]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "ApiConfigError"):
        from gateway.api import app

        return getattr(app, name)
    if name in ("make_server", "ApiServer"):
        from gateway.api import server

        return getattr(server, name)
    raise AttributeError(name)
