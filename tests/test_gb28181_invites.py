"""INVITE dialogs of the GB/T 28181 device with a fake clock: what the platform gets for each
INVITE (100 Trying, 200 OK with the SDP answer, or a refusal with its reason), the 200 resent
until the ACK, the ACK starting the stream, BYE either way (with the dialog's tags, target and
route set), CANCEL, re-INVITE, and every session ended when the platform is lost. No sockets:
what the device sends is serialised and parsed back, as the platform would read it; the media
actions are collected and answered as the transport would."""

from __future__ import annotations

import pytest

from gateway.outputs.gb28181.actions import (
    MediaEnded,
    MediaFailed,
    MediaReady,
    OpenMedia,
    StartMedia,
    StopMedia,
)
from gateway.outputs.gb28181.manscdp import Channel
from gateway.outputs.gb28181.sdp import parse_offer
from gateway.outputs.gb28181.sip import SipRequest, SipResponse, header_params, parse_message
from test_gb28181_device import DEVICE, NOTICE, PLATFORM, Harness

EAST, WEST, YARD = (f"3402000000132000000{n}" for n in (1, 2, 3))
SMOKE = "34020000001340000002"
CAMERAS = [
    Channel(EAST, "东门", "M", "X", DEVICE, True, camera_id="east"),
    Channel(WEST, "西门", "M", "X", DEVICE, True, camera_id="west"),
    Channel(YARD, "后院", "M", "X", DEVICE, False, camera_id="yard"),  # offline
    Channel(SMOKE, "烟感", "M", "smoke sensor", DEVICE, True),  # an alarm input: no video
]
MEDIA_FORMAT = "v/2/4/10//a///"


def offer(protocol: str = "RTP/AVP", setup: str | None = None, *, session: str = "Play", timing: str = "0 0",
          y: str | None = "0200000001", extra: str = "") -> bytes:
    """An offer as WVP-GB28181-pro writes one (SIPCommander.playStreamCmd / playbackStreamCmd)."""
    lines = ["v=0", f"o={DEVICE} 0 0 IN IP4 10.0.0.2", f"s={session}"]
    lines += [f"u={EAST}:0"] if session != "Play" else []
    lines += ["c=IN IP4 10.0.0.2", f"t={timing}", f"m=video 30000 {protocol} 96 97 98 99", "a=recvonly",
              "a=rtpmap:96 PS/90000", "a=rtpmap:98 H264/90000", "a=rtpmap:97 MPEG4/90000", "a=rtpmap:99 H265/90000"]
    lines += [f"a=setup:{setup}", "a=connection:new"] if setup else []
    lines += [f"y={y}"] if y else []
    return ("\r\n".join(lines) + "\r\n" + extra).encode()


