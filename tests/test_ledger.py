"""The case ledger: known events, acknowledgements (the centre's and the page's), case steps, and
the take-over of what earlier versions kept in the outbox and the history. Real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from delivery_support import start_alert
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import AckRecord, CaseLedger, CaseUpdate, UnknownEventError

TZ = ZoneInfo("Asia/Shanghai")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Announcer:
    """An output that tells the centre about page acknowledgements (what the MQTT output does)."""

    name = "mqtt"

    def __init__(self) -> None:
        self.told: list[tuple[AckRecord, str | None, str]] = []

    def announce_ack(self, ack: AckRecord, note: str | None, at: str) -> None:
        self.told.append((ack, note, at))


@pytest.fixture
def sent(tmp_path: Path):
    """A history with one recorded alert, and a ledger that knows it was sent."""
    history = EventHistory(tmp_path)
    ledger = CaseLedger(tmp_path, history=history, timezone=TZ)
    _, message = start_alert(0)
    ledger.note_events([message])
    history.record(message)
    yield history, ledger, message.event_id
    ledger.close()
    history.close()


def test_the_centres_ack_is_recorded_once_and_shown_on_the_event(sent):
    history, ledger, event_id = sent
    changes: list[str] = []
    history.subscribe(lambda record, kind: changes.append(kind))
    record, new = ledger.record_centre_ack(event_id, "C-1", "指挥中心")
    assert new and (record.case_id, record.by) == ("C-1", "指挥中心")
    again, new = ledger.record_centre_ack(event_id, "C-1", "指挥中心")
    assert not new and again.received_at == record.received_at
    assert history.get(event_id).ack.by == "指挥中心" and changes == ["ack"]
    assert ledger.ack_for(event_id) == record and ledger.ack_for("nope") is None
    with pytest.raises(UnknownEventError):
        ledger.record_centre_ack("never-sent", "C-3", "x")


def test_a_page_ack_is_told_to_the_centre_with_its_note(sent):
    history, ledger, event_id = sent
    centre = Announcer()
    ledger.add_announcer(centre)
    record, new = ledger.acknowledge_on_page(event_id, "值班员甲", "C-2024-001", "已派网格员")
    assert new and record.note == "已派网格员"
    [(told, note, at)] = centre.told
    assert told == record and note == "已派网格员" and at.endswith("+08:00")
    repeat, new = ledger.acknowledge_on_page(event_id, "值班员甲", "C-2024-001", "到场处置")
    assert not new and repeat.note == "到场处置" and len(centre.told) == 1  # told once; the note updates
    assert history.get(event_id).ack.note == "到场处置"
    assert [ack.case_id for ack in ledger.acks()] == ["C-2024-001"]


def test_case_steps_are_kept_in_time_order_and_refresh_the_page(sent):
    history, ledger, event_id = sent
    changes: list[str] = []
    history.subscribe(lambda record, kind: changes.append(kind))
    accepted = CaseUpdate(event_id, "GD-1", "accepted", "综治中心", "2024-05-01T09:31:00+08:00", 1714527060.0)
    dispatched = CaseUpdate(event_id, "GD-1", "dispatched", "综治中心", "2024-05-01T09:30:00+08:00", 1714527000.0)
    assert ledger.record_case(accepted) and ledger.record_case(dispatched)
    assert not ledger.record_case(accepted)  # a repeat changes nothing
    assert [step.status for step in ledger.cases(event_id)] == ["dispatched", "accepted"]
    assert ledger.latest_cases([event_id, "other"]) == {event_id: accepted}
    assert changes == ["case", "case"]
    with pytest.raises(UnknownEventError):
        ledger.record_case(CaseUpdate("never-sent", "GD-2", "accepted", "", "2024-05-01T09:31:00+08:00", 1.0))


def test_known_events_and_acks_are_forgotten_after_history_days(tmp_path: Path):
    clock = Clock()
    ledger = CaseLedger(tmp_path, history_days=1, clock=clock)
    _, message = start_alert(0)
    ledger.note_events([message])
    ledger.record_centre_ack(message.event_id, "C-1", "x")
    clock.now += 2 * 86400
    ledger._prune()  # the hourly housekeeping
    assert not ledger.is_known(message.event_id) and ledger.ack_for(message.event_id) is None
    ledger.close()


def test_acks_and_case_steps_of_an_earlier_version_are_taken_over(tmp_path: Path):
    """Before the ledger, acks and known events lived in the outbox, case steps in the history."""
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as old:
        old.executescript("""
            CREATE TABLE known_events (event_id TEXT PRIMARY KEY, camera_id TEXT NOT NULL DEFAULT '',
                first_at REAL NOT NULL, last_at REAL NOT NULL, last_seq INTEGER NOT NULL);
            CREATE TABLE acks (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, case_id TEXT NOT NULL,
                acked_by TEXT NOT NULL, received_at REAL NOT NULL, UNIQUE (event_id, case_id, acked_by));
            INSERT INTO known_events VALUES ('e-old', 'gate', 1e12, 1e12, 3);
            INSERT INTO acks (event_id, case_id, acked_by, received_at) VALUES ('e-old', 'C-9', '老张', 1e12);
        """)
    with sqlite3.connect(tmp_path / "history.sqlite3") as old:
        old.executescript("""
            CREATE TABLE cases (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, case_id TEXT NOT NULL,
                status TEXT NOT NULL, acted_by TEXT NOT NULL DEFAULT '', at TEXT NOT NULL, at_ts REAL NOT NULL,
                note TEXT, received_at REAL NOT NULL, UNIQUE (event_id, case_id, status, at));
            INSERT INTO cases (event_id, case_id, status, acted_by, at, at_ts, note, received_at)
                VALUES ('e-old', 'C-9', 'handled', '网格员', '2024-05-01T10:00:00+08:00', 1e12, NULL, 1e12);
        """)
    ledger = CaseLedger(tmp_path, clock=lambda: 1e12)
    assert ledger.is_known("e-old") and ledger.ack_for("e-old").by == "老张"
    assert [step.status for step in ledger.cases("e-old")] == ["handled"]
    ledger.close()
    again = CaseLedger(tmp_path, clock=lambda: 1e12)  # taken over once, when the ledger file is made
    assert len(again.acks()) == 1
    again.close()
