"""MANSCDP bodies (GB2312, escaping, catalogue splitting), parsing the platform's queries, and
the alert -> alarm mapping. Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.events.types import ALERT_TYPE_NAMES
from gateway.outputs.gb28181 import manscdp
from gateway.outputs.gb28181.alarm_types import (
    ALARM_CODES,
    FALLBACK,
    alarm_code,
    alarm_notice,
    alarm_priority,
    local_alarm_time,
)
from gateway.outputs.gb28181.manscdp import Alarm, Channel, ManscdpError

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEVICE = "34020000001180000001"


def parse_gb2312(body: bytes) -> ET.Element:
    """As a platform reads it: decode by the declared GB2312, then parse."""
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>\r\n')
    text = body.decode("gb2312")  # strict: every byte is GB2312
    return ET.fromstring(text.split("?>", 1)[1])


def test_alarm_body_is_gb2312_escaped_and_in_the_standard_layout():
    notice = Alarm(device_id="34020000001320000001", priority=2, method=5, alarm_type=10,
                   time="2026-11-22T04:26:29", description="人员聚集：东门<广场> & 堃 12人\x07",
                   longitude=118.4, latitude=31.3)
    body = manscdp.alarm(notice, sn=7)
    assert "人员聚集".encode("gb2312") in body and "人员聚集".encode() not in body
    assert b"&lt;" in body and b"&amp;" in body and b"\x07" not in body
    assert b"&#22531;" in body  # 堃 is not in GB2312: a character reference keeps the bytes GB2312
    root = parse_gb2312(body)
    assert root.tag == "Notify"
    assert [child.tag for child in root] == ["CmdType", "SN", "DeviceID", "AlarmPriority", "AlarmMethod",
                                             "AlarmTime", "AlarmDescription", "Longitude", "Latitude", "Info"]
    assert root.findtext("CmdType") == "Alarm" and root.findtext("SN") == "7"
    assert root.findtext("DeviceID") == "34020000001320000001"
    assert root.findtext("AlarmDescription") == "人员聚集：东门<广场> & 堃 12人"
    assert root.findtext("Info/AlarmType") == "10" and root.findtext("AlarmTime") == "2026-11-22T04:26:29"
    assert root.findtext("Longitude") == "118.400000"


def test_alarm_without_type_or_position_leaves_them_out():
    body = manscdp.alarm(Alarm(DEVICE, 1, 2, None, "2026-01-01T00:00:00", "传感器告警：烟感"), sn=1)
    root = parse_gb2312(body)
    assert root.find("Info") is None and root.find("Longitude") is None
    assert root.findtext("AlarmMethod") == "2"


def test_keepalive():
    root = parse_gb2312(manscdp.keepalive(DEVICE, 12))
    assert (root.tag, root.findtext("CmdType"), root.findtext("SN"), root.findtext("DeviceID"),
            root.findtext("Status")) == ("Notify", "Keepalive", "12", DEVICE, "OK")


def channel(number: int, name: str = "东门广场", online: bool = True) -> Channel:
    return Channel(channel_id=f"3402000000132{number:07d}", name=name, manufacturer="Edge Gateway",
                   model="Crowd Analytics", parent_id=DEVICE, online=online, address="东城路1号",
                   longitude=118.38, latitude=31.33)


def test_catalog_is_split_into_parts_that_add_up():
    channels = [channel(n, online=n % 2 == 0) for n in range(1, 8)]
    parts = manscdp.catalog_responses(DEVICE, 17430, channels)
    assert len(parts) > 1 and all(len(part) <= manscdp.UDP_BODY_LIMIT for part in parts)
    items = []
    for part in parts:
        root = parse_gb2312(part)
        assert (root.tag, root.findtext("CmdType"), root.findtext("SN"), root.findtext("SumNum")) == \
            ("Response", "Catalog", "17430", "7")
        listed = root.find("DeviceList")
        assert listed is not None and int(listed.get("Num", "-1")) == len(listed)
        items += list(listed)
    assert [item.findtext("DeviceID") for item in items] == [c.channel_id for c in channels]
    first = items[0]
    assert first.findtext("Name") == "东门广场" and first.findtext("ParentID") == DEVICE
    assert first.findtext("Status") == "OFF" and items[1].findtext("Status") == "ON"
    assert first.findtext("CivilCode") == "340200" and first.findtext("Latitude") == "31.330000"


def test_catalog_one_big_item_still_goes_and_no_channels_is_an_empty_list():
    [part] = manscdp.catalog_responses(DEVICE, 1, [channel(1, name="长" * 600)])
    assert parse_gb2312(part).findtext("DeviceList/Item/Name") == "长" * 600
    [empty] = manscdp.catalog_responses(DEVICE, 2, [])
    root = parse_gb2312(empty)
    assert root.findtext("SumNum") == "0" and root.find("DeviceList").get("Num") == "0"


def test_device_info_and_status_answers():
    info = parse_gb2312(manscdp.device_info_response(DEVICE, 3, name="东城网关", manufacturer="M", model="X",
                                                     firmware="0.1.0", channels=2))
    assert (info.findtext("CmdType"), info.findtext("Result"), info.findtext("DeviceName"),
            info.findtext("Channel")) == ("DeviceInfo", "OK", "东城网关", "2")
    status = parse_gb2312(manscdp.device_status_response(DEVICE, 4, "2026-11-22T04:26:29"))
    assert (status.findtext("Online"), status.findtext("Status")) == ("ONLINE", "OK")


def test_parse_queries_in_gb2312_gbk_and_utf8():
    query = '<?xml version="1.0" encoding="{}"?>\r\n<Query><CmdType>Catalog</CmdType><SN>17430</SN>' \
            '<DeviceID>34020000001180000001</DeviceID><Name>东门</Name></Query>'
    for encoding in ("GB2312", "GBK", "gb18030", "UTF-8"):
        command = manscdp.parse(query.format(encoding).encode(encoding))
        assert (command.root, command.cmd_type, command.sn, command.device_id) == ("Query", "Catalog", 17430, DEVICE)
        assert command.fields["Name"] == "东门"
    assert manscdp.parse(b"<Query><CmdType>DeviceInfo</CmdType><SN>1</SN></Query>").cmd_type == "DeviceInfo"


@pytest.mark.parametrize("body, reason", [
    (b"", "not well-formed"),
    (b"<Query><CmdType>Catalog</CmdType>", "not well-formed"),
    (b"<Query><SN>1</SN></Query>", "without CmdType"),
    (b"<Query><CmdType>Catalog</CmdType><SN>x1</SN></Query>", "SN 'x1'"),
    (b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "aaaa">]><Query>&a;</Query>', "DTD"),
    (b'<?xml version="1.0" encoding="Shift_JIS"?><Query/>', "unsupported encoding"),
    (b'<?xml version="1.0" encoding="UTF-8"?><Query>\xff\xfe</Query>', "not valid UTF-8"),
])
def test_bad_bodies_raise_manscdp_error(body: bytes, reason: str):
    with pytest.raises(ManscdpError, match=reason):
        manscdp.parse(body)


# --------------------------------------------------------------------------- alarm codes


def test_alarm_codes_name_real_alert_types_and_the_rest_fall_back_to_a_device_alarm():
    # A new alert type is one vocabulary entry: the platform still hears of it (as a device
    # alarm) before anyone decides on a more specific code here.
    assert set(ALARM_CODES) <= set(ALERT_TYPE_NAMES)
    assert alarm_code("patrol_fault") == FALLBACK
    assert (alarm_code("crowd").method, alarm_code("crowd").type) == (5, 10)
    assert alarm_code("gathering").type == 10 and alarm_code("growth").type == 9
    assert alarm_code("loitering").type == 8 and alarm_code("intrusion").type == 6
    assert alarm_code("camera_tamper") == ALARM_CODES["camera_tamper"] and alarm_code("camera_tamper").type == 11
    assert (alarm_code("camera_offline").method, alarm_code("camera_offline").type) == (2, 1)
    assert (alarm_code("sensor").method, alarm_code("sensor").type) == (2, None)
    assert alarm_code("something-new") == FALLBACK


def test_priority_runs_opposite_to_severity():
    assert [alarm_priority(severity) for severity in (1, 2, 3, 4)] == [4, 3, 2, 1]
    assert alarm_priority(9) == 1 and alarm_priority(0) == 4


def test_alarm_time_is_local_wall_time_without_offset():
    fallback = datetime(2026, 1, 1, tzinfo=UTC)
    assert local_alarm_time("2026-11-21T20:26:29.095+00:00", SHANGHAI, fallback) == "2026-11-22T04:26:29"
    assert local_alarm_time("2026-11-22T04:26:29.095+08:00", SHANGHAI, fallback) == "2026-11-22T04:26:29"
    assert local_alarm_time("2026-11-21T20:26:29Z", ZoneInfo("Asia/Urumqi"), fallback) == "2026-11-22T02:26:29"
    assert local_alarm_time("garbage", SHANGHAI, fallback) == "2026-01-01T08:00:00"
    assert local_alarm_time(None, SHANGHAI, fallback) == "2026-01-01T08:00:00"


def test_alarm_notice_from_a_start_payload():
    payload = {"state": "start", "type": "growth", "severity": 4, "camera_id": "cam1",
               "started_at": "2026-11-22T04:26:29.095+08:00", "title_zh": "人数激增：演示广场 6人",
               "location": {"address": "x", "lat": 31.3, "lon": None}}
    notice = alarm_notice(payload, channel_id="34020000001320000001", timezone=SHANGHAI,
                          now=datetime(2026, 1, 1, tzinfo=SHANGHAI))
    assert notice == Alarm(device_id="34020000001320000001", priority=1, method=5, alarm_type=9,
                           time="2026-11-22T04:26:29", description="人数激增：演示广场 6人",
                           longitude=None, latitude=31.3)
