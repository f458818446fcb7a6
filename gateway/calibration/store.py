"""The installer's annotated snapshots of one camera, on disk under the gateway's data_dir.

    <data_dir>/counting/<camera id>/snapshots/<id>.jpg    the picture as the analytics saw it
                                             <id>.npz    its counting features and person boxes
                                             <id>.json   the people clicked on it (after saving)

A snapshot id is `YYYYmmddHHMMSS-xxxxxx` (time taken, 6 random hex digits) and is checked
against that pattern before it comes near a path. Writes are atomic (temporary file, then
rename), so a power cut never leaves half a snapshot; annotations survive restarts, so an
installer can come back to them.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway.calibration.files import write_atomically
from gateway.calibration.live import CountingFrame

SNAPSHOT_ID = re.compile(r"^\d{14}-[0-9a-f]{6}$")
MAX_SNAPSHOTS = 60
JPEG_QUALITY = 92


@dataclass(frozen=True)
class StoredSnapshot:
    id: str
    taken_at: str
    frame_size: tuple[int, int]
    detected: int
    points: np.ndarray | None
    """(N, 2) source pixels; None until the installer saves points."""


class SnapshotStore:
    """One camera's snapshots (see the module docstring). Raises KeyError for an unknown id.

    Not thread-safe on its own: the counting studio serialises each camera's requests."""

    def __init__(self, folder: Path):
        self.folder = folder

    def add(self, frame: CountingFrame) -> StoredSnapshot:
        if frame.features is None:
            raise ValueError("a snapshot needs its counting features (the background is still warming up)")
        if len(self.ids()) >= MAX_SNAPSHOTS:
            raise OverflowError(f"{MAX_SNAPSHOTS} snapshots kept already: delete some first")
        taken_at = frame.taken_at.isoformat(timespec="seconds")
        snapshot_id = f"{frame.taken_at.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
        height, width = frame.image.shape[:2]
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("JPEG encoding failed")
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "features": frame.features, "boxes": np.asarray(frame.boxes, np.float32).reshape(-1, 4),
            "frame_size": np.array([width, height]), "detected": np.array(frame.detected),
            "taken_at": np.array(taken_at)}
        packed = io.BytesIO()
        np.savez(packed, **arrays)
        write_atomically(self.folder / f"{snapshot_id}.npz", packed.getvalue())
        write_atomically(self.folder / f"{snapshot_id}.jpg", jpeg.tobytes())
        return StoredSnapshot(snapshot_id, taken_at, (width, height), frame.detected, None)

    def ids(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob("*.npz") if SNAPSHOT_ID.match(path.stem))

    def list(self) -> list[StoredSnapshot]:
        """Every snapshot that can be read (one half removed by hand is left out)."""
        snapshots = []
        for snapshot_id in self.ids():
            try:
                snapshots.append(self.get(snapshot_id))
            except KeyError:
                continue
        return snapshots

    def get(self, snapshot_id: str) -> StoredSnapshot:
        """Raises KeyError for an unknown id, or a snapshot whose files are gone or unreadable."""
        try:
            with np.load(self._path(snapshot_id, ".npz")) as data:
                width, height = (int(v) for v in data["frame_size"])
                taken_at, detected = str(data["taken_at"]), int(data["detected"])
            points_file = self._path(snapshot_id, ".json", must_exist=False)
            points = None
            if points_file.exists():
                saved = json.loads(points_file.read_text(encoding="utf-8"))["points"]
                points = np.asarray(saved, np.float64).reshape(-1, 2)
        except (OSError, ValueError, TypeError) as error:  # removed meanwhile, or damaged
            raise KeyError(snapshot_id) from error
        return StoredSnapshot(snapshot_id, taken_at, (width, height), detected, points)

    def jpeg(self, snapshot_id: str) -> bytes:
        try:
            return self._path(snapshot_id, ".jpg").read_bytes()
        except OSError as error:
            raise KeyError(snapshot_id) from error

    def features(self, snapshot_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(raw cell features, confident person boxes) of a snapshot."""
        try:
            with np.load(self._path(snapshot_id, ".npz")) as data:
                return data["features"], data["boxes"]
        except (OSError, ValueError) as error:
            raise KeyError(snapshot_id) from error

    def save_points(self, snapshot_id: str, points: np.ndarray) -> StoredSnapshot:
        self._path(snapshot_id, ".npz")
        body = json.dumps({"points": np.round(points, 1).tolist(), "saved_at": datetime.now().astimezone()
                           .isoformat(timespec="seconds")})
        write_atomically(self._path(snapshot_id, ".json", must_exist=False), body.encode("utf-8"))
        return self.get(snapshot_id)

    def delete(self, snapshot_id: str) -> None:
        self._path(snapshot_id, ".npz")
        for suffix in (".json", ".jpg", ".npz"):
            self._path(snapshot_id, suffix, must_exist=False).unlink(missing_ok=True)

    def _path(self, snapshot_id: str, suffix: str, must_exist: bool = True) -> Path:
        if not SNAPSHOT_ID.match(snapshot_id):
            raise KeyError(snapshot_id)
        path = self.folder / f"{snapshot_id}{suffix}"
        if must_exist and not path.exists():
            raise KeyError(snapshot_id)
        return path
