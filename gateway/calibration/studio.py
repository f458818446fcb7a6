"""The page's 标注人数 (annotate people) tool behind the API: snapshots, points, fit, hand-over.

An installer fits a camera's counting model in the page without a recording:
1. `start`: the camera keeps a counting background even while it counts with the detector;
   it warms up on the next minutes of live frames (the status says how long is left).
2. `take_snapshot`: the camera's latest analysed frame is stored with its features (computed
   against the warm background at that very frame) and its confident person boxes.
3. `save_points`: the people the installer clicked on it (source pixels).
4. `fit` (>= 5 annotated snapshots): the same fit as `gateway calibrate count`; the model (with
   the empty scene the camera sees now) is written to `<data_dir>/counting/<camera id>.json` and
   the camera counts with it from its next frame (in `auto` mode when the configuration still
   says `detector`). That file is used again after a restart unless the YAML names another
   model or writes `mode: detector` (gateway.calibration.choice); the answer says whether it is
   (`kept`), with the cross-validated error, the count before/after on the latest annotated
   snapshot and the YAML line that would pin it.

Errors are `StudioError(status, message)`: 404 unknown camera or snapshot, 409 not possible now
(warming up, no frame yet, too few frames, no perspective), 422 bad points.

Requests arrive on several API threads at once (a page deleting a snapshot while another saves
its points or fits): every use of a camera's snapshots holds that camera's lock, so each request
sees a snapshot whole or not at all (404), and a snapshot deleted is never written again. The fit
itself runs outside the lock, on the snapshots it read.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from gateway.analytics.counting import AnnotatedFrame, BackgroundSettings, CrowdCounter, TrainingError, fit_model
from gateway.analytics.counting.features import working_size
from gateway.analytics.counting.training import MIN_FRAMES
from gateway.analytics.geometry import polygon_to_frame
from gateway.calibration.choice import describe_origin, model_choice
from gateway.calibration.files import camera_perspective, outside_masks, perspective_problem, save_model
from gateway.calibration.live import LiveCounting
from gateway.calibration.store import SnapshotStore, StoredSnapshot
from gateway.config.counting import default_model_path

MAX_POINTS = 3000


class StudioError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FitReport:
    frames: int
    people: int
    cross_validation: dict[str, Any]
    latest: dict[str, Any]
    model_path: Path
    mode: str
    yaml: str
    kept: bool
    """The camera counts with this model after a restart too (no YAML names another one)."""
    kept_note: str


class CountingStudio:
    """cameras(camera_id) -> the camera's LiveCounting, or None for an unknown camera."""

    def __init__(self, data_dir: Path, cameras: Callable[[str], LiveCounting | None]):
        self.data_dir = data_dir
        self.cameras = cameras
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def store(self, camera_id: str) -> SnapshotStore:
        return SnapshotStore(self.data_dir / "counting" / camera_id / "snapshots")

    @contextmanager
    def _snapshots(self, camera_id: str) -> Iterator[SnapshotStore]:
        """The camera's snapshot store, for this request alone (see the module docstring)."""
        with self._locks_lock:
            lock = self._locks.setdefault(camera_id, threading.Lock())
        with lock:
            yield self.store(camera_id)

    def status(self, camera_id: str) -> dict[str, Any]:
        live = self._live(camera_id)
        frame = live.frame()
        model = live.model
        training = model.training if model is not None else {}
        origin = live.model_origin if model is not None else None
        return {
            "camera_id": camera_id,
            "mode": live.camera.counting.mode,
            "active_mode": live.mode if model is not None else "detector",
            "running": frame is not None,
            "warmup_left_s": None if frame is None else round(frame.warmup_left_s, 1),
            "model": None if model is None else {
                "fitted_at": training.get("fitted_at"), "frames": training.get("frames"),
                "cross_validation": training.get("cross_validation"), "source": origin,
                "source_text": describe_origin(origin, model)},
            "model_after_restart": self._after_restart(live),
            "detected": None if frame is None else frame.detected,
            "estimated": None if frame is None else frame.estimated,
            "snapshots": [_snapshot_out(s) for s in self._listed(camera_id)],
            "min_frames": MIN_FRAMES,
        }

    def start(self, camera_id: str) -> dict[str, Any]:
        self._live(camera_id).start()
        return self.status(camera_id)

    def take_snapshot(self, camera_id: str) -> dict[str, Any]:
        live = self._live(camera_id)
        live.start()
        frame = live.frame()
        if frame is None:
            raise StudioError(409, f"camera {camera_id}: no analysed frame with counting features yet; "
                                   f"try again in a few seconds")
        if frame.features is None:
            raise StudioError(409, f"camera {camera_id}: the counting background is still warming up "
                                   f"({math.ceil(frame.warmup_left_s)} s left); take the snapshot then")
        try:
            with self._snapshots(camera_id) as store:
                return _snapshot_out(store.add(frame))
        except OverflowError as error:
            raise StudioError(409, f"camera {camera_id}: {error}") from None

    def snapshot(self, camera_id: str, snapshot_id: str) -> dict[str, Any]:
        with self._snapshots(camera_id) as store:
            return _snapshot_out(self._stored(camera_id, snapshot_id, store))

    def snapshot_jpeg(self, camera_id: str, snapshot_id: str) -> bytes:
        with self._snapshots(camera_id) as store:
            self._stored(camera_id, snapshot_id, store)
            return self._read(camera_id, snapshot_id, lambda: store.jpeg(snapshot_id))

    def save_points(self, camera_id: str, snapshot_id: str, points: list[list[float]]) -> dict[str, Any]:
        with self._snapshots(camera_id) as store:
            stored = self._stored(camera_id, snapshot_id, store)
            array = self._checked_points(stored, points)
            return _snapshot_out(self._read(camera_id, snapshot_id, lambda: store.save_points(snapshot_id, array)))

    @staticmethod
    def _checked_points(stored: StoredSnapshot, points: list[list[float]]) -> np.ndarray:
        width, height = stored.frame_size
        if len(points) > MAX_POINTS:
            raise StudioError(422, f"{len(points)} points: at most {MAX_POINTS} people per snapshot")
        for index, point in enumerate(points):
            if len(point) != 2 or not all(math.isfinite(v) for v in point):
                raise StudioError(422, f"points[{index}]: expected [x, y] in pixels")
            x, y = point
            if not (0 <= x <= width and 0 <= y <= height):
                raise StudioError(422, f"points[{index}]: [{x:g}, {y:g}] lies outside the {width}x{height} picture")
        return np.asarray(points, np.float64).reshape(-1, 2)

    def delete(self, camera_id: str, snapshot_id: str) -> None:
        with self._snapshots(camera_id) as store:
            self._stored(camera_id, snapshot_id, store)
            store.delete(snapshot_id)

    def fit(self, camera_id: str) -> FitReport:
        live = self._live(camera_id)
        with self._snapshots(camera_id) as store:
            annotated = [s for s in store.list() if s.points is not None]
            if len(annotated) < MIN_FRAMES:
                raise StudioError(409, f"camera {camera_id}: {len(annotated)} annotated snapshot"
                                       f"{'s' if len(annotated) != 1 else ''}; a counting model needs at least "
                                       f"{MIN_FRAMES}: annotate {MIN_FRAMES - len(annotated)} more")
            size = annotated[-1].frame_size
            annotated = [s for s in annotated if s.frame_size == size]
            features = [self._read(camera_id, s.id, partial(store.features, s.id)) for s in annotated]
        camera = live.camera
        masks = [polygon_to_frame(m.polygon, camera, size) for m in camera.masks]
        frames, boxes = [], [live.boxes()]
        for snapshot, (cells, snapshot_boxes) in zip(annotated, features, strict=True):
            boxes.append(snapshot_boxes)
            marked = snapshot.points if snapshot.points is not None else np.zeros((0, 2))
            points = marked[outside_masks(marked, masks)]
            frames.append(AnnotatedFrame(cells, points, label=f"snapshot {snapshot.id}"))
        all_boxes = np.concatenate(boxes)
        perspective = camera_perspective(camera, size, all_boxes)
        if perspective is None:
            raise StudioError(409, perspective_problem(camera, all_boxes))
        fitted_at = datetime.now().astimezone().isoformat(timespec="seconds")
        scene = live.scene()
        try:
            result = fit_model(frames, camera_id, size, perspective, BackgroundSettings(),
                               training={"source": "page", "fitted_at": fitted_at},
                               scene=None if scene is None or scene.background.shape != _working_shape(size) else scene)
        except TrainingError as error:
            raise StudioError(409, f"camera {camera_id}: {error}") from None
        path = default_model_path(self.data_dir, camera_id)
        save_model(path, result.model)
        mode = live.use_model(result.model)
        latest = annotated[-1]
        after = CrowdCounter(size, model=result.model).estimate(frames[-1].features).total
        choice = model_choice(camera, self.data_dir)
        kept = choice.path == path
        return FitReport(
            frames=len(frames), people=int(sum(len(f.points) for f in frames)),
            cross_validation=result.validation.to_dict(),
            latest={"snapshot_id": latest.id, "annotated": len(frames[-1].points), "detected": latest.detected,
                    "estimated": round(after, 1)},
            model_path=path, mode=mode,
            yaml=f"counting: {{mode: {mode}, model: {path}}}",
            kept=kept, kept_note=_kept_note(camera_id, kept, choice.reason, choice.path),
        )

    def _after_restart(self, live: LiveCounting) -> str:
        """How the camera will count after a restart, in one line (for the page)."""
        choice = model_choice(live.camera, self.data_dir)
        if choice.path is None:
            return f"the detector ({choice.reason})"
        return f"{choice.mode} mode with {choice.path} ({'page' if choice.origin == 'page' else 'configuration'})"

    def _live(self, camera_id: str) -> LiveCounting:
        live = self.cameras(camera_id)
        if live is None:
            raise StudioError(404, f"no camera {camera_id!r}")
        return live

    def _stored(self, camera_id: str, snapshot_id: str, store: SnapshotStore) -> StoredSnapshot:
        self._live(camera_id)
        return self._read(camera_id, snapshot_id, lambda: store.get(snapshot_id))

    def _listed(self, camera_id: str) -> list[StoredSnapshot]:
        with self._snapshots(camera_id) as store:
            return store.list()

    @staticmethod
    def _read(camera_id: str, snapshot_id: str, read: Callable[[], Any]) -> Any:
        """`read()`, with a snapshot that is not (or no longer) there answered as 404."""
        try:
            return read()
        except KeyError:
            raise StudioError(404, f"camera {camera_id}: no snapshot {snapshot_id!r}") from None


def _kept_note(camera_id: str, kept: bool, reason: str, other: Path | None) -> str:
    if kept:
        return f"camera {camera_id} counts with this model after a restart too"
    if other is not None:
        return (f"camera {camera_id}: the configuration names another model ({other}), which it counts with "
                f"after a restart; name this one in counting.model to keep it")
    return f"camera {camera_id}: after a restart it counts with the detector ({reason})"


def _working_shape(frame_size: tuple[int, int]) -> tuple[int, int]:
    width, height = working_size(frame_size)
    return height, width


def _snapshot_out(snapshot: StoredSnapshot) -> dict[str, Any]:
    return {"id": snapshot.id, "taken_at": snapshot.taken_at, "width": snapshot.frame_size[0],
            "height": snapshot.frame_size[1], "detected": snapshot.detected,
            "points": None if snapshot.points is None else snapshot.points.tolist()}
