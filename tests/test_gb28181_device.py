"""The GB/T 28181 device state machine with a fake clock: registration with digest, refresh,
backoff, keepalives, alarms, and the platform's requests. No sockets: what the device sends is
serialised and parsed back, as the platform would read it."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET

import pytest

from gateway.backoff import Backoff
from gateway.outputs.gb28181 import manscdp
from gateway.outputs.gb28181.device import (
    AlarmOutcome,
    CameraJob,
    DeviceSettings,
    Disconnect,
    Gb28181Device,
    Send,
)
from gateway.outputs.gb28181.manscdp import Alarm, Channel
from gateway.outputs.gb28181.sip import (
    SipRequest,
    SipResponse,
    header_params,
    parse_message,
    response_to,
)

DEVICE = "34020000001180000001"
PLATFORM = "34020000002000000001"
PASSWORD = "s3cret"
LOCAL = ("127.0.0.1", 5061)
CHANNELS = [Channel(f"3402000000132000000{n}", f"摄像机{n}", "M", "X", DEVICE, True) for n in (1, 2)]
NOTICE = Alarm("34020000001320000001", 2, 5, 10, "2026-11-22T04:26:29", "人员聚集：东门广场 12人")


class Harness:
    """A device, a clock, and helpers to read what it sent and to answer as the platform."""

    def __init__(self, transport: str = "UDP", *, channels: list[Channel] | None = None,
                 device_options: dict[str, object] | None = None, **overrides: object) -> None:
        settings = DeviceSettings(device_id=DEVICE, platform_id=PLATFORM, domain="3402000000", password=PASSWORD,
                                  transport=transport, expires_s=3600, keepalive_s=60, max_missed_keepalives=3,
                                  answer_timeout_s=32, name="网关", manufacturer="M", model="X", firmware="1")
        for key, value in overrides.items():
            settings = DeviceSettings(**{**vars(settings), key: value})
        self.now = 0.0
        self.channels = CHANNELS if channels is None else channels
        self.device = Gb28181Device(settings, channels=lambda: self.channels, local_time=lambda: "2026-11-22T04:26:29",
                                    backoff=Backoff(min_s=1, max_s=4, jitter=0), label="test platform",
                                    **(device_options or {}))  # type: ignore[arg-type]
        self.outcomes: list[AlarmOutcome] = []
        self.disconnects: list[Disconnect] = []
        self.jobs: list[CameraJob] = []

    def run(self, actions: list) -> list[SipRequest | SipResponse]:
        """The messages among the actions, as the far end parses them; outcomes are kept."""
        messages = []
        for action in actions:
            if isinstance(action, Send):
                messages.append(parse_message(action.message.to_bytes()))
            elif isinstance(action, AlarmOutcome):
                self.outcomes.append(action)
            elif isinstance(action, Disconnect):
                self.disconnects.append(action)
            elif isinstance(action, CameraJob):
                self.jobs.append(action)
        return messages

    def start(self) -> SipRequest:
        self.run(self.device.start(self.now))
        [register] = self.run(self.device.link_up(LOCAL, self.now))
        return register

    def at(self, now: float) -> list:
        self.now = now
        return self.run(self.device.tick(now))

    def answer(self, request: SipRequest, status: int, reason: str = "", *headers: tuple[str, str]) -> list:
        response = response_to(request, status, reason or "X", "platform-tag")
        for name, value in headers:
            response.add(name, value)
        return self.run(self.device.receive(parse_message(response.to_bytes()), self.now))

    def platform_request(self, body: bytes, *, sender: str = PLATFORM, branch: str = "z9hG4bKq1",
                         method: str = "MESSAGE", call_id: str = "q-1@10.0.0.9", tag: str = "p1",
                         headers: tuple[tuple[str, str], ...] = ()) -> list:
        request = SipRequest(method=method, uri=f"sip:{DEVICE}@127.0.0.1:5061")
        request.add("Via", f"SIP/2.0/UDP 10.0.0.9:5060;branch={branch}")
        request.add("From", f"<sip:{sender}@3402000000>;tag={tag}")
        request.add("To", f"<sip:{DEVICE}@3402000000>")
        request.add("Call-ID", call_id)
        request.add("CSeq", f"20 {method}")
        for name, value in headers:
            request.add(name, value)
        request.add("Content-Type", "Application/MANSCDP+xml")
        request.body = body
        return self.run(self.device.receive(parse_message(request.to_bytes()), self.now))

    def register(self) -> SipRequest:
        """Start and complete a registration through a 401 challenge; returns the 2nd REGISTER."""
        first = self.start()
        [second] = self.answer(first, 401, "Unauthorized",
                               ("WWW-Authenticate", 'Digest realm="3402000000", nonce="n1", qop="auth"'))
        messages = self.answer(second, 200, "OK", ("Expires", "120"))
        assert self.device.state == "registered"
        self.keepalive = messages[0]
        return second


def digest_ok(request: SipRequest, password: str = PASSWORD) -> bool:
    """Check an Authorization header the way a registrar does (qop=auth, MD5)."""
    params = {k: v for k, v in (p.strip().split("=", 1) for p in request.get("Authorization")[7:].split(","))}
    params = {k: v.strip('"') for k, v in params.items()}
    ha1 = hashlib.md5(f"{params['username']}:{params['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{request.method}:{params['uri']}".encode()).hexdigest()
    expected = hashlib.md5(
        f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}".encode()).hexdigest()
    return params["response"] == expected and params["username"] == DEVICE


def body_of(message: SipRequest) -> manscdp.Command:
    return manscdp.parse(message.body)


# --------------------------------------------------------------------------- registration


def test_register_answers_the_digest_challenge_then_sends_a_keepalive():
    harness = Harness()
    first = harness.start()
    assert first.method == "REGISTER" and first.uri == f"sip:{PLATFORM}@3402000000"
    assert first.get("Authorization") is None and first.get("Expires") == "3600"
    assert first.get("Contact") == f"<sip:{DEVICE}@127.0.0.1:5061>"
    assert first.get("Via").startswith("SIP/2.0/UDP 127.0.0.1:5061;rport;branch=z9hG4bK")
    [second] = harness.answer(first, 401, "Unauthorized",
                              ("WWW-Authenticate", 'Digest realm="3402000000", nonce="n1", qop="auth"'))
    assert second.call_id == first.call_id and second.cseq[0] > first.cseq[0]
    assert digest_ok(second) and "nc=00000001" in second.get("Authorization")
    [keepalive] = harness.answer(second, 200, "OK", ("Expires", "120"))
    assert harness.device.state == "registered" and harness.device.counters.registrations == 1
    assert keepalive.method == "MESSAGE" and keepalive.get("Content-Type") == "Application/MANSCDP+xml"
    assert (body_of(keepalive).cmd_type, body_of(keepalive).device_id) == ("Keepalive", DEVICE)
    assert keepalive.call_id != first.call_id


def test_refresh_before_expiry_on_the_same_call_id_with_the_next_nonce_count():
    harness = Harness()
    second = harness.register()  # granted 120 s
    harness.answer(harness.keepalive, 200)
    assert harness.at(59.9) == []
    [keepalive] = harness.at(60.0)
    harness.answer(keepalive, 200)
    assert harness.at(89.9) == []
    [refresh] = harness.at(90.0)
    assert refresh.call_id == second.call_id and digest_ok(refresh) and "nc=00000002" in refresh.get("Authorization")
    harness.answer(refresh, 200, "OK", ("Expires", "120"))
    assert harness.device.state == "registered" and harness.device.counters.registrations == 1


def test_granted_expires_comes_from_contact_or_expires():
    harness = Harness()
    first = harness.start()
    [keepalive] = harness.answer(first, 200, "OK", ("Contact", f"<sip:{DEVICE}@127.0.0.1:5061>;expires=40"),
                                 ("Expires", "999"))
    harness.answer(keepalive, 200)
    assert harness.at(29.9) == []
    assert [m.method for m in harness.at(30.0)] == ["REGISTER"]  # 3/4 of the 40 s in Contact


def test_wrong_password_is_reported_and_retried_with_backoff_and_a_new_call_id():
    harness = Harness()
    first = harness.start()
    challenge = ("WWW-Authenticate", 'Digest realm="3402000000", nonce="n1"')
    [second] = harness.answer(first, 401, "Unauthorized", challenge)
    assert harness.answer(second, 401, "Unauthorized", challenge) == []
    assert harness.device.state == "waiting"
    assert "refused the password" in harness.device.last_error
    assert harness.at(0.99) == []
    [again] = harness.at(1.0)  # backoff 1 s (no jitter in the test)
    assert again.method == "REGISTER" and again.call_id != first.call_id
    assert again.get("Authorization") is None  # a new registration starts from a fresh challenge
    [answer] = harness.answer(again, 401, "Unauthorized", challenge)
    harness.answer(answer, 401, "Unauthorized", challenge)
    assert harness.at(2.99) == [] and len(harness.at(3.0)) == 1  # backoff doubled to 2 s


def test_stale_nonce_is_answered_again_not_taken_as_a_wrong_password():
    harness = Harness()
    first = harness.start()
    [second] = harness.answer(first, 401, "", ("WWW-Authenticate", 'Digest realm="r", nonce="n1"'))
    [third] = harness.answer(second, 401, "", ("WWW-Authenticate", 'Digest realm="r", nonce="n2", stale=true'))
    assert 'nonce="n2"' in third.get("Authorization")
    harness.answer(third, 200)
    assert harness.device.state == "registered"


def test_a_401_loop_with_fresh_nonces_gives_up():
    harness = Harness()
    request = harness.start()
    for number in range(10):
        sent = harness.answer(request, 401, "", ("WWW-Authenticate", f'Digest realm="r", nonce="n{number}"'))
        if not sent:
            break
        [request] = sent
    assert harness.device.state == "waiting" and "401 loop" in harness.device.last_error


def test_403_and_unanswerable_challenges_are_failures_with_a_reason():
    harness = Harness()
    harness.answer(harness.start(), 403, "Forbidden")
    assert "403 Forbidden" in harness.device.last_error and "device_id" in harness.device.last_error
    harness = Harness()
    harness.answer(harness.start(), 401, "", ("WWW-Authenticate", 'Digest realm="r", nonce="n", algorithm=SHA-1'))
    assert "SHA-1" in harness.device.last_error
    harness = Harness()
    harness.answer(harness.start(), 401)
    assert "without a digest challenge" in harness.device.last_error


def test_interval_too_brief_is_retried_with_min_expires():
    harness = Harness()
    [again] = harness.answer(harness.start(), 423, "Interval Too Brief", ("Min-Expires", "7200"))
    assert again.get("Expires") == "7200"


def test_udp_retransmits_then_times_out_and_backs_off():
    harness = Harness(answer_timeout_s=10)
    first = harness.start()
    resent = [t for t in (0.5, 1.5, 3.5, 7.5) if harness.at(t)]
    assert resent == [0.5, 1.5, 3.5, 7.5]  # timer E: 0.5, 1, 2, 4 s apart
    assert [m.branch for m in harness.at(7.6)] == []
    harness.at(10.0)
    assert harness.device.state == "waiting" and "no answer within 10 s to REGISTER" in harness.device.last_error
    [again] = harness.at(11.0)
    assert again.call_id != first.call_id


def test_tcp_does_not_retransmit_and_asks_for_a_new_connection_when_the_platform_is_silent():
    harness = Harness(transport="TCP", answer_timeout_s=10)
    first = harness.start()
    assert "SIP/2.0/TCP" in first.get("Via")
    assert harness.at(5.0) == []
    harness.at(10.0)
    assert [d.reason for d in harness.disconnects] == ["no answer within 10 s to REGISTER"]
    harness.run(harness.device.link_down("closed", 10.0))
    assert harness.at(11.0) == []  # no link: nothing to send on
    [again] = harness.run(harness.device.link_up(LOCAL, 11.0))
    assert again.method == "REGISTER"


# --------------------------------------------------------------------------- keepalive


def test_missed_keepalives_lead_to_a_new_registration():
    harness = Harness(max_missed_keepalives=2, keepalive_s=60, answer_timeout_s=32)
    harness.register()
    harness.at(32.0)  # the first keepalive timed out
    assert harness.device.missed == 1 and harness.device.state == "registered"
    [keepalive] = [m for m in harness.at(60.0) if m.method == "MESSAGE"]
    sent = harness.at(92.0)
    assert harness.device.state == "registering"
    [register] = [m for m in sent if m.method == "REGISTER"]
    assert "2 messages in a row unanswered" in harness.device.last_error


def test_an_answered_keepalive_resets_the_misses():
    harness = Harness(max_missed_keepalives=2)
    harness.register()
    harness.at(32.0)
    [keepalive] = [m for m in harness.at(60.0) if m.method == "MESSAGE"]
    harness.answer(keepalive, 200)
    assert harness.device.missed == 0 and harness.device.counters.keepalives_answered == 1


def test_a_keepalive_refused_as_unknown_device_registers_again_at_once():
    harness = Harness()
    harness.register()
    [register] = harness.answer(harness.keepalive, 404, "Not Found")
    assert register.method == "REGISTER" and harness.device.state == "registering"
    assert "no longer knows the device" in harness.device.last_error


# --------------------------------------------------------------------------- alarms


def test_alarm_outcomes():
    harness = Harness()
    harness.run(harness.device.send_alarm(1, NOTICE, 0.0))
    assert harness.outcomes[-1].token == 1 and "not registered" in harness.outcomes[-1].error
    harness.register()
    [message] = harness.run(harness.device.send_alarm(2, NOTICE, 0.0))
    command = body_of(message)
    assert (command.root, command.cmd_type, command.device_id) == ("Notify", "Alarm", "34020000001320000001")
    assert "人员聚集".encode("gb2312") in message.body
    harness.answer(message, 200)
    assert harness.outcomes[-1] == AlarmOutcome(2, None)
    [message] = harness.run(harness.device.send_alarm(3, NOTICE, 0.0))
    harness.answer(message, 500, "Server Internal Error")
    assert harness.outcomes[-1] == AlarmOutcome(3, "the platform answered the alarm with 500 Server Internal Error")
    harness.run(harness.device.send_alarm(4, NOTICE, 1.0))
    harness.at(33.0)
    assert harness.outcomes[-1] == AlarmOutcome(4, "no answer within 32 s to the alarm MESSAGE")
    assert harness.device.counters.alarms_delivered == 1 and harness.device.counters.alarms_failed == 2


def test_an_abandoned_alarm_has_no_outcome_when_answered_late():
    harness = Harness()
    harness.register()
    [message] = harness.run(harness.device.send_alarm(5, NOTICE, 0.0))
    harness.device.abandon(5)
    harness.answer(message, 200)
    assert harness.outcomes == []


def test_connection_loss_fails_the_alarms_in_flight():
    harness = Harness(transport="TCP")
    harness.register()
    harness.run(harness.device.send_alarm(6, NOTICE, 0.0))
    harness.run(harness.device.link_down("reset by peer", 0.0))
    assert harness.outcomes == [AlarmOutcome(6, "connection lost (reset by peer)")]
    assert harness.device.state == "waiting"


# --------------------------------------------------------------------------- the platform's requests


CATALOG_QUERY = (b'<?xml version="1.0" encoding="GB2312"?>\r\n<Query><CmdType>Catalog</CmdType><SN>17430</SN>'
                 b"<DeviceID>34020000001180000001</DeviceID></Query>")


def test_catalog_query_is_answered_200_then_with_the_channels():
    harness = Harness()
    harness.register()
    ok, *answers = harness.platform_request(CATALOG_QUERY)
    assert isinstance(ok, SipResponse) and ok.status == 200 and header_params(ok.get("To"))["tag"]
    channel_ids = []
    for answer in answers:
        command = body_of(answer)
        assert (command.root, command.cmd_type, command.sn, command.fields["SumNum"]) == ("Response", "Catalog",
                                                                                          17430, "2")
        items = ET.fromstring(answer.body.decode("gb2312").split("?>", 1)[1]).find("DeviceList")
        channel_ids += [item.findtext("DeviceID") for item in items]
        harness.answer(answer, 200)
    assert channel_ids == [channel.channel_id for channel in CHANNELS]
    assert harness.device.counters.queries_answered == 1
    assert harness.device.counters.answers_acknowledged == len(answers)


def test_a_retransmitted_query_gets_the_same_answer_and_no_second_catalogue():
    harness = Harness()
    harness.register()
    first = harness.platform_request(CATALOG_QUERY)
    again = harness.platform_request(CATALOG_QUERY)
    assert len(first) >= 2 and len(again) == 1 and again[0].status == 200
    assert harness.device.counters.queries_answered == 1
    harness.at(40.0)  # the answer is forgotten after 32 s: a new transaction is served again
    assert len(harness.platform_request(CATALOG_QUERY)) >= 2


def test_device_info_and_status_queries():
    harness = Harness()
    harness.register()
    for cmd_type, field in (("DeviceInfo", "DeviceName"), ("DeviceStatus", "Online")):
        body = f"<Query><CmdType>{cmd_type}</CmdType><SN>9</SN><DeviceID>{DEVICE}</DeviceID></Query>".encode()
        ok, answer = harness.platform_request(body, branch=f"z9hG4bK{cmd_type}")
        assert ok.status == 200 and field in body_of(answer).fields


@pytest.mark.parametrize("body, sender, method, status", [
    (CATALOG_QUERY, "34020000002000000099", "MESSAGE", 403),  # not our platform
    (b"<Query><CmdType>Catalog</CmdType>", PLATFORM, "MESSAGE", 400),  # broken XML
    (b"", PLATFORM, "INVITE", 404),  # the device itself is not a camera channel (INVITEs: test_gb28181_invites)
    (b"", PLATFORM, "PRACK", 501),
    (b"", PLATFORM, "BYE", 481),
    (b"", PLATFORM, "OPTIONS", 200),
    (b"<Notify><CmdType>MediaStatus</CmdType><SN>1</SN></Notify>", PLATFORM, "MESSAGE", 200),  # not ours
])
def test_other_requests_get_a_clear_answer_and_no_action(body, sender, method, status):
    harness = Harness()
    harness.register()
    [answer] = harness.platform_request(body, sender=sender, method=method)
    assert isinstance(answer, SipResponse) and answer.status == status
    assert harness.device.counters.queries_answered == 0


def test_requests_of_rfc2543_peers_are_told_apart_without_a_magic_branch():
    harness = Harness()
    harness.register()
    first = harness.platform_request(CATALOG_QUERY, branch="old-style")
    again = harness.platform_request(CATALOG_QUERY, branch="old-style")  # the same CSeq: a retransmission
    assert len(first) >= 2 and len(again) == 1
    query = SipRequest(method="MESSAGE", uri=f"sip:{DEVICE}@127.0.0.1:5061")
    for name, value in (("Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=old-style"), ("From", f"<sip:{PLATFORM}@d>;tag=p1"),
                        ("To", f"<sip:{DEVICE}@d>"), ("Call-ID", "q-1@10.0.0.9"), ("CSeq", "21 MESSAGE")):
        query.add(name, value)
    query.body = CATALOG_QUERY
    assert len(harness.run(harness.device.receive(parse_message(query.to_bytes()), 0.0))) >= 2  # a new one


def test_ack_and_unknown_responses_are_ignored():
    harness = Harness()
    harness.register()
    assert harness.platform_request(b"", method="ACK") == []
    stray = SipResponse(status=200, reason="OK")
    for name, value in (("Via", "SIP/2.0/UDP x;branch=z9hG4bKnone"), ("From", "<sip:a@b>"), ("To", "<sip:c@d>"),
                        ("Call-ID", "x"), ("CSeq", "1 MESSAGE")):
        stray.add(name, value)
    assert harness.run(harness.device.receive(parse_message(stray.to_bytes()), 0.0)) == []


def test_unregister_sends_expires_zero_with_credentials():
    harness = Harness()
    second = harness.register()
    [goodbye] = harness.run(harness.device.unregister(1.0))
    assert goodbye.get("Expires") == "0" and goodbye.call_id == second.call_id and digest_ok(goodbye)
    assert harness.device.busy_unregistering
    harness.answer(goodbye, 200)
    assert not harness.device.busy_unregistering and harness.device.state == "stopped"
