"""The platform's queries, controls and subscriptions through the device state machine, with a
fake clock: ConfigDownload, RecordInfo, PresetQuery, DeviceControl (as `CameraJob`s and their
answers), DeviceStatus/DeviceInfo with real values, SUBSCRIBE/NOTIFY with expiry and refresh,
and the refusals' log lines limited. What the device sends is parsed back as the platform
would read it."""

from __future__ import annotations

import logging

import pytest

from gateway.api.metrics import GatewayMetrics
from gateway.outputs.gb28181 import manscdp
from gateway.outputs.gb28181.manscdp import Channel
from gateway.outputs.gb28181.ptzcmd import encode
from gateway.outputs.gb28181.sip import SipRequest, SipResponse
from gateway.status import PresetInfo, PtzCommand, RecordClip
from test_gb28181_device import DEVICE, PLATFORM, Harness, body_of

EAST, WEST, SMOKE, ALARMS = ("34020000001320000001", "34020000001320000002", "34020000001340000007",
                             "34020000001340000001")
CHANNELS = [
    Channel(EAST, "东门", "M", "X", DEVICE, True, camera_id="east"),
    Channel(WEST, "西门", "M", "X", DEVICE, False, camera_id="west"),
    Channel(SMOKE, "烟感", "M", "smoke sensor", DEVICE, True),
    Channel(ALARMS, "网关 告警", "M", "X", DEVICE, True),
]


def registered(**options: object) -> Harness:
    harness = Harness(channels=list(CHANNELS), device_options={"can_control": True, "has_records": True, **options})
    harness.register()
    harness.answer(harness.keepalive, 200)
    return harness


def query(root: str, cmd_type: str, target: str, sn: int = 7, **fields: str) -> bytes:
    extra = "".join(f"<{name}>{value}</{name}>" for name, value in fields.items())
    return (f'<?xml version="1.0" encoding="GB2312"?><{root}><CmdType>{cmd_type}</CmdType><SN>{sn}</SN>'
            f"<DeviceID>{target}</DeviceID>{extra}</{root}>").encode()


def ask(harness: Harness, body: bytes, branch: str = "z9hG4bKq") -> list[SipRequest]:
    """Send a platform MESSAGE; the 200 is checked, the MESSAGEs that follow returned."""
    [ok, *rest] = harness.platform_request(body, branch=branch)
    assert isinstance(ok, SipResponse) and ok.status == 200
    return rest


def test_config_download_basic_param_tells_the_platform_the_keepalive_timing():
    harness = registered()
    [answer] = ask(harness, query("Query", "ConfigDownload", DEVICE, ConfigType="BasicParam"))
    parsed = manscdp.parse(answer.body)
    assert (parsed.root, parsed.cmd_type, parsed.sn, parsed.fields["Result"]) == ("Response", "ConfigDownload", 7, "OK")
    assert b"<Name>\xcd\xf8\xb9\xd8</Name>" in answer.body  # 网关 in GB2312
    for field, value in (("Expiration", "3600"), ("HeartBeatInterval", "60"), ("HeartBeatCount", "3")):
        assert f"<{field}>{value}</{field}>".encode() in answer.body
    [refused] = ask(harness, query("Query", "ConfigDownload", DEVICE, ConfigType="VideoParamOpt"), "z9hG4bKv")
    assert manscdp.parse(refused.body).fields["Result"] == "ERROR"


def test_record_info_asks_the_clip_store_and_answers_its_clips_or_an_empty_list():
    harness = registered()
    assert ask(harness, query("Query", "RecordInfo", EAST, StartTime="2026-11-22T00:00:00",
                              EndTime="2026-11-22T23:59:59")) == []
    [job] = harness.jobs
    assert (job.kind, job.camera_id, job.start, job.end) == ("records", "east", "2026-11-22T00:00:00",
                                                             "2026-11-22T23:59:59")
    clips = [RecordClip("2026-11-22T04:26:20", "2026-11-22T04:26:50", "人员聚集", "/data/clips/1.mp4", 123456)]
    [answer] = harness.run(harness.device.job_done(job.job_id, clips, None, harness.now))
    parsed = manscdp.parse(answer.body)
    assert (parsed.cmd_type, parsed.device_id, parsed.fields["SumNum"]) == ("RecordInfo", EAST, "1")
    assert b"<StartTime>2026-11-22T04:26:20</StartTime>" in answer.body
    assert b"<FileSize>123456</FileSize>" in answer.body
    [empty] = ask(harness, query("Query", "RecordInfo", SMOKE, sn=8), "z9hG4bKs")  # an alarm input: no job
    assert manscdp.parse(empty.body).fields["SumNum"] == "0" and b'<RecordList Num="0">' in empty.body
    assert harness.run(harness.device.job_done(job.job_id, [], None, harness.now)) == []  # answered once only


