"""Cameras: health and the live annotated picture."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Response
from fastapi import Path as PathParam

from gateway.api.context import Context
from gateway.api.schemas import CameraOut, Problem
from gateway.api.web import NO_STORE
from gateway.config.models import IDENT_PATTERN

CameraIdParam = Annotated[str, PathParam(pattern=IDENT_PATTERN, description="A configured camera id.")]

router = APIRouter(tags=["cameras"])


@router.get("/api/cameras", response_model=list[CameraOut], summary="Cameras with health")
def list_cameras(ctx: Context) -> list[CameraOut]:
    return ctx.cameras()


@router.get("/api/cameras/{camera_id}", response_model=CameraOut, responses={404: {"model": Problem}})
def get_camera(camera_id: CameraIdParam, ctx: Context) -> CameraOut:
    return ctx.find_camera(camera_id)


@router.get("/api/cameras/{camera_id}/snapshot.jpg", summary="Live annotated snapshot of the latest frame",
            responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                       404: {"model": Problem, "description": "Unknown camera, or no frame yet."}})
def camera_snapshot(camera_id: CameraIdParam, ctx: Context) -> Response:
    ctx.find_camera(camera_id)
    jpeg = ctx.snapshots.get(camera_id)
    if not jpeg:
        raise HTTPException(404, f"camera {camera_id!r} has no frame yet")
    return Response(jpeg, media_type="image/jpeg", headers=NO_STORE)
