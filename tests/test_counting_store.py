"""The installer's annotated snapshots on disk: what is stored comes back, nothing a client sends
becomes a path, and the store stays bounded."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from gateway.calibration.live import CountingFrame
from gateway.calibration.store import MAX_SNAPSHOTS, SnapshotStore

TAKEN = datetime(2026, 5, 1, 10, 30, tzinfo=ZoneInfo("Asia/Shanghai"))


def frame(minutes: int = 0) -> CountingFrame:
    rng = np.random.default_rng(minutes)
    image = rng.integers(0, 255, (480, 640, 3), np.uint8)
    features = rng.uniform(0, 50, (24, 32, 3)).astype(np.float32)
    boxes = np.array([[10, 20, 40, 120], [300, 200, 330, 280]], np.float32)
    return CountingFrame(image, features, 7, 31.5, boxes, TAKEN + timedelta(minutes=minutes), 0.0)


def test_a_snapshot_round_trips(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "cam1" / "snapshots")
    taken = frame()
    stored = store.add(taken)
    assert stored.id.startswith("20260501103000-") and stored.frame_size == (640, 480) and stored.points is None
    assert stored.taken_at == "2026-05-01T10:30:00+08:00" and stored.detected == 7
    picture = cv2.imdecode(np.frombuffer(store.jpeg(stored.id), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (480, 640, 3)
    features, boxes = store.features(stored.id)
    assert np.array_equal(features, taken.features) and np.array_equal(boxes, taken.boxes)
    saved = store.save_points(stored.id, np.array([[1.25, 2.0], [639.9, 479.0]]))
    assert saved.points.tolist() == [[1.2, 2.0], [639.9, 479.0]]
    later = store.add(frame(5))
    assert [s.id for s in store.list()] == [stored.id, later.id]  # in the order taken
    store.delete(stored.id)
    assert [s.id for s in store.list()] == [later.id]
    assert sorted(p.suffix for p in store.folder.iterdir()) == [".jpg", ".npz"]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "20260501103000-abcdef/../x", "", "x" * 21])
def test_ids_that_are_not_snapshot_ids_never_reach_the_disk(tmp_path: Path, bad: str) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    for action in (store.get, store.jpeg, store.features, store.delete):
        with pytest.raises(KeyError):
            action(bad)
    with pytest.raises(KeyError):
        store.get("20260501103000-abcdef")  # well formed, but not there


def test_the_store_is_bounded(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    for minute in range(MAX_SNAPSHOTS):
        store.add(frame(minute))
    with pytest.raises(OverflowError, match=f"{MAX_SNAPSHOTS} snapshots kept already"):
        store.add(frame(MAX_SNAPSHOTS))
