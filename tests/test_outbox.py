"""The SQLite outbox: order, durability across kill -9, the size cap's eviction order, ack records."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.delivery.outbox import MiB, NewMessage, Outbox
from gateway.events.payload import shed_picture

REPO = Path(__file__).resolve().parent.parent


def alert(event_id: str, seq: int, state: str = "update", snapshot_kb: int = 0, **extra: object) -> dict:
    payload: dict = {"event_id": event_id, "seq": seq, "state": state, "camera_id": "cam1", "count": 7, **extra}
    payload["snapshot"] = (
        {"mime": "image/jpeg", "encoding": "base64", "data": "A" * (snapshot_kb * 1024)} if snapshot_kb else None
    )
    return payload


def put(outbox: Outbox, event_id: str, seq: int, state: str = "update", snapshot_kb: int = 0) -> int:
    return outbox.put("gw/gk/events/cam1", alert(event_id, seq, state, snapshot_kb), event_id, seq, state)


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def test_wal_and_full_sync(outbox: Outbox) -> None:
    db = sqlite3.connect(outbox.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: check the outbox's own connection (2 = FULL).
    assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    db.close()


def test_order_delete_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    ids = [put(box, "e1", 0, "start"), put(box, "e2", 0, "start"), put(box, "e1", 1), put(box, "e1", 2, "end")]
    assert ids == sorted(ids)
    assert [(m.event_id, m.seq) for m in box.pending()] == [("e1", 0), ("e2", 0), ("e1", 1), ("e1", 2)]
    assert json.loads(box.pending()[0].payload)["state"] == "start"
    assert box.pending(after_id=ids[1], limit=1)[0].id == ids[2]
    assert box.delete([ids[0], ids[3], 99999]) == 2
    assert box.depth() == 2
    box.close()
    reopened = Outbox(path)  # a restart resends what is left, in order
    assert [(m.event_id, m.seq) for m in reopened.pending()] == [("e2", 0), ("e1", 1)]
    assert reopened.depth() == 2 and reopened.size_bytes() > 0
    reopened.close()


def test_same_event_and_seq_is_stored_once(outbox: Outbox) -> None:
    first = put(outbox, "e1", 3)
    assert put(outbox, "e1", 3) == first
    assert outbox.depth() == 1


def test_put_many_is_one_ordered_transaction(outbox: Outbox) -> None:
    batch = [NewMessage("gw/gk/events/cam1", alert("b1", seq), "b1", seq, "update") for seq in range(5)]
    ids = outbox.put_many(batch + [batch[2]])  # a repeat inside the batch is stored once
    assert ids[:5] == sorted(ids[:5]) and ids[5] == ids[2]
    assert [m.seq for m in outbox.pending()] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):  # one bad message: nothing of the batch is stored
        outbox.put_many([NewMessage("t", alert("b2", 0), "b2", 0), NewMessage("t", {"x": float("inf")}, "b2", 1)])
    assert outbox.depth() == 5


def test_rejects_bad_arguments(outbox: Outbox) -> None:
    with pytest.raises(ValueError):
        outbox.put("t", {"camera_id": "c"}, "", 0)
    with pytest.raises(ValueError):
        outbox.put("t", {"camera_id": "c"}, "e", -1)
    with pytest.raises(ValueError):  # NaN is not JSON
        outbox.put("t", {"camera_id": "c", "x": float("nan")}, "e", 0)
    assert outbox.depth() == 0


def test_survives_kill_9(tmp_path: Path) -> None:
    """put() returns only after the commit: a process killed right after loses nothing."""
    path = tmp_path / "o.sqlite3"
    script = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from gateway.delivery.outbox import Outbox\n"
        f"box = Outbox({str(path)!r})\n"
        "for i in range(50):\n"
        "    box.put('gw/gk/events/cam1', {'camera_id': 'cam1', 'i': i}, f'e{i // 5}', i % 5)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    box = Outbox(path)
    assert [json.loads(m.payload)["i"] for m in box.pending(limit=100)] == list(range(50))
    box.close()


def test_eviction_sheds_snapshots_first_updates_before_start(tmp_path: Path, caplog) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=60 * 1024)
    put(box, "e1", 0, "start", snapshot_kb=20)
    put(box, "e1", 1, "update", snapshot_kb=20)
    caplog.set_level(logging.WARNING, logger="gateway.delivery.outbox")
    put(box, "e2", 0, "start", snapshot_kb=20)  # needs room: the update's snapshot goes, not the start's
    messages = {(m.event_id, m.seq): json.loads(m.payload) for m in box.pending()}
    assert messages[("e1", 1)]["snapshot"] is None and messages[("e1", 1)]["details"] == {"snapshot_evicted": True}
    assert messages[("e1", 1)]["count"] == 7  # metadata kept
    assert messages[("e1", 0)]["snapshot"]["data"] and messages[("e2", 0)]["snapshot"]["data"]
    assert box.evictions()["snapshot"] == 1
    assert "dropped the snapshot of event e1 seq 1" in caplog.text
    assert box.size_bytes() <= box.max_bytes
    box.close()


def test_eviction_order_then_metadata_last(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.delivery.outbox")
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=4 * 1024)
    for seq in range(4):
        put(box, "e1", seq, "start" if seq == 0 else "update")
    put(box, "e2", 0, "start")
    for index in range(30):  # metadata alone now overflows the cap
        put(box, f"n{index}", 0, "start")
    left = [(m.event_id, m.seq) for m in box.pending(limit=1000)]
    counts = box.evictions()
    assert counts["superseded_update"] == 2, counts  # e1 seq 1, 2 went first; seq 3 is e1's latest
    assert counts["message"] >= 1
    assert ("n29", 0) in left  # the newest alert is never refused
    assert box.size_bytes() <= box.max_bytes
    assert "DROPPED event" in caplog.text
    box.close()
    assert Outbox(tmp_path / "o.sqlite3", max_bytes=4 * 1024).evictions() == counts  # counted durably


def test_new_alert_too_big_keeps_metadata(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=8 * 1024)
    put(box, "big", 0, "start", snapshot_kb=50)
    stored = json.loads(box.pending()[0].payload)
    assert stored["snapshot"] is None and stored["details"]["snapshot_evicted"] and stored["event_id"] == "big"
    assert box.evictions()["snapshot"] == 1
    box.close()


def test_in_dir_uses_data_dir_and_cap(tmp_path: Path) -> None:
    box = Outbox.in_dir(tmp_path / "data", max_mb=1.5)
    assert box.path == tmp_path / "data" / "outbox.sqlite3" and box.max_bytes == int(1.5 * MiB)
    box.close()


def test_shed_payload_still_fits_the_alert_schema() -> None:
    """gw.alert/1 is closed at the top: the eviction marker must live in `details`."""
    schema = pytest.importorskip("gateway.events.schema").alert_schema()
    slim = shed_picture(alert("e1", 0, "start", snapshot_kb=1, details={"note": "kept"}))
    assert set(slim) <= set(schema["properties"])
    assert {"type": "null"} in schema["properties"]["snapshot"]["anyOf"]
    assert schema["properties"]["details"].get("additionalProperties", True) is not False
    assert slim["details"] == {"note": "kept", "snapshot_evicted": True}
