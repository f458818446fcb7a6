"""EventHistory: one row per event, evidence files, bounds, safe names — on real alert messages."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from pathlib import Path

import pytest

from gateway.delivery.history import EventHistory, HistoryError
from gateway.events.lifecycle import is_event_id
from gateway.delivery.ledger import CaseLedger
from gateway.events import AlertMessage
from web_support import Alerts

MiB = 1024 * 1024


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def made(tmp_path: Path):
    opened: list = []

    def make(**kwargs) -> tuple[EventHistory, Alerts]:
        history = EventHistory(tmp_path, **kwargs)
        ledger = CaseLedger(tmp_path, history=history)
        opened.extend([history, ledger])
        return history, Alerts(None, history, ledger)

    yield make
    for thing in opened:
        thing.close()


def test_one_row_per_event_kept_up_to_date(made, tmp_path):
    history, alerts = made()
    changes = []
    history.subscribe(lambda record, kind: changes.append((record.event_id, record.state, kind)))
    live, start = alerts.start("gate", "gathering", 120)
    record = history.get(start.event_id)
    assert record.state == "start" and record.seq == 1 and record.count == start.payload["count"]
    assert record.has_snapshot and not record.has_peak_snapshot
    assert history.snapshot(start.event_id) == start.snapshot_jpeg
    assert (tmp_path / "snapshots" / f"{start.event_id}.jpg").read_bytes() == start.snapshot_jpeg

    update = alerts.update(live, 288)  # a different frame; the peak rose or not, either way one row
    end = alerts.end(live)
    record = history.get(start.event_id)
    assert (record.state, record.seq, record.count) == ("end", 3, 0)
    assert record.ended_at == end.payload["ended_at"] and record.peak_count == end.payload["peak_count"]
    assert record.payload["state"] == "end" and record.payload["event_id"] == start.event_id
    if update.snapshot_jpeg:
        assert history.snapshot(start.event_id, "peak") == update.snapshot_jpeg
        assert history.snapshot(start.event_id, "latest") == update.snapshot_jpeg
    assert history.snapshot(start.event_id, "start") == start.snapshot_jpeg
    assert [kind for _, _, kind in changes] == ["new", "update", "update"]
    assert history.list().total == 1


def test_picture_data_stays_out_of_the_database(made, tmp_path):
    history, alerts = made()
    _, start = alerts.start("market", "crowd", 72)
    stored = json.loads(history._db.execute("SELECT payload FROM events").fetchone()[0])
    assert "data" not in stored["snapshot"] and stored["snapshot"]["width"] == start.payload["snapshot"]["width"]
    assert (tmp_path / "history.sqlite3").stat().st_size < len(start.snapshot_jpeg)


def test_duplicates_and_stale_messages_change_nothing(made):
    history, alerts = made()
    live, start = alerts.start("gate", "intrusion", 240)
    alerts.update(live, 252)
    rev = history.rev
    assert history.record(start) is None  # seq 1 again (a redelivery)
    assert history.rev == rev and history.get(start.event_id).seq == 2


def test_inline_base64_is_used_when_the_bytes_are_missing(made):
    history, alerts = made()
    _, start = alerts.start("gate", "gathering", 120)
    payload = dict(start.payload, event_id=str(uuid.uuid4()))
    history.record(AlertMessage(payload, None))
    assert history.snapshot(payload["event_id"]) == base64.b64decode(start.payload["snapshot"]["data"])


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "x", "116A9A36-439F-458E-9AC3-0B2597480F70", "a/b", None, 5,
                                 "0fca1dfb-aa2c-4dd2-9fcf-af2628a1632f/../../x",
                                 "09645c40-6ab6-4885-9732-df5751d838de\x00"])
def test_names_come_only_from_valid_uuids(made, bad):
    history, alerts = made()
    _, start = alerts.start("gate", "gathering", 120)
    assert not is_event_id(bad)
    assert history.get(bad) is None and history.snapshot(bad) is None
    with pytest.raises(ValueError, match="event_id"):
        history.record(AlertMessage(dict(start.payload, event_id=bad), start.snapshot_jpeg))
    assert history.snapshot(start.event_id, "../start") is None  # type: ignore[arg-type]


def test_size_cap_deletes_the_oldest_pictures_and_keeps_the_alerts(made):
    history, alerts = made(snapshot_max_mb=0.3)
    ids = [alerts.start("gate", "gathering", index)[1].event_id for index in (0, 48, 96, 144, 192, 240)]
    stats = history.stats()
    assert stats.snapshot_bytes <= 0.3 * MiB and stats.events == 6 and stats.snapshots_evicted >= 3
    kept = [history.get(i).has_snapshot for i in ids]
    assert kept[-1] and not kept[0]  # newest kept, oldest evicted
    assert kept == sorted(kept)  # evicted strictly oldest first
    oldest = history.get(ids[0])
    assert oldest.snapshot_evicted and oldest.title_zh and history.snapshot(ids[0]) is None
    files = list((history.snapshot_dir).iterdir())
    assert len(files) == sum(kept) and sum(f.stat().st_size for f in files) == stats.snapshot_bytes


def test_retention_deletes_old_pictures_and_keeps_the_alerts(made):
    clock = Clock()
    history, alerts = made(snapshot_retention_days=2, clock=clock)
    _, old = alerts.start("gate", "gathering", 120)
    clock.now += 3 * 86400
    assert history.cleanup() == 1  # also runs by itself every few minutes while alerts arrive
    _, new = alerts.start("market", "crowd", 72)
    assert history.snapshot(old.event_id) is None and history.get(old.event_id).snapshot_evicted
    assert history.snapshot(new.event_id) == new.snapshot_jpeg
    assert history.list().total == 2
    clock.now += 3 * 86400
    alerts.start("gate", "intrusion", 240)  # recording applies the retention on its own
    assert history.snapshot(new.event_id) is None


def test_max_events_forgets_the_oldest_rows(made):
    history, alerts = made(max_events=3)
    ids = [alerts.start("gate", "intrusion", index, ago_s=100 - index)[1].event_id for index in (0, 12, 24, 36, 48)]
    assert history.list().total == 3 and history.get(ids[0]) is None and history.get(ids[-1]) is not None
    assert not (history.snapshot_dir / f"{ids[0]}.jpg").exists()


def test_reopen_keeps_rows_and_revisions_and_removes_orphan_files(made, tmp_path):
    history, alerts = made()
    _, start = alerts.start("gate", "gathering", 120)
    rev = history.rev
    history.close()
    orphan = tmp_path / "snapshots" / f"{uuid.uuid4()}.jpg"
    orphan.write_bytes(b"left by a crash")
    (tmp_path / "snapshots" / "half-written.jpg.tmp").write_bytes(b"x")
    reopened = EventHistory(tmp_path)
    try:
        assert reopened.rev == rev and reopened.snapshot(start.event_id) == start.snapshot_jpeg
        assert not orphan.exists() and not (tmp_path / "snapshots" / "half-written.jpg.tmp").exists()
    finally:
        reopened.close()


def test_acks_are_mirrored_for_filters_and_listeners(made):
    history, alerts = made()
    _, start = alerts.start("gate", "gathering", 120)
    alerts.start("market", "crowd", 72)
    kinds = []
    history.subscribe(lambda record, kind: kinds.append(kind))
    history.subscribe(lambda record, kind: 1 / 0)  # a broken listener does not stop the others
    ack, _ = alerts.ledger.acknowledge_on_page(start.event_id, "张三", "C-1", "note")  # mirrored by the ledger
    record = history.get(start.event_id)
    assert record.ack.by == "张三" and record.ack.note == "note" and kinds == ["ack"]
    assert [r.event_id for r in history.list(acked=True).items] == [start.event_id]
    assert len(history.list(acked=False).items) == 1
    assert history.note_ack(dataclasses.replace(ack, event_id=str(uuid.uuid4()))) is None
    assert [r.event_id for r in history.changes_since(record.rev - 1)] == [start.event_id]


def test_unwritable_database_is_a_clear_error(tmp_path):
    (tmp_path / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError, match="move the file aside"):
        EventHistory(tmp_path)