def test_record_info_without_a_clip_store_is_an_empty_list_at_once():
    harness = registered(has_records=False)
    [answer] = ask(harness, query("Query", "RecordInfo", EAST))
    assert manscdp.parse(answer.body).fields["SumNum"] == "0" and harness.jobs == []


def test_preset_query_lists_the_presets_a_platform_can_call_by_number():
    harness = registered()
    assert ask(harness, query("Query", "PresetQuery", EAST)) == []
    [job] = harness.jobs
    presets = [PresetInfo("1", "Gate"), PresetInfo("PresetToken_7", "东门"), PresetInfo("home", "Home"),
               PresetInfo("3", "")]
    [answer] = harness.run(harness.device.job_done(job.job_id, presets, None, harness.now))
    assert b'<PresetList Num="3">' in answer.body
    assert b"<PresetID>1</PresetID>\r\n<PresetName>Gate</PresetName>" in answer.body
    assert b"<PresetID>3</PresetID>\r\n<PresetName>3</PresetName>" in answer.body
    assert "<PresetID>7</PresetID>\r\n<PresetName>东门</PresetName>".encode("gb2312") in answer.body
    assert ask(harness, query("Query", "PresetQuery", WEST, sn=9), "z9hG4bKw") == []
    [failing] = harness.jobs[1:]
    [empty] = harness.run(harness.device.job_done(failing.job_id, None, "camera west has no PTZ", harness.now))
    assert b'<PresetList Num="0">' in empty.body