class InviteHarness(Harness):
    """The device harness that also keeps the media actions, as the transport would get them."""

    def __init__(self, transport: str = "UDP", **overrides: object) -> None:
        super().__init__(transport, channels=list(CAMERAS), **overrides)
        self.media: list[object] = []
        self._cseq = 100

    def run(self, actions: list) -> list:
        self.media += [a for a in actions if isinstance(a, OpenMedia | StartMedia | StopMedia)]
        return super().run(actions)

    def send(self, method: str, *, channel: str = EAST, body: bytes = b"", branch: str = "z9hG4bKi1",
             call_id: str = "live-1@10.0.0.2", tag: str = "wvp1", to_tag: str | None = None, cseq: int | None = None,
             headers: tuple[tuple[str, str], ...] = ()) -> list:
        """A request of the platform, as WVP builds it (SIPRequestHeaderProvider.createInviteRequest)."""
        if cseq is None:
            self._cseq += 1
            cseq = self._cseq
        request = SipRequest(method=method, uri=f"sip:{channel}@127.0.0.1:5061")
        request.add("Via", f"SIP/2.0/UDP 10.0.0.2:5060;rport;branch={branch}")
        request.add("From", f"<sip:{PLATFORM}@3402000000>;tag={tag}")
        request.add("To", f"<sip:{channel}@127.0.0.1:5061>" + (f";tag={to_tag}" if to_tag else ""))
        request.add("Call-ID", call_id)
        request.add("CSeq", f"{cseq} {method}")
        request.add("Max-Forwards", "70")
        request.add("Contact", f"<sip:{PLATFORM}@10.0.0.2:5060>")
        for name, value in headers:
            request.add(name, value)
        if body:
            request.add("Content-Type", "APPLICATION/SDP")
        request.body = body
        self.last_request = request
        return self.run(self.device.receive(parse_message(request.to_bytes()), self.now))

    def register(self) -> SipRequest:
        """Registered, with the first keepalive answered (so only the dialogs' messages follow)."""
        second = super().register()
        self.answer(self.keepalive, 200, "OK")
        return second

    def media_event(self, event: object) -> list:
        return self.run(self.device.media_event(event, self.now))

    def ack(self, response: SipResponse, *, branch: str = "z9hG4bKack1") -> list:
        """ACK for a final response (a 2xx: a new branch; else the INVITE's, RFC 3261 17.1.1.3)."""
        request = SipRequest(method="ACK", uri=f"sip:{EAST}@127.0.0.1:5061")
        via_branch = branch if response.status < 300 else header_params(response.get("Via") or "")["branch"]
        request.add("Via", f"SIP/2.0/UDP 10.0.0.2:5060;branch={via_branch}")
        for name in ("From", "To", "Call-ID"):
            request.add(name, response.get(name) or "")
        request.add("CSeq", f"{response.cseq[0]} ACK")
        return self.run(self.device.receive(parse_message(request.to_bytes()), self.now))

    def open_session(self, body: bytes | None = None, **options: object) -> tuple[OpenMedia, SipResponse]:
        """INVITE -> 100 Trying + OpenMedia -> MediaReady -> 200 OK (not ACKed yet)."""
        self.media.clear()
        [trying] = self.send("INVITE", body=offer() if body is None else body, **options)
        assert trying.status == 100 and "tag" not in header_params(trying.get("To"))
        [opening] = self.media
        assert isinstance(opening, OpenMedia)
        [ok] = self.media_event(MediaReady(opening.session_id, 40000, MEDIA_FORMAT))
        assert ok.status == 200
        return opening, ok


def tag_of(message: SipRequest | SipResponse, header: str) -> str:
    return header_params(message.get(header) or "").get("tag", "")


def warning(response: SipResponse) -> str:
    return response.get("Warning") or ""


@pytest.fixture
def harness() -> InviteHarness:
    harness = InviteHarness()
    harness.register()
    return harness


def test_an_invite_is_tried_answered_with_sdp_and_the_ack_starts_the_stream(harness):
    opening, ok = harness.open_session(headers=(("Subject", f"{EAST}:0200000001,{PLATFORM}:0"),))
    assert (opening.camera_id, opening.channel_id, opening.kind, opening.ssrc) == ("east", EAST, "live", 200000001)
    assert opening.offer.transport == "udp" and (opening.offer.address, opening.offer.port) == ("10.0.0.2", 30000)
    assert tag_of(ok, "To") and ok.get("Contact") == f"<sip:{EAST}@127.0.0.1:5061>"
    assert ok.get("Content-Type") == "application/sdp"
    answer = ok.body.decode()
    assert "c=IN IP4 127.0.0.1\r\n" in answer and "m=video 40000 RTP/AVP 96\r\n" in answer
    assert "s=Play\r\n" in answer and "a=sendonly\r\n" in answer and "y=0200000001\r\n" in answer
    assert f"f={MEDIA_FORMAT}\r\n" in answer and f"o={EAST} 0 0 IN IP4 127.0.0.1" in answer
    assert harness.device.health()["live_streams_by_camera"] == {"east": 1}
    harness.media.clear()
    assert harness.ack(ok) == [] and harness.media == [StartMedia(opening.session_id)]
    [bye_ok] = harness.send("BYE", to_tag=tag_of(ok, "To"))
    assert bye_ok.status == 200 and tag_of(bye_ok, "To") == tag_of(ok, "To")
    assert harness.media[-1] == StopMedia(opening.session_id, "the platform ended the session (BYE)")
    health = harness.device.health()
    assert health["live_streams"] == 0 and health["live_invites"] == 1 and health["live_ended_by_platform"] == 1


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_the_200_is_resent_until_the_ack_then_never_again(transport):
    harness = InviteHarness(transport)
    harness.register()
    opening, ok = harness.open_session()
    resent = [(t, harness.at(t)) for t in (0.5, 1.0, 1.5, 2.5, 4.5, 8.5)]
    assert [t for t, messages in resent if messages == [ok]] == [0.5, 1.5, 4.5, 8.5]  # T1 doubling to T2
    harness.ack(ok)
    assert not any(isinstance(m, SipResponse) for t in (12.5, 20.0, 40.0) for m in harness.at(t))
    assert StartMedia(opening.session_id) in harness.media


