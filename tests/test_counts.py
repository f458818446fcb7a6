"""Live counts as plain data: the retained MQTT message follows its JSON Schema (gw.counts/1),
the throttle sends a change at once, holds the next one back for the interval and never sends
what did not change, and the API shows the same counts. The live path (a real gateway, broker
and HTTP) is in test_counting_live.py.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.api.schemas import counts_out
from gateway.events.counts import CameraCounts, CountsThrottle, ZoneCount, counts_payload
from gateway.events import validate_counts
from gateway.outputs.mqtt.presence import RetainedStates
from gateway.outputs.mqtt.topics import Topics

AT = datetime(2026, 5, 1, 10, 0, 0, 500000, tzinfo=ZoneInfo("Asia/Shanghai"))


def counts(count: int = 33, left: int = 20, source: str = "model", stale: bool = False) -> CameraCounts:
    return CameraCounts(count=count, source=source, detected=14, estimated=33.4, mode="auto", at=AT,
                        zones=[ZoneCount("left", "左侧通道", left, source)], stale=stale)


def test_the_counts_message_follows_its_schema() -> None:
    payload = counts_payload("gw-1", "mall", counts())
    validate_counts(payload)
    assert payload == {
        "schema": "gw.counts/1", "gateway_id": "gw-1", "camera_id": "mall", "at": "2026-05-01T10:00:00.500+08:00",
        "count": 33, "source": "model", "detected": 14, "estimated": 33.4, "mode": "auto", "stale": False,
        "zones": {"left": {"name": "左侧通道", "count": 20, "source": "model"}}}
    validate_counts(counts_payload("gw-1", "mall", CameraCounts(2, "detector", 2, None, "detector", AT)))
    with pytest.raises(ValueError, match="source"):
        validate_counts(payload | {"source": "guess"})
    with pytest.raises(ValueError, match="count"):
        validate_counts(payload | {"count": -1})


def test_the_api_shows_the_same_counts() -> None:
    shown = counts_out(counts()).model_dump()
    assert shown["count"] == 33 and shown["source"] == "model" and shown["at"] == "2026-05-01T10:00:00.500+08:00"
    assert shown["zones"] == {"left": {"name": "左侧通道", "count": 20, "source": "model"}}


def test_a_change_goes_out_at_once_then_at_most_once_per_interval() -> None:
    throttle = CountsThrottle(min_interval_s=5.0)
    first = counts_payload("gw-1", "mall", counts(33))
    assert throttle.due("mall", first, 100.0)
    later = {**first, "at": "2026-05-01T10:00:09.000+08:00"}
    assert not throttle.due("mall", later, 110.0)  # the same counts, only later: nothing new
    assert throttle.due("mall", counts_payload("gw-1", "mall", counts(35)), 111.0)
    assert not throttle.due("mall", counts_payload("gw-1", "mall", counts(36)), 113.0)  # too soon
    assert throttle.due("mall", counts_payload("gw-1", "mall", counts(36)), 116.0)  # offered again: out
    assert throttle.due("gate", first, 116.5)  # every camera on its own
    assert throttle.due("mall", counts_payload("gw-1", "mall", counts(36, left=21)), 121.0)  # a zone changed
    assert throttle.due("mall", counts_payload("gw-1", "mall", counts(36, left=21, stale=True)), 126.0)


def test_retained_counts_are_resent_after_a_reconnect() -> None:
    retained = RetainedStates(counts_every_s=5.0)
    topic = Topics("gw", "gw-1").camera_counts("mall")
    assert topic == "gw/gw-1/cameras/mall/counts"
    payload = counts_payload("gw-1", "mall", counts())
    assert retained.offer_counts(topic, payload, 0.0)
    assert retained.unsent() == [(topic, payload)]
    retained.sent(topic, payload)
    assert retained.unsent() == [] and not retained.offer_counts(topic, payload, 10.0)
    retained.resend_all()
    assert retained.unsent() == [(topic, payload)]
    with pytest.raises(ValueError, match="not usable in an MQTT topic"):
        Topics("gw", "gw-1").camera_counts("a/b")
