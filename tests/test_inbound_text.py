"""Text from outside that ends up on the duty officer's page and in the log: names and case
numbers of acknowledgements (the page's form, MQTT acks and case steps) must be plain text on
one line, without characters that break lines or reorder what is shown (U+2028, U+0085,
U+202E); a case step may not claim a time far in the future (it would pin the shown status).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from gateway.outputs.mqtt.messages import MAX_FUTURE_S, InvalidMessage, parse_ack, parse_case
from waiting import PATIENCE_S
from web_support import TOKEN, serve

NOW = 1714527000.0  # 2024-05-01T01:30:00Z
SNEAKY = [
    pytest.param("\u2028", id="line-separator"),
    pytest.param("\u2029", id="paragraph-separator"),
    pytest.param("\u0085", id="next-line"),
    pytest.param("\u202e", id="right-to-left-override"),
    pytest.param("\u2066", id="left-to-right-isolate"),
    pytest.param("\u200f", id="right-to-left-mark"),
    pytest.param("\x9b", id="c1-control"),
]


def case(**fields) -> bytes:
    return json.dumps({"event_id": "e1", "case_id": "GD-1", "status": "handled", **fields}).encode()


@pytest.mark.parametrize("sneaky", SNEAKY)
@pytest.mark.parametrize("field", ["by", "case_id"])
def test_mqtt_acks_and_case_steps_refuse_line_breaking_and_reordering_characters(sneaky: str, field: str) -> None:
    ack = {"event_id": "e1", "case_id": "GD-1", "by": "张三", field: f"张三{sneaky}admin"}
    with pytest.raises(InvalidMessage, match=f"U\\+{ord(sneaky):04X}"):
        parse_ack(json.dumps(ack).encode())
    with pytest.raises(InvalidMessage, match=f"U\\+{ord(sneaky):04X}"):
        parse_case(case(**{field: f"GD{sneaky}1"}), NOW)


def test_plain_names_and_case_numbers_still_pass() -> None:
    ack = parse_ack(json.dumps({"event_id": "e1", "case_id": "GD-2024/031 (二)", "by": "王 五"}).encode())
    assert (ack.case_id, ack.by) == ("GD-2024/031 (二)", "王 五")
    step = parse_case(case(by="李主任", note="第一行\n第二行\t完"), NOW)
    assert step.note == "第一行\n第二行\t完"
    with pytest.raises(InvalidMessage, match="U\\+202E"):
        parse_case(case(note="ok \u202e evil"), NOW)


def test_a_case_step_far_in_the_future_is_refused_a_little_ahead_is_clock_skew() -> None:
    ahead = parse_case(case(at="2024-05-01T09:32:00+08:00"), NOW)  # two minutes ahead of this clock
    assert ahead.at_ts == NOW + 120
    with pytest.raises(InvalidMessage, match="in the future"):
        parse_case(case(at="2099-01-01T00:00:00+08:00"), NOW)
    with pytest.raises(InvalidMessage, match="in the future"):
        parse_case(case(at="2024-05-01T09:30:00+07:00"), NOW)  # an hour ahead: a wrong offset
    assert MAX_FUTURE_S <= 600


@pytest.mark.parametrize("sneaky", SNEAKY)
def test_the_pages_acknowledgement_refuses_them_too(tmp_path: Path, sneaky: str) -> None:
    with serve(tmp_path) as served:
        event_id = served.alerts.start("gate", "crowd", 120)[1].event_id
        with httpx.Client(base_url=served.url, timeout=PATIENCE_S,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for body in ({"by": f"张{sneaky}三"}, {"by": "张三", "case_id": f"GD{sneaky}1"},
                         {"by": "张三", "note": f"ok{sneaky}ok"}):
                answer = client.post(f"/api/events/{event_id}/ack", json=body)
                assert answer.status_code == 422, (body, answer.text)
            assert client.post(f"/api/events/{event_id}/ack", json={"by": "张三", "case_id": "GD-1",
                                                                     "note": "两行\n备注"}).status_code == 200
            assert client.post(f"/api/events/{uuid.uuid4()}/ack", json={"by": "x"}).status_code == 404