def test_a_200_never_acknowledged_ends_the_session_with_bye_through_the_route_set():
    harness = InviteHarness()
    harness.register()
    routes = (("Record-Route", "<sip:10.0.0.7;lr>, <sip:10.0.0.8;lr>"), ("Record-Route", "<sip:10.0.0.9;lr>"))
    opening, ok = harness.open_session(headers=routes)
    assert ok.get_all("Record-Route") == ["<sip:10.0.0.7;lr>, <sip:10.0.0.8;lr>", "<sip:10.0.0.9;lr>"]
    byes = [m for t in range(1, 40) for m in harness.at(float(t)) if isinstance(m, SipRequest)]
    bye = byes[0]  # sent at 32 s, then resent (UDP) until answered
    assert {(m.method, m.branch) for m in byes} == {("BYE", bye.branch)}
    assert bye.method == "BYE" and bye.uri == f"sip:{PLATFORM}@10.0.0.2:5060"  # the INVITE's Contact
    assert bye.get_all("Route") == ["<sip:10.0.0.7;lr>", "<sip:10.0.0.8;lr>", "<sip:10.0.0.9;lr>"]
    assert bye.call_id == "live-1@10.0.0.2" and tag_of(bye, "From") == tag_of(ok, "To") and tag_of(bye, "To") == "wvp1"
    assert isinstance(harness.media[-1], StopMedia) and "did not acknowledge the 200 OK" in harness.media[-1].reason
    assert StartMedia(opening.session_id) not in harness.media


def test_a_stream_ending_by_itself_sends_bye_and_a_strict_router_gets_the_request_uri(harness):
    opening, ok = harness.open_session(headers=(("Record-Route", "<sip:10.0.0.7>"),))
    harness.ack(ok)
    [bye] = harness.media_event(MediaEnded(opening.session_id, "camera east stopped"))
    assert bye.method == "BYE" and bye.uri == "sip:10.0.0.7" and bye.get_all("Route") == [
        f"<sip:{PLATFORM}@10.0.0.2:5060>"]
    assert harness.media[-1] == StopMedia(opening.session_id, "camera east stopped")
    assert harness.device.health()["live_ended_by_gateway"] == 1
    harness.answer(bye, 200)  # the platform's answer closes the BYE's transaction
    assert harness.at(4.0) == []  # not resent
    [late] = harness.send("BYE", to_tag=tag_of(ok, "To"))  # the platform's own BYE, crossing ours
    assert late.status == 481


def test_a_retransmitted_invite_gets_the_latest_answer_and_sets_up_nothing_more(harness):
    harness.media.clear()
    [trying] = harness.send("INVITE", body=offer(), cseq=7)
    [again] = harness.send("INVITE", body=offer(), cseq=7)
    assert again.status == 100 and len(harness.media) == 1
    harness.media_event(MediaReady(harness.media[0].session_id, 40000))
    [ok] = harness.send("INVITE", body=offer(), cseq=7)
    assert ok.status == 200 and len(harness.media) == 1


