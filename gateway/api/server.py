"""Serving the API with uvicorn, on the service's own thread."""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI

from gateway.api.auth import check_settings
from gateway.config.models import ApiSection


class ApiServer(uvicorn.Server):
    """uvicorn server that ends the live event streams first on shutdown (else they would hold
    the graceful shutdown open until the page goes away)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: Any = None) -> None:
        context = getattr(self._app.state, "context", None)
        if context is not None:
            context.hub.close()
        await super().shutdown(sockets)


def make_server(app: FastAPI, settings: ApiSection, *, port: int | None = None, log_level: str = "warning",
                **config: Any) -> ApiServer:
    """A uvicorn server for `app` on `settings.bind:settings.port` (or `port`), using the gateway's logging.

    Behind a TLS proxy (`api.proxy_headers`), X-Forwarded-Proto/For from `api.trusted_proxies` are
    believed, so session cookies get `Secure` and logs show the real client.
    Run it with `server.run()` in a thread (or `await server.serve()`); stop with
    `server.should_exit = True`.
    """
    check_settings(settings)
    options: dict[str, Any] = dict(host=settings.bind, port=settings.port if port is None else port,
                                   log_config=None, log_level=log_level, access_log=True,
                                   timeout_graceful_shutdown=3, proxy_headers=settings.proxy_headers,
                                   forwarded_allow_ips=",".join(settings.trusted_proxies), server_header=False)
    options.update(config)
    return ApiServer(uvicorn.Config(app, **options), app)
