"""Alert contract: the shipped JSON Schema, payloads, titles, lifecycle policy, evidence JPEGs."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from gateway.events import (
    TITLES_ZH,
    AlertSource,
    AlertSubject,
    Evidence,
    OpenEvent,
    Reading,
    UpdatePolicy,
    alert_errors,
    alert_schema,
    take_snapshot,
    title_zh,
    validate_alert,
)
from gateway.events.snapshot import encode_bounded, render
from gateway.privacy import MASK_COLOUR
from gateway.events.types import ALERT_TYPE_NAMES, COUNTING_TYPES

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2024, 5, 1, 20, 15, 30, tzinfo=SHANGHAI)
SOURCE = AlertSource("gw-test", "cam1", "东门", "G-07", "东门广场", 30.1, 120.2, (1920, 1080))
SUBJECT = AlertSubject("gathering", 3, "东门广场", "plaza", "东门广场", "gathering-plaza", {"type": "gathering"})
ALL_TYPES = list(ALERT_TYPE_NAMES)


def members(n: int) -> list[dict]:
    return [{"track_id": i + 1, "box": [10.0 * i, 20.0, 10.0 * i + 40, 120.0], "score": 0.9} for i in range(n)]


def tiny_snapshot():
    return take_snapshot(np.zeros((120, 160, 3), np.uint8), evidence(np.zeros((0, 4))), NOW)


def evidence(boxes, **extra) -> Evidence:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Evidence(boxes, np.arange(1, len(boxes) + 1), np.ones(len(boxes), bool), **extra)


def started(policy: UpdatePolicy | None = None) -> tuple[OpenEvent, dict]:
    event = OpenEvent(SOURCE, SUBJECT, policy or UpdatePolicy(min_change=2, every_s=30), NOW - timedelta(seconds=5))
    return event, event.start(Reading(4, members(4)), 0.0, NOW, tiny_snapshot).payload


# --------------------------------------------------------------------------- the schema file


def test_schema_is_draft_2020_12_and_closed_at_the_top():
    schema = alert_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["schema"] == {"const": "gw.alert/1"}
    assert schema["properties"]["type"]["enum"] == ALL_TYPES
    required = set(schema["required"])
    design_fields = {
        "event_id", "seq", "state", "type", "severity", "gateway_id", "camera_id", "camera_name", "grid_id",
        "location", "zone_id", "started_at", "updated_at", "ended_at", "count", "peak_count", "density_per_m2",
        "members", "snapshot", "title_zh", "rule",
    }
    assert design_fields <= required


def test_schema_ships_inside_the_package():
    from importlib import resources

    assert resources.files("gateway.events").joinpath("alert.schema.json").is_file()


# --------------------------------------------------------------------------- payloads


def test_start_payload_is_complete_and_valid():
    _, payload = started()
    validate_alert(payload)
    assert uuid.UUID(payload["event_id"]).version == 4
    assert payload["seq"] == 1 and payload["state"] == "start"
    assert payload["started_at"] == "2024-05-01T20:15:25.000+08:00"
    assert payload["updated_at"] == "2024-05-01T20:15:30.000+08:00"
    assert payload["location"] == {"address": "东门广场", "lat": 30.1, "lon": 120.2}
    assert payload["snapshot"]["mime"] == "image/jpeg" and payload["snapshot"]["taken_at"] == payload["updated_at"]
    assert json.loads(json.dumps(payload, ensure_ascii=False)) == payload


@pytest.mark.parametrize(
    "event_type, expected",
    [
        ("gathering", "人员聚集：东门广场 12人"),
        ("crowd", "人数超限：东门广场 12人"),
        ("growth", "人数激增：东门广场 12人"),
        ("loitering", "人员徘徊：东门广场 12人"),
        ("intrusion", "区域入侵：东门广场 12人"),
    ],
)
def test_titles(event_type: str, expected: str):
    assert title_zh(event_type, "东门广场", 12, "start") == expected
    assert title_zh(event_type, "东门广场", 12, "end") == expected + "（已结束）"


def test_every_type_has_a_title():
    assert set(TITLES_ZH) == set(ALL_TYPES)


def test_the_schema_lists_exactly_the_vocabulary_and_its_counting_types():
    """One vocabulary (gateway.events.types): the shipped JSON Schema must agree with it."""
    schema = alert_schema()
    assert schema["properties"]["type"]["enum"] == list(ALERT_TYPE_NAMES)
    counting = next(rule["if"]["properties"]["type"]["enum"] for rule in schema["allOf"]
                    if "type" in rule.get("if", {}).get("properties", {}))
    assert counting == list(COUNTING_TYPES)


def test_only_counting_alerts_carry_a_number_of_people_in_their_title():
    assert title_zh("camera_offline", "SimCam", 0, "end") == "摄像机离线：SimCam（已结束）"
    assert title_zh("crowd", "东门广场", 0, "end") == "人数超限：东门广场 0人（已结束）"


def test_a_sensor_alert_fits_the_same_schema():
    """Later alert types (no camera, no count) are valid with nulls and a details object."""
    source = AlertSource("gw-test", None, "", "G-07", "配电房")
    subject = AlertSubject("sensor", 4, "配电房")
    event = OpenEvent(source, subject, UpdatePolicy(), NOW)
    payload = event.start(Reading(None), 0.0, NOW, lambda: None).payload
    payload["details"] = {"sensor_id": "smoke-3", "value": 1}
    validate_alert(payload)
    assert payload["title_zh"] == "传感器告警：配电房"


@pytest.mark.parametrize(
    "mutate, complaint",
    [
        (lambda p: p.update(extra=1), "Additional properties"),
        (lambda p: p.pop("title_zh"), "'title_zh' is a required property"),
        (lambda p: p.update(state="open"), "'open' is not one of"),
        (lambda p: p.update(severity=5), "5 is greater than the maximum"),
        (lambda p: p.update(ended_at=p["updated_at"]), "ended_at"),
        (lambda p: p.update(updated_at="2024-05-01 20:15:30"), "updated_at"),
        (lambda p: p.update(event_id="42"), "event_id"),
        (lambda p: p.update(count=None), "count"),
        (lambda p: p["members"][0].update(box=[1, 2, 3]), "members/0/box"),
    ],
)
def test_schema_rejects_broken_payloads(mutate, complaint: str):
    _, payload = started()
    broken = copy.deepcopy(payload)
    mutate(broken)
    errors = alert_errors(broken)
    assert errors and any(complaint in error for error in errors), errors
    with pytest.raises(ValueError, match="gw.alert/1"):
        validate_alert(broken)


# --------------------------------------------------------------------------- lifecycle


def update_if_due(event: OpenEvent, reading: Reading, t: float, snapshot):
    """What the analytics do each frame an event stays open."""
    return event.update(reading, t, NOW, snapshot) if event.observe(reading.count, t) else None


def test_updates_follow_the_policy_and_snapshots_only_when_the_peak_rises():
    event, start = started(UpdatePolicy(min_change=2, every_s=30))
    never = lambda: pytest.fail("snapshot rendered although the message carries none")  # noqa: E731
    assert update_if_due(event, Reading(5, members(5)), 1.0, never) is None  # moved by 1 only
    grew = update_if_due(event, Reading(6, members(6)), 2.0, tiny_snapshot)
    assert grew and grew.seq == 2 and grew.payload["snapshot"] and grew.snapshot_jpeg
    shrank = update_if_due(event, Reading(4, members(4)), 3.0, never)
    assert shrank and shrank.seq == 3 and shrank.payload["snapshot"] is None and shrank.payload["peak_count"] == 6
    assert update_if_due(event, Reading(4, members(4)), 32.9, never) is None
    heartbeat = update_if_due(event, Reading(4, members(4)), 33.0, never)
    assert heartbeat and heartbeat.seq == 4
    end = event.end(Reading(0), 40.0, NOW + timedelta(seconds=40), NOW + timedelta(seconds=38))
    assert end.seq == 5 and end.state == "end" and end.payload["ended_at"] == "2024-05-01T20:16:08.000+08:00"
    assert end.payload["title_zh"] == "人员聚集：东门广场 6人（已结束）"
    for message in (grew, shrank, heartbeat, end):
        validate_alert(message.payload)
        assert message.event_id == start["event_id"]


def test_the_peak_counts_readings_between_messages():
    event, _ = started(UpdatePolicy(min_change=3, every_s=30))
    assert update_if_due(event, Reading(5), 1.0, tiny_snapshot) is None
    update = update_if_due(event, Reading(7), 2.0, tiny_snapshot)
    assert update.payload["peak_count"] == 7 and update.payload["snapshot"] is not None


# --------------------------------------------------------------------------- evidence pictures


def test_snapshot_is_bounded_in_width_and_bytes():
    noise = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    jpeg, width, height = encode_bounded(noise)
    assert width <= 1280 and len(jpeg) <= 200_000
    assert width / height == pytest.approx(1920 / 1080, rel=0.01)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (height, width, 3)


def test_small_frames_keep_their_size():
    _, width, height = encode_bounded(np.zeros((576, 768, 3), np.uint8))
    assert (width, height) == (768, 576)


def test_snapshot_fills_masks_and_draws_zone_boxes_hull_and_caption():
    frame = np.full((400, 600, 3), 200, np.uint8)
    mask = np.array([[0, 300], [100, 300], [100, 400], [0, 400]], float)
    zone = np.array([[300, 50], [590, 50], [590, 390], [300, 390]], float)
    boxes = [[350, 150, 390, 250], [420, 160, 460, 260]]
    image = render(frame, evidence(boxes, zones=(zone,), masks=[mask], hull=True, caption=("GATHERING", "count 2")))
    assert (image[320:390, 10:90] == MASK_COLOUR).all()
    assert (image[200, 300] != 200).any()  # zone outline
    assert (image[200, 350] != 200).any() and (image[200, 420] != 200).any()  # boxes
    assert (image[5:40, 5:60] != 200).any()  # caption band
    assert (frame == 200).all()  # the caller's frame is untouched


def test_snapshot_payload_carries_the_jpeg():
    snapshot = take_snapshot(np.zeros((1080, 1920, 3), np.uint8), evidence([[10, 10, 50, 110]]), NOW)
    payload = snapshot.to_payload()
    assert base64.b64decode(payload["data"]) == snapshot.jpeg
    assert (payload["width"], payload["height"]) == (1280, 720)
    assert snapshot.jpeg[:2] == b"\xff\xd8"