@pytest.mark.parametrize("channel, body, status, cause, why", [
    ("34020000001329999999", offer(), 404, "unknown_channel", None),  # not in the catalogue at all
    (SMOKE, offer(), 404, "unknown_channel", "is not a camera channel"),
    (EAST, b"", 488, "bad_offer", "has no SDP offer"),
    (EAST, offer().replace(b"a=rtpmap:96 PS/90000", b"a=rtpmap:96 MP2T/90000"), 488, "bad_offer",
     "no payload type of [96, 97, 98, 99] is PS/90000"),
    (EAST, b"v=0\r\nthis is not SDP\r\n", 488, "bad_offer", "not of the form x=value"),
    (YARD, offer(), 480, "offline", "camera yard is offline"),
])
def test_invites_that_cannot_be_served_are_refused_with_the_reason(harness, channel, body, status, cause, why):
    harness.media.clear()
    [refused] = harness.send("INVITE", channel=channel, body=body)
    assert refused.status == status and harness.media == []
    assert why is None or why in warning(refused), warning(refused)
    assert harness.device.health()["live_refused"] == {cause: 1}


def test_beyond_max_streams_the_platform_is_busy_and_zero_turns_video_off():
    harness = InviteHarness(max_streams=1)
    harness.register()
    harness.open_session()
    [busy] = harness.send("INVITE", channel=WEST, body=offer(), branch="z9hG4bKi2", call_id="live-2", tag="wvp2")
    assert busy.status == 486 and "1 streams are open already (max_streams 1)" in warning(busy)
    off = InviteHarness(max_streams=0)
    off.register()
    [forbidden] = off.send("INVITE", body=offer())
    assert forbidden.status == 403 and "max_streams: 0" in warning(forbidden)
    assert off.device.health()["live_refused"] == {"disabled": 1}


def test_media_that_cannot_be_set_up_is_refused_and_resent_until_acknowledged(harness):
    harness.media.clear()
    harness.send("INVITE", body=offer())
    [refused] = harness.media_event(MediaFailed(harness.media[0].session_id, 480, "no_video",
                                                "camera east has sent no video yet"))
    assert refused.status == 480 and "camera east has sent no video yet" in warning(refused)
    assert [m.status for m in harness.at(0.5)] == [480]  # after a 100 Trying the platform waits: resent
    harness.ack(refused)
    assert harness.at(1.5) == [] and harness.device.health()["live_refused"] == {"no_video": 1}
    assert harness.device.health()["live_streams"] == 0


def test_cancel_before_the_answer_terminates_the_invite_and_drops_its_media(harness):
    harness.media.clear()
    harness.send("INVITE", body=offer(), cseq=9)
    session_id = harness.media[0].session_id
    cancel_ok, terminated = harness.send("CANCEL", cseq=9)
    assert (cancel_ok.status, cancel_ok.cseq[1]) == (200, "CANCEL")
    assert (terminated.status, terminated.cseq[1]) == (487, "INVITE")
    assert harness.media[-1] == StopMedia(session_id, "the platform cancelled the INVITE")
    assert harness.media_event(MediaReady(session_id, 40000)) == []  # too late: the media is dropped again
    assert harness.media[-1].session_id == session_id and "before its media was ready" in harness.media[-1].reason
    harness.ack(terminated)
    [unknown] = harness.send("CANCEL", branch="z9hG4bKnone", cseq=10)
    assert unknown.status == 481


def test_cancel_after_the_answer_has_no_effect(harness):
    opening, ok = harness.open_session(cseq=11)
    [cancel_ok] = harness.send("CANCEL", cseq=11)
    assert cancel_ok.status == 200 and not any(isinstance(m, StopMedia) for m in harness.media)
    harness.ack(ok)
    assert harness.media[-1] == StartMedia(opening.session_id)


def test_a_reinvite_refreshes_with_the_same_offer_and_is_refused_with_another(harness):
    opening, ok = harness.open_session()
    harness.ack(ok)
    in_dialog = dict(to_tag=tag_of(ok, "To"), branch="z9hG4bKre1")
    [refresh] = harness.send("INVITE", body=offer(), **in_dialog)
    assert refresh.status == 200 and refresh.body == ok.body
    harness.ack(refresh, branch="z9hG4bKack2")
    [refused] = harness.send("INVITE", body=offer("TCP/RTP/AVP", "passive"), **{**in_dialog, "branch": "z9hG4bKre2"})
    assert refused.status == 488 and "BYE and INVITE again" in warning(refused)
    assert harness.media[-1] == StartMedia(opening.session_id)  # the stream goes on
    [old] = harness.send("INFO", cseq=5, to_tag=tag_of(ok, "To"), branch="z9hG4bKold")
    assert old.status == 500  # lower than the platform's last CSeq
    [info] = harness.send("INFO", to_tag=tag_of(ok, "To"), branch="z9hG4bKinfo")
    assert info.status == 501 and "MANSRTSP" in warning(info)
    [stray] = harness.send("BYE", to_tag="not-ours", branch="z9hG4bKstray")
    assert stray.status == 481