def test_ptz_control_becomes_a_camera_job_and_only_a_refusal_is_answered(caplog):
    caplog.set_level(logging.INFO, logger="gateway.outputs.gb28181")
    harness = registered()
    assert ask(harness, query("Control", "DeviceControl", EAST, PTZCmd=encode(0x01, 0x80, 0))) == []
    assert ask(harness, query("Control", "DeviceControl", EAST, sn=8, PTZCmd=encode(0x82, 0, 3)), "z9hG4bK2") == []
    move, goto = harness.jobs
    assert (move.kind, move.camera_id, move.command) == ("ptz", "east", PtzCommand("move", pan=round(128 / 255, 4)))
    assert goto.command == PtzCommand("goto", preset="3")
    assert harness.run(harness.device.job_done(move.job_id, None, None, harness.now)) == []  # done: no Response
    why = "camera east: no PTZ preset '3'"
    [refused] = harness.run(harness.device.job_done(goto.job_id, None, why, harness.now))
    parsed = manscdp.parse(refused.body)
    assert (parsed.cmd_type, parsed.device_id, parsed.sn) == ("DeviceControl", EAST, 8)
    assert parsed.fields["Result"] == "ERROR"
    assert any("refused: camera east: no PTZ preset '3'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("target, fields, why", [
    (EAST, {"PTZCmd": "A50F01"}, "16 hex digits"),
    (EAST, {"PTZCmd": encode(0x03, 1, 1)}, "left and right at once"),
    (SMOKE, {"PTZCmd": encode(0x01, 1, 1)}, "alarm input, not a camera"),
    ("34020000001320000099", {"PTZCmd": encode(0x01, 1, 1)}, "no such channel"),
    (EAST, {"TeleBoot": "Boot"}, "only PTZCmd is carried out (asked: TeleBoot)"),
])
def test_malformed_or_impossible_controls_get_result_error_and_a_log_line(caplog, target, fields, why):
    harness = registered()
    [answer] = ask(harness, query("Control", "DeviceControl", target, **fields))
    assert manscdp.parse(answer.body).fields["Result"] == "ERROR" and harness.jobs == []
    assert any(why in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_without_camera_control_ptz_is_refused_and_presets_are_an_empty_list():
    harness = registered(can_control=False)
    [answer] = ask(harness, query("Control", "DeviceControl", EAST, PTZCmd=encode(0x01, 1, 1)))
    assert manscdp.parse(answer.body).fields["Result"] == "ERROR"
    [presets] = ask(harness, query("Query", "PresetQuery", EAST, sn=8), "z9hG4bKp")
    assert b'<PresetList Num="0">' in presets.body and harness.jobs == []


def test_device_status_and_info_report_real_alarm_record_and_channel_values():
    harness = registered(alarming=lambda: frozenset({SMOKE}), recording=lambda: True)
    [status] = ask(harness, query("Query", "DeviceStatus", DEVICE))
    assert b"<Record>ON</Record>" in status.body and b'<Alarmstatus Num="2">' in status.body
    assert f"<DeviceID>{SMOKE}</DeviceID>\r\n<DutyStatus>ALARM</DutyStatus>".encode() in status.body
    assert f"<DeviceID>{ALARMS}</DeviceID>\r\n<DutyStatus>ONDUTY</DutyStatus>".encode() in status.body
    [info] = ask(harness, query("Query", "DeviceInfo", DEVICE), "z9hG4bKi")
    assert manscdp.parse(info.body).fields["Channel"] == "4"


def subscribe(harness: Harness, kind: str, *, expires: int, call_id: str = "sub-1", tag: str = "s1",
              branch: str = "z9hG4bKsub") -> list:
    return harness.platform_request(query("Query", kind, DEVICE, sn=55), method="SUBSCRIBE", call_id=call_id,
                                    tag=tag, branch=branch, headers=(
                                        ("Event", "Catalog" if kind == "Catalog" else "presence"),
                                        ("Expires", str(expires)), ("Contact", f"<sip:{PLATFORM}@10.0.0.9:5060>")))


def answered_in_turn(harness: Harness, sent: list) -> list[SipRequest]:
    """Answer each NOTIFY 200 and collect the ones that follow it (one in flight at a time)."""
    taken = []
    pending = [m for m in sent if isinstance(m, SipRequest) and m.method == "NOTIFY"]
    while pending:
        notify = pending.pop(0)
        taken.append(notify)
        pending += [m for m in harness.answer(notify, 200) if m.method == "NOTIFY"]
    return taken


def notifies_at(harness: Harness, now: float) -> list[SipRequest]:
    """The NOTIFYs sent when the clock reaches `now`; the keepalives and refreshes meanwhile
    are answered 200."""
    sent = harness.at(now)
    for message in sent:
        if message.method != "NOTIFY":
            harness.answer(message, 200, "OK", ("Expires", "120"))
    return [message for message in sent if message.method == "NOTIFY"]


def test_catalog_subscription_notifies_the_catalogue_at_once_and_on_changes_until_it_runs_out():
    harness = registered()
    ok, *sent = subscribe(harness, "Catalog", expires=60)
    assert len(sent) == 1  # the next part only once this one is answered
    notifies = answered_in_turn(harness, sent)
    assert ok.status == 200 and ok.get("Expires") == "60" and b"<Result>OK</Result>" in ok.body
    assert ok.get("To").endswith(f";tag={harness.device.to_tag}") and ok.get("Contact")
    first = notifies[0]
    assert first.method == "NOTIFY" and first.call_id == "sub-1" and first.uri == f"sip:{PLATFORM}@10.0.0.9:5060"
    assert first.get("To").endswith(";tag=s1") and first.get("Event") == "Catalog"
    assert first.get("Subscription-State") == "active;expires=60"
    body = b"".join(n.body for n in notifies)
    assert body.count(b"<Event>ADD</Event>") == 4 and body_of(first).root == "Notify"
    assert notifies_at(harness, harness.now + 1) == []  # nothing changed: nothing sent
    harness.channels[1] = Channel(WEST, "西门", "M", "X", DEVICE, True, camera_id="west")  # west comes online
    [change] = notifies_at(harness, harness.now + 2)
    assert f"<DeviceID>{WEST}</DeviceID>".encode() in change.body and b"<Event>ON</Event>" in change.body
    assert b'<DeviceList Num="1">' in change.body
    harness.answer(change, 200)
    [refresh_ok] = subscribe(harness, "Catalog", expires=120, branch="z9hG4bKsub2")  # same dialog: a refresh
    assert refresh_ok.status == 200 and refresh_ok.get("Expires") == "120"
    assert notifies_at(harness, harness.now + 100) == [] and harness.device.health()["subscriptions"] == 1
    [final] = notifies_at(harness, harness.now + 21)
    assert final.get("Subscription-State") == "terminated;reason=timeout"
    assert harness.device.health()["subscriptions"] == 0


def test_alarm_subscription_gets_every_alarm_as_notify_too_until_unsubscribed():
    harness = registered()
    ok, *nothing = subscribe(harness, "Alarm", expires=3600)
    assert ok.status == 200 and nothing == []  # no alarm yet: nothing to notify
    notice = manscdp.Alarm(EAST, 2, 5, 10, "2026-11-22T04:26:29", "人员聚集")
    message, notify = harness.run(harness.device.send_alarm(1, notice, harness.now))
    assert message.method == "MESSAGE" and notify.method == "NOTIFY" and notify.body == message.body
    assert notify.get("Event") == "presence" and notify.call_id == "sub-1"
    harness.answer(notify, 200)
    ok, ended = subscribe(harness, "Alarm", expires=0, branch="z9hG4bKunsub")
    assert ok.status == 200 and ended.get("Subscription-State") == "terminated"
    [only_message] = harness.run(harness.device.send_alarm(2, notice, harness.now))
    assert only_message.method == "MESSAGE"


def test_mobile_position_is_accepted_and_other_subscriptions_refused():
    harness = registered()
    [ok] = subscribe(harness, "MobilePosition", expires=3600)
    assert ok.status == 200  # accepted: a fixed gateway reports no moves (WVP resends every 10 s on errors)
    [refused] = subscribe(harness, "DeviceStatus", expires=3600, call_id="sub-2", branch="z9hG4bKx")
    assert refused.status == 489


def test_a_notify_answered_481_ends_the_subscription():
    harness = registered()
    ok, *notifies = subscribe(harness, "Catalog", expires=600)
    harness.answer(notifies[0], 481, "Call/Transaction Does Not Exist")
    assert harness.device.health()["subscriptions"] == 0
    assert harness.device.state == "registered"  # a forgotten subscription is not a forgotten device


def test_refusals_are_logged_a_few_times_a_minute_not_once_per_request(caplog):
    caplog.set_level(logging.WARNING, logger="gateway.outputs.gb28181")
    harness = registered()
    for number in range(200):
        [answer] = harness.platform_request(query("Query", "Catalog", DEVICE), sender="34020000002000000099",
                                            branch=f"z9hG4bKf{number}")
        assert answer.status == 403
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 5 and harness.device.counters.refused_requests == 200
    harness.at(harness.now + 61)
    harness.platform_request(query("Query", "Catalog", DEVICE), sender="34020000002000000099", branch="z9hG4bKlast")
    last = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()][-1]
    assert "195 more like it held back" in last


