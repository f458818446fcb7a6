"""Liveness, readiness, metrics and the gateway's identity."""

from __future__ import annotations

import logging
import time
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from gateway import __version__
from gateway.api.context import Context
from gateway.api.schemas import Health, Info, OutputHealth, Readiness
from gateway.api.web import NO_STORE
from gateway.events.types import ALERT_TYPES
from gateway.redaction import redact

log = logging.getLogger("gateway.api")

public = APIRouter(tags=["health"])
"""Routes without authentication (a load balancer's or systemd's probe)."""
router = APIRouter()


@public.get("/healthz", response_model=Health,
            summary="Liveness (no auth): every output, the data disk and the PTZ patrols",
            responses={503: {"model": Health, "description": "A thread or task of the gateway is dead (a "
                                                             "camera reader, the analysis, an output...), or "
                                                             "a camera's frames keep failing to analyse."}})
def healthz(ctx: Context) -> Response:
    health = _health(ctx)
    return JSONResponse(health.model_dump(exclude_none=True), 503 if health.status == "failing" else 200,
                        headers=NO_STORE)


@public.head("/healthz", include_in_schema=False)
def healthz_head(ctx: Context) -> Response:
    return Response(status_code=503 if _health(ctx).status == "failing" else 200)


def _health(ctx: Context) -> Health:
    """Every output (alive, reaching its far end, queued), the disk and how many PTZ patrols are at
    fault; no addresses, cameras or errors: this route needs no token (the heartbeat and /metrics
    carry the details)."""
    try:
        failed_workers = ctx.view.failed_workers()
        state = ctx.view.health()
    except Exception as exc:  # noqa: BLE001 - a liveness probe answers, it does not crash
        log.warning("health check failed: %s", redact(str(exc)))
        return Health(status="failing")
    outputs = {name: OutputHealth(alive=bool(output.get("alive")), connected=bool(output.get("connected")),
                                  queued=int(output.get("queued") or 0))
               for name, output in state.get("outputs", {}).items()}
    disk_full = bool(state.get("disk_full"))
    patrols_failing = _patrols_failing(state.get("cameras") or {})
    degraded = disk_full or bool(patrols_failing) or not all(output.connected for output in outputs.values())
    status = overall_status(failed_workers, state.get("failing_cameras") or [], degraded)
    return Health(status=status, outputs=outputs, disk_full=disk_full, patrols_failing=patrols_failing)


def overall_status(failed_workers: list[str], failing_cameras: list[str],
                   degraded: bool) -> Literal["ok", "degraded", "failing"]:
    """failing: a thread or task is dead, or a camera's frames keep failing to analyse (503);
    degraded: the disk is full, a PTZ patrol is at fault, or an output cannot reach its far end;
    else ok."""
    if failed_workers or failing_cameras:
        return "failing"
    return "degraded" if degraded else "ok"


def _patrols_failing(cameras: dict) -> int | None:
    """How many cameras' PTZ patrols cannot reach a stop (`PatrolStatus.fault`); None: no patrols."""
    patrols = [camera.get("patrol") for camera in cameras.values() if camera.get("patrol")]
    return sum(bool(patrol.get("fault")) for patrol in patrols) if patrols else None


@router.get("/readyz", response_model=Readiness, tags=["health"],
            responses={503: {"model": Readiness, "description": "Some part is not alive."}},
            summary="Readiness: every camera reader and the detector alive")
def readyz(ctx: Context) -> Response:
    try:
        checks = {str(k): bool(v) for k, v in ctx.view.readiness().items()}
    except Exception as exc:  # noqa: BLE001 - a broken check must answer 503, not crash the probe
        log.warning("readiness check failed: %s", redact(str(exc)))
        checks = {"gateway": False}
    ready = bool(checks) and all(checks.values())
    body = Readiness(ready=ready, checks=checks).model_dump()
    return JSONResponse(body, 200 if ready else 503, headers=NO_STORE)


@router.get("/metrics", tags=["health"], summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def prometheus(ctx: Context) -> Response:
    body, content_type = ctx.metrics.render()
    return Response(body, media_type=content_type, headers=NO_STORE)


@router.get("/api/info", response_model=Info, tags=["gateway"])
def info(ctx: Context) -> Info:
    return Info(gateway_id=ctx.view.gateway_id, gateway_name=ctx.view.gateway_name or ctx.view.gateway_id,
                version=__version__, auth=ctx.auth.enabled, time=ctx.fmt_time(time.time()),
                rev=ctx.history.rev,
                alert_types={name: {"zh": kind.title_zh, "en": kind.label_en} for name, kind in ALERT_TYPES.items()})