def test_playback_and_download_ask_for_the_recording_of_the_period(harness):
    harness.media.clear()
    harness.send("INVITE", body=offer(session="Playback", timing="1700000000 1700000060", y="1200000002"))
    harness.send("INVITE", body=offer(session="Download", timing="1700000000 1700000060", y="1200000003",
                                      extra="a=downloadspeed:4\r\n"), branch="z9hG4bKi2", call_id="dl-1", tag="w2")
    playback, download = harness.media
    assert (playback.kind, playback.start, playback.stop, playback.speed) == ("playback", 1700000000, 1700000060, 1.0)
    assert (download.kind, download.speed, download.ssrc) == ("playback", 4.0, 1200000003)
    [ok] = harness.media_event(MediaReady(playback.session_id, 40002))
    answer = parse_offer(ok.body.replace(b"a=sendonly", b"a=recvonly"))
    assert (answer.session, answer.start, answer.stop) == ("Playback", 1700000000, 1700000060)
    assert answer.ssrc == "1200000002"


def test_an_offer_without_y_gets_an_ssrc_of_the_gateways_making(harness):
    opening, ok = harness.open_session(offer("TCP/RTP/AVP", "active", y=None))
    y_line = next(line for line in ok.body.decode().splitlines() if line.startswith("y="))
    assert y_line == f"y={opening.ssrc:010d}" and y_line.startswith("y=020000")  # live, domain digits 4-8
    assert "a=setup:passive" in ok.body.decode()  # the platform connects: the gateway listens


def test_losing_the_platform_ends_every_session_with_bye(harness):
    opening, ok = harness.open_session()
    harness.ack(ok)
    harness.media.clear()
    harness.send("INVITE", channel=WEST, body=offer(), branch="z9hG4bKi2", call_id="live-2", tag="wvp2")
    [alarm] = harness.run(harness.device.send_alarm(1, NOTICE, harness.now))
    messages = harness.answer(alarm, 404, "Not Found")  # the platform forgot the device
    byes = [m for m in messages if isinstance(m, SipRequest) and m.method == "BYE"]
    refused = [m for m in messages if isinstance(m, SipResponse)]
    assert len(byes) == 1 and [r.status for r in refused] == [480]  # the one still being set up
    assert {a.session_id for a in harness.media if isinstance(a, StopMedia)} == {opening.session_id,
                                                                                opening.session_id + 1}
    assert harness.device.health()["live_streams"] == 0


def test_a_lost_tcp_connection_stops_the_streams_without_a_word():
    harness = InviteHarness("TCP")
    harness.register()
    opening, ok = harness.open_session()
    harness.ack(ok)
    assert harness.run(harness.device.link_down("reset by peer", harness.now)) == []
    assert isinstance(harness.media[-1], StopMedia) and "connection lost" in harness.media[-1].reason


def test_a_bye_answer_or_its_absence_costs_the_registration_nothing(harness):
    opening, ok = harness.open_session()
    harness.ack(ok)
    [bye] = harness.media_event(MediaEnded(opening.session_id, "the clip ended"))
    harness.answer(bye, 481, "Call/Transaction Does Not Exist")
    assert harness.device.state == "registered"
    second, ok2 = harness.open_session(branch="z9hG4bKi9", call_id="live-9", tag="w9")
    harness.ack(ok2)
    [bye2] = harness.media_event(MediaEnded(second.session_id, "the clip ended"))
    for t in range(1, 40):
        harness.at(float(t))
    assert harness.device.state == "registered" and harness.device.missed == 0
    assert bye2.method == "BYE" and harness.device.health()["live_ended_by_gateway"] == 2