def test_the_clock_skew_and_foreign_datagrams_are_metrics():
    """The output's health (what the live view reports per output) as Prometheus series."""

    class View:  # the live view: /metrics reads every output's health from it
        def cameras(self) -> list:
            return []

        def readiness(self) -> dict:
            return {}

        def health(self) -> dict:
            return {"disk_full": False, "outputs": {"gb28181:county": {
                "alive": True, "connected": True, "clock_skew_s": -3.5, "foreign_datagrams": 12}}}

    text = GatewayMetrics(view=View()).render()[0].decode()
    assert 'gateway_output_clock_skew_seconds{output="gb28181:county"} -3.5' in text
    assert 'gateway_output_foreign_datagrams_total{output="gb28181:county"} 12.0' in text


def test_a_notify_lost_with_the_connection_does_not_block_the_next_ones():
    harness = registered()
    ok, first = subscribe(harness, "Catalog", expires=3600)  # its answer never comes: the link drops
    harness.run(harness.device.link_down("reset by peer", harness.now))
    harness.run(harness.device.link_up(("127.0.0.1", 5061), harness.now))
    [register] = [m for m in harness.at(harness.now + 1) if m.method == "REGISTER"]
    [answer] = harness.answer(register, 401, "", ("WWW-Authenticate", 'Digest realm="r", nonce="n9", qop="auth"'))
    [keepalive] = harness.answer(answer, 200, "OK", ("Expires", "3600"))
    harness.answer(keepalive, 200)
    harness.channels.pop()  # the alarm channel goes: a catalogue change
    [change] = notifies_at(harness, harness.now + 1)
    assert b"<Event>DEL</Event>" in change.body
