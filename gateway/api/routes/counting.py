"""Counting models from the page: the installer's 标注人数 (annotate people) tool.

    GET    /api/cameras/{id}/counting                          status: mode, model, warm-up, snapshots
    POST   /api/cameras/{id}/counting/start                    keep a counting background for annotation
    POST   /api/cameras/{id}/counting/snapshots                store the latest analysed frame (201)
    GET    /api/cameras/{id}/counting/snapshots/{sid}          one snapshot with its points
    GET    /api/cameras/{id}/counting/snapshots/{sid}/image.jpg   its picture
    PUT    /api/cameras/{id}/counting/snapshots/{sid}/points   {"points": [[x, y], ...]}
    DELETE /api/cameras/{id}/counting/snapshots/{sid}          (204)
    POST   /api/cameras/{id}/counting/fit                      fit (>= 5 annotated), count with it now

The work is `gateway.calibration.studio.CountingStudio`'s (the service hands it to `create_app`);
this module only maps it onto HTTP: its errors keep their status and message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from gateway.api.schemas import Problem
from gateway.api.web import NO_STORE
from gateway.calibration.store import SNAPSHOT_ID
from gateway.calibration.studio import CountingStudio, StudioError
from gateway.config.models import IDENT_PATTERN

CameraIdParam = Annotated[str, PathParam(pattern=IDENT_PATTERN, description="A configured camera id.")]
SnapshotIdParam = Annotated[str, PathParam(pattern=SNAPSHOT_ID.pattern, description="A snapshot id.")]
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": Problem}, 409: {"model": Problem}}

router = APIRouter(tags=["counting"])


class SnapshotOut(BaseModel):
    id: str
    taken_at: str
    width: int
    height: int
    detected: int = Field(description="People the detector saw in this frame.")
    points: list[tuple[float, float]] | None = Field(description="The people marked (pixels); null until saved.")


class ModelOut(BaseModel):
    fitted_at: str | None
    frames: int | None
    cross_validation: dict[str, float] | None
    source: Literal["yaml", "page"] | None = Field(
        description="yaml: the file the configuration names; page: fitted on the page, kept in data_dir.")
    source_text: str = Field(description="e.g. 'fitted on the page 2026-05-01 10:00', 'named in the configuration'.")


class CountingOut(BaseModel):
    camera_id: str
    mode: str = Field(description="counting.mode in the configuration.")
    active_mode: str = Field(description="How the camera counts now: detector, model or auto.")
    running: bool = Field(description="The camera keeps a counting background (for a model or for annotation).")
    warmup_left_s: float | None = Field(description="Seconds until the background is warm (0: ready).")
    model: ModelOut | None = Field(description="The model the camera counts with now (null: the detector).")
    model_after_restart: str = Field(description="How the camera will count after a restart, and with what.")
    detected: int | None = Field(description="The detector's count in the latest analysed frame.")
    estimated: float | None = Field(description="The model's estimate in the latest analysed frame.")
    snapshots: list[SnapshotOut]
    min_frames: int


Coordinate = Annotated[list[StrictFloat], Field(min_length=2, max_length=2)]
"""[x, y]: JSON numbers only ("1" or true are refused, not read as 1)."""


class PointsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: list[Coordinate] = Field(description="One [x, y] per visible person, picture pixels.")


class FitOut(BaseModel):
    frames: int
    people: int
    cross_validation: dict[str, float] = Field(description="folds, mae (people), relative_error, within_20.")
    latest: dict[str, Any] = Field(description="The latest annotated snapshot: annotated, detected, estimated.")
    model_path: str
    active_mode: str
    yaml: str = Field(description="The camera's `counting:` line that pins this model in the configuration.")
    kept: bool = Field(description="The camera counts with this model after a restart too, without editing the "
                                   "configuration (false when the configuration names another model or says "
                                   "mode: detector).")
    kept_note: str = Field(description="What happens after a restart, in one sentence.")


def studio(request: Request) -> CountingStudio:
    found = getattr(request.app.state, "counting", None)
    if found is None:
        raise HTTPException(404, "counting models are not available on this gateway")
    return found


async def _call(request: Request, work: Callable[[CountingStudio], Any]) -> Any:
    desk = studio(request)
    try:
        return await run_in_threadpool(work, desk)
    except StudioError as error:
        if error.status == 422:  # bad points: shaped like every other validation error of the API
            raise RequestValidationError([{"loc": ("body", "points"), "msg": str(error),
                                           "type": "value_error"}]) from None
        raise HTTPException(error.status, str(error)) from None


@router.get("/api/cameras/{camera_id}/counting", response_model=CountingOut, responses=ERRORS,
            summary="How a camera counts, and its annotated snapshots")
async def counting_status(camera_id: CameraIdParam, request: Request) -> Any:
    return await _call(request, lambda desk: desk.status(camera_id))


@router.post("/api/cameras/{camera_id}/counting/start", response_model=CountingOut, responses=ERRORS,
             summary="Keep a counting background for annotation (warms up on the next minutes)")
async def counting_start(camera_id: CameraIdParam, request: Request) -> Any:
    return await _call(request, lambda desk: desk.start(camera_id))


@router.post("/api/cameras/{camera_id}/counting/snapshots", response_model=SnapshotOut, status_code=201,
             responses=ERRORS, summary="Store the latest analysed frame with its counting features")
async def take_snapshot(camera_id: CameraIdParam, request: Request) -> Any:
    return await _call(request, lambda desk: desk.take_snapshot(camera_id))


@router.get("/api/cameras/{camera_id}/counting/snapshots/{snapshot_id}", response_model=SnapshotOut,
            responses=ERRORS, summary="One snapshot with the people marked on it")
async def get_snapshot(camera_id: CameraIdParam, snapshot_id: SnapshotIdParam, request: Request) -> Any:
    return await _call(request, lambda desk: desk.snapshot(camera_id, snapshot_id))


@router.get("/api/cameras/{camera_id}/counting/snapshots/{snapshot_id}/image.jpg", responses={
    200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}, **ERRORS},
    summary="A snapshot's picture")
async def snapshot_image(camera_id: CameraIdParam, snapshot_id: SnapshotIdParam, request: Request) -> Response:
    jpeg = await _call(request, lambda desk: desk.snapshot_jpeg(camera_id, snapshot_id))
    return Response(jpeg, media_type="image/jpeg", headers=NO_STORE)


@router.put("/api/cameras/{camera_id}/counting/snapshots/{snapshot_id}/points", response_model=SnapshotOut,
            responses={**ERRORS, 400: {"model": Problem, "description": "The body is not JSON text."}},
            summary="Save the people marked on a snapshot")
async def save_points(camera_id: CameraIdParam, snapshot_id: SnapshotIdParam, body: PointsIn,
                      request: Request) -> Any:
    return await _call(request, lambda desk: desk.save_points(camera_id, snapshot_id, body.points))


@router.delete("/api/cameras/{camera_id}/counting/snapshots/{snapshot_id}", status_code=204, responses=ERRORS,
               summary="Delete a snapshot and its points")
async def delete_snapshot(camera_id: CameraIdParam, snapshot_id: SnapshotIdParam, request: Request) -> Response:
    await _call(request, lambda desk: desk.delete(camera_id, snapshot_id))
    return Response(status_code=204)


@router.post("/api/cameras/{camera_id}/counting/fit", response_model=FitOut, responses=ERRORS,
             summary="Fit the camera's counting model from its annotated snapshots; it counts with it now")
async def fit(camera_id: CameraIdParam, request: Request) -> Any:
    report = await _call(request, lambda desk: desk.fit(camera_id))
    return FitOut(frames=report.frames, people=report.people, cross_validation=report.cross_validation,
                  latest=report.latest, model_path=str(report.model_path), active_mode=report.mode,
                  yaml=report.yaml, kept=report.kept, kept_note=report.kept_note)
