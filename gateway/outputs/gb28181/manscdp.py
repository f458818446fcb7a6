"""MANSCDP, the XML that GB/T 28181 carries in SIP MESSAGE bodies. Pure.

Building: keepalives, alarms, the answers to the platform's queries (Catalog, DeviceInfo,
DeviceStatus, ConfigDownload, RecordInfo, PresetQuery, DeviceControl) and the catalogue NOTIFY
of a subscription, as the standard (GB/T 28181-2016 Appendix A) writes them:
`<?xml version="1.0" encoding="GB2312"?>` and the
body bytes in GB2312, which every platform decodes. A character outside GB2312 (a rare
character in a place name, say 堃) is written as an XML character reference (`&#22531;`), so
the bytes stay valid GB2312 and any XML parser gets the exact character back; switching the
whole body to GB18030 would garble it on the many platforms that decode with a fixed GB2312
setting. Text is XML-escaped, and characters XML cannot carry at all (control characters) are
dropped.

Parsing: the platform's requests. The body is decoded by its declared encoding (GB2312 and GBK
read as GB18030, their superset; UTF-8 otherwise), and a document with a DTD is refused (no
entity tricks); a body that is not a MANSCDP document raises `ManscdpError`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from gateway.status import RecordClip

CONTENT_TYPE = "Application/MANSCDP+xml"
ENCODING = "GB2312"
UDP_BODY_LIMIT = 1000
"""Catalog answers are split so one MESSAGE stays well under 1300 bytes (RFC 3261 18.1.1)."""

_DECLARATION = re.compile(rb'^\s*<\?xml[^>]*?encoding\s*=\s*["\']([A-Za-z0-9_.-]+)["\'][^>]*\?>')
_TEXT_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "cp936", "euc-cn", "x-gbk"}


class ManscdpError(ValueError):
    """A MESSAGE body that is not a MANSCDP document (reason fit for one log line)."""


# --------------------------------------------------------------------------- building


def _text(value: object) -> str:
    return escape(_NOT_XML_CHAR.sub("", str(value)))


def _elements(fields: Iterable[tuple[str, object | None]]) -> list[str]:
    return [f"<{name}>{_text(value)}</{name}>" for name, value in fields if value is not None]


def document(root: str, cmd_type: str, sn: int, device_id: str, lines: Sequence[str] = ()) -> bytes:
    """A MANSCDP document: root element, CmdType, SN, DeviceID, then `lines` (already XML)."""
    parts = [f'<?xml version="1.0" encoding="{ENCODING}"?>', f"<{root}>",
             *_elements([("CmdType", cmd_type), ("SN", sn), ("DeviceID", device_id)]), *lines, f"</{root}>"]
    return ("\r\n".join(parts) + "\r\n").encode("gb2312", errors="xmlcharrefreplace")


def keepalive(device_id: str, sn: int) -> bytes:
    return document("Notify", "Keepalive", sn, device_id, _elements([("Status", "OK")]))


def _coordinate(value: float | None) -> str | None:
    return None if value is None else f"{value:.6f}"


@dataclass(frozen=True)
class Alarm:
    """One alarm notification, already in GB/T 28181 terms."""

    device_id: str
    """The channel the alarm is raised on (or the gateway's device ID)."""
    priority: int
    method: int
    alarm_type: int | None
    time: str
    """Local time, 'YYYY-MM-DDTHH:MM:SS' (no offset, as the standard writes it)."""
    description: str
    longitude: float | None = None
    latitude: float | None = None


def alarm(notice: Alarm, sn: int) -> bytes:
    """The Alarm Notify. AlarmType goes in <Info>, where the standard and platforms look for it;
    no <AlarmTypeParam>, whose own AlarmDescription some platforms read instead of ours."""
    lines = _elements([
        ("AlarmPriority", notice.priority),
        ("AlarmMethod", notice.method),
        ("AlarmTime", notice.time),
        ("AlarmDescription", notice.description),
        ("Longitude", _coordinate(notice.longitude)),
        ("Latitude", _coordinate(notice.latitude)),
    ])
    if notice.alarm_type is not None:
        lines += ["<Info>", *_elements([("AlarmType", notice.alarm_type)]), "</Info>"]
    return document("Notify", "Alarm", sn, notice.device_id, lines)


@dataclass(frozen=True)
class Channel:
    """A camera, a sensor (alarm input) or the gateway's alarm channel as a catalogue item.
    camera_id: the camera behind the channel (PTZ, recordings), None for alarm inputs."""

    channel_id: str
    name: str
    manufacturer: str
    model: str
    parent_id: str
    online: bool
    address: str = ""
    longitude: float | None = None
    latitude: float | None = None
    camera_id: str | None = None

    def item(self, event: str | None = None) -> str:
        fields: list[tuple[str, object | None]] = [
            ("DeviceID", self.channel_id), ("Name", self.name), ("Manufacturer", self.manufacturer),
            ("Model", self.model), ("Owner", "0"), ("CivilCode", self.channel_id[:6]),
            ("Address", self.address or self.name), ("Parental", 0), ("ParentID", self.parent_id),
            ("SafetyWay", 0), ("RegisterWay", 1), ("Secrecy", 0), ("Status", "ON" if self.online else "OFF"),
            ("Longitude", _coordinate(self.longitude)), ("Latitude", _coordinate(self.latitude)),
            ("Event", event),
        ]
        return "\r\n".join(["<Item>", *_elements(fields), "</Item>"])


def catalog_responses(device_id: str, sn: int, channels: Sequence[Channel],
                      limit: int = UDP_BODY_LIMIT, *, root: str = "Response",
                      events: Sequence[str] | None = None) -> list[bytes]:
    """The Catalog answer, split into bodies of at most about `limit` bytes (at least one item
    each). Every part carries the query's SN and SumNum = all channels; DeviceList Num = this
    part's items, which is how platforms put the parts back together. root "Notify" with
    `events` (ADD, DEL, UPDATE, ON, OFF per channel): a subscription's catalogue NOTIFY."""
    items = [channel.item(events[index] if events else None) for index, channel in enumerate(channels)]
    return _split(items, limit, lambda part: document(root, "Catalog", sn, device_id, [
        *_elements([("SumNum", len(items))]), f'<DeviceList Num="{len(part)}">', *part, "</DeviceList>"]))


def _split(items: Sequence[str], limit: int, build: Callable[[Sequence[str]], bytes]) -> list[bytes]:
    """`build` over parts of `items`, each part as large as fits in `limit` bytes (at least one)."""
    if not items:
        return [build([])]
    parts: list[list[str]] = [[]]
    for item in items:
        if parts[-1] and len(build(parts[-1] + [item])) > limit:
            parts.append([item])
        else:
            parts[-1].append(item)
    return [build(part) for part in parts]


def device_info_response(device_id: str, sn: int, *, name: str, manufacturer: str, model: str,
                         firmware: str, channels: int) -> bytes:
    return document("Response", "DeviceInfo", sn, device_id, _elements([
        ("Result", "OK"), ("DeviceName", name), ("Manufacturer", manufacturer), ("Model", model),
        ("Firmware", firmware), ("Channel", channels),
    ]))


def device_status_response(device_id: str, sn: int, device_time: str, *, recording: bool = False,
                           alarm_inputs: Sequence[tuple[str, bool]] = ()) -> bytes:
    """DeviceStatus (A.2.6.4): Record ON while a clip is written; Alarmstatus lists the alarm
    channels (DutyStatus ALARM while an alarm is raised on it, else ONDUTY)."""
    lines = _elements([
        ("Result", "OK"), ("Online", "ONLINE"), ("Status", "OK"), ("Encode", "ON"),
        ("Record", "ON" if recording else "OFF"), ("DeviceTime", device_time),
    ]) + [f'<Alarmstatus Num="{len(alarm_inputs)}">']
    for channel_id, alarming in alarm_inputs:
        lines += ["<Item>", *_elements([("DeviceID", channel_id), ("DutyStatus", "ALARM" if alarming else "ONDUTY")]),
                  "</Item>"]
    return document("Response", "DeviceStatus", sn, device_id, lines + ["</Alarmstatus>"])


def config_download_response(device_id: str, sn: int, *, name: str, expiration: int, heartbeat_interval: int,
                             heartbeat_count: int) -> bytes:
    """ConfigDownload BasicParam (A.2.6.7): what platforms time the device's keepalives by."""
    return document("Response", "ConfigDownload", sn, device_id, [
        *_elements([("Result", "OK")]), "<BasicParam>",
        *_elements([("Name", name), ("Expiration", expiration), ("HeartBeatInterval", heartbeat_interval),
                    ("HeartBeatCount", heartbeat_count), ("PositionCapability", 0)]),
        "</BasicParam>"])


def record_info_responses(channel_id: str, sn: int, name: str, records: Sequence[RecordClip],
                          limit: int = UDP_BODY_LIMIT) -> list[bytes]:
    """RecordInfo (A.2.6.10): SumNum = all records, split like the catalogue (RecordList Num
    = this part's items); no records: one answer with SumNum 0, which is what ends the
    platform's wait."""
    items = ["\r\n".join(["<Item>", *_elements([
        ("DeviceID", channel_id), ("Name", record.name or name), ("FilePath", record.path or None),
        ("Address", ""), ("StartTime", record.start), ("EndTime", record.end), ("Secrecy", 0),
        ("Type", record.kind), ("FileSize", record.size_bytes)]), "</Item>"]) for record in records]
    return _split(items, limit, lambda part: document("Response", "RecordInfo", sn, channel_id, [
        *_elements([("Name", name), ("SumNum", len(items))]), f'<RecordList Num="{len(part)}">', *part,
        "</RecordList>"]))


def preset_query_response(channel_id: str, sn: int, presets: Sequence[tuple[int, str]]) -> bytes:
    """PresetQuery (A.2.6.11): (number, name) of each preset the platform can call by number."""
    lines = [f'<PresetList Num="{len(presets)}">']
    for number, name in presets:
        lines += ["<Item>", *_elements([("PresetID", number), ("PresetName", name)]), "</Item>"]
    return document("Response", "PresetQuery", sn, channel_id, lines + ["</PresetList>"])


def result_response(cmd_type: str, device_id: str, sn: int, ok: bool) -> bytes:
    """A Response that only says Result OK or ERROR (DeviceControl; a query refused)."""
    return document("Response", cmd_type, sn, device_id, _elements([("Result", "OK" if ok else "ERROR")]))


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Command:
    """A parsed MANSCDP document: the root (Query, Control, Notify, Response) and its fields."""

    root: str
    cmd_type: str
    sn: int
    device_id: str
    fields: dict[str, str]


def parse(body: bytes) -> Command:
    """A MESSAGE body -> Command; raises ManscdpError."""
    text = _decode(body)
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ManscdpError("document has a DTD (MANSCDP never does): refused")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise ManscdpError(f"not well-formed XML: {error}") from None
    fields = {child.tag: (child.text or "").strip() for child in root}
    cmd_type, sn, device_id = fields.get("CmdType", ""), fields.get("SN", ""), fields.get("DeviceID", "")
    if not cmd_type:
        raise ManscdpError(f"<{root.tag}> without CmdType")
    if not sn.isdigit() or len(sn) > 10:
        raise ManscdpError(f"{root.tag} {cmd_type}: SN {sn!r} is not a number")
    return Command(root.tag, cmd_type, int(sn), device_id, fields)


def _decode(body: bytes) -> str:
    declared = _DECLARATION.match(body)
    encoding = declared.group(1).decode("ascii").lower() if declared else "utf-8"
    codec = "gb18030" if encoding in _GB_FAMILY else "utf-8"
    if encoding not in _GB_FAMILY and encoding not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise ManscdpError(f"unsupported encoding {encoding!r} (GB2312, GBK, GB18030 or UTF-8)")
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as error:
        raise ManscdpError(f"body is not valid {encoding.upper()}: {error.reason} at byte {error.start}") from None
    return _TEXT_DECLARATION.sub("", text.lstrip("\ufeff"), count=1)
