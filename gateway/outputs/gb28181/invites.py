"""The platform opening a camera's video: INVITE dialogs on the device's server side. Pure.

A GB/T 28181 platform watches a channel (s=Play) or plays a recording (s=Playback, Download)
by INVITE-ing it with an SDP offer (`sdp`); the device answers with its own SDP, the platform
ACKs, media flows (`media`), and either side ends it with BYE. `InviteSessions` is that UAS
half of RFC 3261 dialogs for `PlatformRequests`, without sockets or a clock: it returns the
responses and requests to send, and `OpenMedia` / `StartMedia` / `StopMedia` for the transport,
which reports back with a `MediaEvent`.

The rules:
- INVITE (no To tag) is checked in order: live video off (`max_streams` 0) -> 403; the
  channel is not a camera of the catalogue -> 404; no SDP offer, or one the gateway cannot
  meet (no PS payload, not video, unreadable) -> 488 with a Warning naming the line; the
  camera is offline -> 480; `max_streams` sessions already -> 486 Busy Here. Each refusal is
  counted by cause and logged with the camera and the reason (Warning: 399 says it to the
  platform too). Otherwise 100 Trying and `OpenMedia`; the transport's `MediaReady` gives the
  200 OK (SDP answer with the gateway's address and the bound port, Contact, the INVITE's
  Record-Route, a fresh To tag), its `MediaFailed` the refusal (480 no video yet, 404 no
  recording, 488 a codec that cannot be sent, 500 no port).
- A final answer to an INVITE is sent again at T1 doubling to T2 until the ACK comes: a 2xx on
  every transport (RFC 3261 13.3.1.4), others over UDP only (17.2.1). A 2xx not ACKed within
  64*T1 ends the session with BYE; the ACK of the first 2xx starts the stream (`StartMedia`).
- CANCEL (the INVITE's branch) before the final answer: 200 to it, 487 to the INVITE, and the
  media is dropped; after it, 200 and no effect (RFC 3261 9.2); no such INVITE: 481.
- In a dialog (Call-ID, our tag, theirs): BYE -> 200 OK and `StopMedia`; a re-INVITE with the
  same offer or none (a session refresh) -> 200 with the same answer, with another offer -> 488
  and the stream goes on unchanged (RFC 3261 14.2); INFO (MANSRTSP playback control) -> 501; a
  CSeq lower than the platform's last -> 500 (12.2.2). Outside any dialog: 481.
- The stream ended by itself (`MediaEnded`: the camera stopped or sent nothing for a while, the
  clip ended, the TCP peer left or never connected) -> BYE, to the INVITE's Contact through its
  Record-Route set (loose or strict routing, 12.2.1.1). Everything ends (`end_all`) when the
  platform is lost or the gateway stops: BYE where a dialog exists, then `StopMedia`.
The transport sends every request to the platform's address whatever the Request-URI says: the
platform is the only peer (the route set and target are written for the proxies of a cluster).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.logs import LogLimiter
from gateway.outputs.gb28181.actions import (
    Action,
    DeviceSide,
    MediaEnded,
    MediaEvent,
    MediaFailed,
    MediaKind,
    MediaReady,
    OpenMedia,
    Send,
    StartMedia,
    StopMedia,
)
from gateway.outputs.gb28181.manscdp import Channel
from gateway.outputs.gb28181.rtp import ssrc_to_y
from gateway.outputs.gb28181.sdp import InviteOffer, SdpError, build_answer, parse_offer
from gateway.outputs.gb28181.sip import (
    SipRequest,
    SipResponse,
    header_params,
    response_to,
    uri_of,
    uri_user,
    with_tag,
)
from gateway.outputs.gb28181.sip import server_key as _key

log = logging.getLogger("gateway.outputs.gb28181.device")

T1, T2 = 0.5, 4.0
"""RFC 3261 timers (as the device's): the answer's first resend interval and its cap."""
ACK_WAIT_S = 64 * T1
"""Timer H: a final answer not ACKed by then is given up (a 2xx ends its session with BYE)."""
MAX_UNACKED = 256
"""Final answers awaiting their ACK at most (a platform re-INVITing in a loop stays bounded)."""
MAX_DOWNLOAD_SPEED = 16.0
SDP_TYPE = "application/sdp"

Remember = Callable[[tuple[str, str], SipResponse, float], Send]
"""Keeps a response for the request's retransmissions and returns it to send (the server side's)."""
SessionState = Literal["opening", "answered", "confirmed"]


@dataclass
class InviteSession:
    """One INVITE of the platform: from the offer to the end of its dialog."""

    session_id: int
    camera_id: str
    channel_id: str
    kind: MediaKind
    offer: InviteOffer
    invite: SipRequest
    invite_key: tuple[str, str]
    local_tag: str
    remote_tag: str
    remote_cseq: int
    ssrc: int
    opened_at: float
    state: SessionState = "opening"
    answer: bytes = b""

    @property
    def dialog(self) -> tuple[str, str, str]:
        return self.invite.call_id, self.local_tag, self.remote_tag

    @property
    def what(self) -> str:
        seen = "live video" if self.kind == "live" else f"recording {self.offer.start}-{self.offer.stop}"
        return f"camera {self.camera_id} ({seen}, {self.offer.transport} to {self.offer.address}:{self.offer.port})"


@dataclass
class _Unacked:
    """A final answer to an INVITE, sent again until its ACK comes."""

    response: SipResponse
    starts: int | None
    """The session whose stream the ACK starts (the first 2xx of a session), if any."""
    resend_at: float | None
    interval: float
    give_up_at: float


@dataclass(frozen=True)
class _Refusal:
    status: int
    cause: str
    reason: str
    camera: str | None = None


REASONS = {403: "Forbidden", 404: "Not Found", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
           486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 500: "Server Internal Error",
           501: "Not Implemented"}


class InviteSessions:
    """The INVITE dialogs of `device` (see the module docstring)."""

    def __init__(self, device: DeviceSide, *, label: str, channels: Callable[[], Sequence[Channel]],
                 remember: Remember) -> None:
        self._device, self._label = device, label
        self._channels, self._remember = channels, remember
        self._sessions: dict[int, InviteSession] = {}
        self._dialogs: dict[tuple[str, str, str], InviteSession] = {}
        self._by_invite: dict[tuple[str, str], InviteSession] = {}
        self._unacked: dict[tuple[str, int, str], _Unacked] = {}
        self._next_id = 0
        self.invites = 0
        self.refused: Counter[str] = Counter()
        self.ended_by_gateway = self.ended_by_platform = 0
        self._log_limiter = LogLimiter(burst=5, window_s=60.0)

    # ------------------------------------------------------------------ requests

    def receive(self, request: SipRequest, now: float) -> list[Action]:
        """INVITE, BYE, CANCEL or INFO from the platform (ACK: `ack`)."""
        if request.method == "CANCEL":
            return self._on_cancel(request, now)
        to_tag = header_params(request.get("To") or "").get("tag")
        if not to_tag and request.method == "INVITE":
            return self._on_invite(request, now)
        session = self._dialogs.get((request.call_id, to_tag or "", _from_tag(request)))
        if session is None:
            return [self._plain(request, 481, "no such session (it ended, or the gateway restarted)", now)]
        if request.cseq[0] < session.remote_cseq:
            return [self._plain(request, 500, f"CSeq {request.cseq[0]} is lower than {session.remote_cseq}", now)]
        session.remote_cseq = request.cseq[0]
        if request.method == "BYE":
            return self._on_bye(session, request, now)
        if request.method == "INVITE":
            return self._on_reinvite(session, request, now)
        return [self._plain(request, 501, "playback control (MANSRTSP: pause, seek, speed) is not supported: the "
                                          "recording plays at its own pace", now, session.local_tag)]

    def ack(self, request: SipRequest, now: float) -> list[Action]:
        """The ACK of a final answer: no more resending; the first 2xx's starts the stream."""
        unacked = self._unacked.pop((request.call_id, request.cseq[0], _from_tag(request)), None)
        if unacked is None or unacked.starts is None:
            return []
        session = self._sessions.get(unacked.starts)
        if session is None or session.state != "answered":
            return []
        session.state = "confirmed"
        log.info("%s: %s: the platform acknowledged; streaming (session %d)", self._label, session.what,
                 session.session_id)
        return [StartMedia(session.session_id)]

    def _on_invite(self, request: SipRequest, now: float) -> list[Action]:
        self.invites += 1
        admitted = self._admit(request)
        if isinstance(admitted, _Refusal):
            return [self._refuse(request, admitted, now)]
        channel, offer = admitted
        assert channel.camera_id is not None
        self._next_id += 1
        kind: MediaKind = "live" if offer.session == "Play" else "playback"
        ssrc = offer.ssrc_value if offer.ssrc_value is not None else self._new_ssrc(kind)
        session = InviteSession(
            session_id=self._next_id, camera_id=channel.camera_id, channel_id=channel.channel_id, kind=kind,
            offer=offer, invite=request, invite_key=_invite_key(request), local_tag=secrets.token_hex(6),
            remote_tag=_from_tag(request), remote_cseq=request.cseq[0], ssrc=ssrc, opened_at=now)
        self._sessions[session.session_id] = session
        self._by_invite[session.invite_key] = session
        log.info("%s: INVITE for %s (session %d): setting up the media", self._label, session.what,
                 session.session_id)
        trying = self._remember(session.invite_key, response_to(request, 100, "Trying", session.local_tag), now)
        return [trying, OpenMedia(session.session_id, session.camera_id, session.channel_id, kind, offer, ssrc,
                                  offer.start, offer.stop, _speed(offer))]

    def _admit(self, request: SipRequest) -> tuple[Channel, InviteOffer] | _Refusal:
        if self._device.settings.max_streams <= 0:
            return _Refusal(403, "disabled", "live video is off on this gateway (max_streams: 0)")
        wanted = uri_user(request.uri) or uri_user(uri_of(request.get("To") or "")) or ""
        channel = next((c for c in self._channels() if c.channel_id == wanted and c.camera_id), None)
        if channel is None:
            return _Refusal(404, "unknown_channel", f"{wanted[:24]!r} is not a camera channel of this device")
        if not request.body.strip():
            return _Refusal(488, "bad_offer", "the INVITE has no SDP offer (an offer in the ACK is not supported)",
                            channel.camera_id)
        try:
            offer = parse_offer(request.body)
        except SdpError as error:
            return _Refusal(488, "bad_offer", str(error), channel.camera_id)
        if not channel.online:
            return _Refusal(480, "offline", f"camera {channel.camera_id} is offline", channel.camera_id)
        if len(self._sessions) >= self._device.settings.max_streams:
            return _Refusal(486, "busy", f"{len(self._sessions)} streams are open already (max_streams "
                                         f"{self._device.settings.max_streams})", channel.camera_id)
        return channel, offer

    def _on_cancel(self, request: SipRequest, now: float) -> list[Action]:
        session = self._by_invite.get(_invite_key(request))
        if session is None:
            return [self._plain(request, 481, "no such INVITE to cancel", now)]
        ok = self._remember(_key(request), response_to(request, 200, "OK", session.local_tag), now)
        if session.state != "opening":
            return [ok]  # answered already: CANCEL has no effect (RFC 3261 9.2)
        log.info("%s: %s: the platform cancelled the INVITE", self._label, session.what)
        self._forget(session)
        terminated = response_to(session.invite, 487, REASONS[487], session.local_tag)
        return [ok, self._final(session, terminated, now, starts=False),
                StopMedia(session.session_id, "the platform cancelled the INVITE")]

    def _on_bye(self, session: InviteSession, request: SipRequest, now: float) -> list[Action]:
        self.ended_by_platform += 1
        log.info("%s: %s: the platform ended the session after %.0f s (BYE)", self._label, session.what,
                 now - session.opened_at)
        self._forget(session)
        return [self._remember(_key(request), response_to(request, 200, "OK", session.local_tag), now),
                StopMedia(session.session_id, "the platform ended the session (BYE)")]

    def _on_reinvite(self, session: InviteSession, request: SipRequest, now: float) -> list[Action]:
        if request.body.strip() and _normalised(request.body) != _normalised(session.invite.body):
            log.info("%s: %s: refused a re-INVITE with another offer; the stream goes on", self._label, session.what)
            return [self._final(session, self._response(
                request, 488, session.local_tag, "changing an established stream is not supported: end it with "
                                                 "BYE and INVITE again"), now, starts=False, request=request)]
        response = self._answer(session, request, session.answer)
        return [self._final(session, response, now, starts=False, request=request)]

    # ------------------------------------------------------------------ the transport's reports

    def media_event(self, event: MediaEvent, now: float) -> list[Action]:
        session = self._sessions.get(event.session_id)
        if isinstance(event, MediaEnded):
            if session is None:
                return [StopMedia(event.session_id, event.reason)]
            self.ended_by_gateway += 1
            log.info("%s: %s: the stream ended: %s; ending the session (BYE)", self._label, session.what, event.reason)
            return self._end(session, event.reason, now)
        if session is None or session.state != "opening":
            gone = "the session ended before its media was ready (CANCEL, or the platform lost)"
            return [StopMedia(event.session_id, gone)] if isinstance(event, MediaReady) else []
        if isinstance(event, MediaFailed):
            self._forget(session)
            refusal = _Refusal(event.status, event.cause, event.reason, session.camera_id)
            return [self._refuse(session.invite, refusal, now, session)]
        host = self._device.contact.rsplit(":", 1)[0]
        try:
            answer = build_answer(session.offer, username=session.channel_id, address=host, port=event.port,
                                  ssrc=ssrc_to_y(session.ssrc), media_format=event.media_format).encode()
        except ValueError as error:
            self._forget(session)
            refusal = _Refusal(500, "media_error", f"cannot write the SDP answer: {error}", session.camera_id)
            return [self._refuse(session.invite, refusal, now, session),
                    StopMedia(session.session_id, refusal.reason)]
        session.state, session.answer = "answered", answer
        self._dialogs[session.dialog] = session
        log.info("%s: %s: answering 200 OK, media from %s:%d (SSRC %s)", self._label, session.what, host,
                 event.port, ssrc_to_y(session.ssrc))
        return [self._final(session, self._answer(session, session.invite, answer), now, starts=True)]

    def tend(self, now: float) -> list[Action]:
        """Resend unacknowledged final answers (timer G); give them up after 64*T1 (timer H)."""
        actions: list[Action] = []
        for key, unacked in list(self._unacked.items()):
            if now >= unacked.give_up_at:
                del self._unacked[key]
                session = self._sessions.get(unacked.starts) if unacked.starts is not None else None
                if session is not None and session.state == "answered":
                    self.ended_by_gateway += 1
                    reason = f"the platform did not acknowledge the 200 OK within {ACK_WAIT_S:g} s (no ACK)"
                    log.warning("%s: %s: %s; ending the session (BYE)", self._label, session.what, reason)
                    actions += self._end(session, reason, now)
            elif unacked.resend_at is not None and now >= unacked.resend_at:
                unacked.interval = min(unacked.interval * 2, T2)
                unacked.resend_at = now + unacked.interval
                actions.append(Send(unacked.response))
        return actions

    def next_wakeup(self) -> float | None:
        times = [u.give_up_at for u in self._unacked.values()]
        times += [u.resend_at for u in self._unacked.values() if u.resend_at is not None]
        return min(times) if times else None

    def end_all(self, reason: str, now: float) -> list[Action]:
        """Every session ends (the platform is lost, the gateway stops): BYE where there is a
        dialog (nothing goes out when the link is down), 480 to an INVITE still being set up."""
        actions: list[Action] = []
        if self._sessions:
            log.info("%s: ending %d video session(s): %s", self._label, len(self._sessions), reason)
        for session in list(self._sessions.values()):
            if session.state == "opening":
                self._forget(session)
                actions += [self._final(session, self._response(session.invite, 480, session.local_tag, reason), now,
                                        starts=False), StopMedia(session.session_id, reason)]
            else:
                actions += self._end(session, reason, now)
        self._unacked.clear()
        return actions

    def health(self) -> dict[str, Any]:
        return {
            "live_streams": len(self._sessions),
            "live_streams_by_camera": dict(Counter(s.camera_id for s in self._sessions.values())),
            "live_invites": self.invites,
            "live_refused": dict(self.refused),
            "live_ended_by_gateway": self.ended_by_gateway,
            "live_ended_by_platform": self.ended_by_platform,
        }

    # ------------------------------------------------------------------ building and ending

    def _end(self, session: InviteSession, reason: str, now: float) -> list[Action]:
        """BYE for the session's dialog, and the media stopped."""
        self._forget(session)
        invite = session.invite
        target, routes = _request_target(invite)
        request = self._device.new_request(
            "BYE", target, call_id=invite.call_id, from_value=with_tag(invite.get("To") or "", session.local_tag),
            to_value=invite.get("From") or "")
        for route in routes:
            request.add("Route", route)
        return self._device.send_request(request, "bye", now) + [StopMedia(session.session_id, reason)]

    def _answer(self, session: InviteSession, request: SipRequest, sdp: bytes) -> SipResponse:
        response = response_to(request, 200, "OK", session.local_tag)
        response.add("Contact", f"<sip:{session.channel_id}@{self._device.contact}>")
        for record_route in request.get_all("Record-Route"):
            response.add("Record-Route", record_route)
        response.add("Content-Type", SDP_TYPE)
        response.body = sdp
        return response

    def _final(self, session: InviteSession, response: SipResponse, now: float, *, starts: bool,
               request: SipRequest | None = None) -> Send:
        """Send a final answer to the session's INVITE (or to `request`, a re-INVITE) and keep
        resending it until the ACK: a 2xx on any transport, others over UDP only."""
        request = request or session.invite
        resend = response.status < 300 or self._device.settings.transport == "UDP"
        while len(self._unacked) >= MAX_UNACKED:
            del self._unacked[next(iter(self._unacked))]  # the oldest: the platform has long gone quiet on it
        self._unacked[(request.call_id, request.cseq[0], _from_tag(request))] = _Unacked(
            response, session.session_id if starts else None, now + T1 if resend else None, T1, now + ACK_WAIT_S)
        return self._remember(_key(request), response, now)

    def _refuse(self, request: SipRequest, refusal: _Refusal, now: float, session: InviteSession | None = None) -> Send:
        self.refused[refusal.cause] += 1
        channel = uri_user(request.uri) or "?"
        who = f"camera {refusal.camera} (channel {channel})" if refusal.camera else f"channel {channel[:24]}"
        self._log_limiter.log(log, logging.WARNING, f"invite:{refusal.cause}",
                              "%s: refused an INVITE for %s: %d %s: %s", self._label, who, refusal.status,
                              REASONS.get(refusal.status, ""), refusal.reason, now=now)
        tag = session.local_tag if session else secrets.token_hex(6)
        response = self._response(request, refusal.status, tag, refusal.reason)
        if session is None:  # refused at once, before any 100 Trying: the platform resends the INVITE if lost
            return self._remember(_key(request), response, now)
        return self._final(session, response, now, starts=False)

    def _plain(self, request: SipRequest, status: int, reason: str, now: float, tag: str | None = None) -> Send:
        log.info("%s: answered %s with %d: %s", self._label, request.summary()[:120], status, reason)
        return self._remember(_key(request), self._response(request, status, tag or secrets.token_hex(6), reason), now)

    def _response(self, request: SipRequest, status: int, tag: str, reason: str) -> SipResponse:
        response = response_to(request, status, REASONS.get(status, "Error"), tag)
        text = " ".join(reason.replace('"', "'").split())[:200]
        response.add("Warning", f'399 {self._device.settings.device_id} "{text}"')
        return response

    def _forget(self, session: InviteSession) -> None:
        self._sessions.pop(session.session_id, None)
        self._dialogs.pop(session.dialog, None)
        self._by_invite.pop(session.invite_key, None)
        for unacked in self._unacked.values():
            if unacked.starts == session.session_id:
                unacked.starts, unacked.resend_at = None, None  # nothing to start, nothing to resend

    def _new_ssrc(self, kind: MediaKind) -> int:
        """An SSRC as GB/T 28181 makes them when the offer has none: 0 live / 1 history, digits
        4-8 of the SIP domain, then a random stream number."""
        domain = self._device.settings.domain
        middle = domain[3:8] if domain[:8].isdigit() and len(domain) >= 8 else "00000"
        return int(f"{0 if kind == 'live' else 1}{middle}{secrets.randbelow(10_000):04d}")


def _invite_key(request: SipRequest) -> tuple[str, str]:
    """The server transaction of the INVITE a request (the INVITE itself, or its CANCEL) belongs to."""
    return _key(request)[0], "INVITE"


def _from_tag(request: SipRequest) -> str:
    return header_params(request.get("From") or "").get("tag", "")


def _normalised(sdp: bytes) -> list[str]:
    return [line.strip() for line in sdp.decode("utf-8", "replace").splitlines() if line.strip()]


def _speed(offer: InviteOffer) -> float:
    """How fast a recording is sent: a Download's `a=downloadspeed` (1..16), else real time."""
    if offer.session != "Download":
        return 1.0
    value = next((v for name, v in offer.attributes if name == "downloadspeed"), "1")
    try:
        return min(MAX_DOWNLOAD_SPEED, max(1.0, float(value)))
    except ValueError:
        return 1.0


def _request_target(invite: SipRequest) -> tuple[str, list[str]]:
    """The Request-URI and Route headers of a request in the INVITE's dialog (RFC 3261
    12.2.1.1): the remote target is the INVITE's Contact (its From without one), the route set
    its Record-Route values in order; a first route without `lr` is a strict router."""
    target = uri_of(invite.get("Contact") or "") or uri_of(invite.get("From") or "")
    routes = [value for header in invite.get_all("Record-Route") for value in _split_values(header)]
    if not routes or "lr" in _uri_params(uri_of(routes[0])):
        return target, routes
    return uri_of(routes[0]).split(";", 1)[0], [*routes[1:], f"<{target}>"]


def _uri_params(uri: str) -> set[str]:
    return {part.split("=", 1)[0].strip().lower() for part in uri.split(";")[1:]}


def _split_values(header: str) -> list[str]:
    """'<sip:a;lr>, <sip:b;lr>' -> both values: commas inside <> or quotes do not split."""
    values, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(header):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "<>":
            depth += 1 if char == "<" else -1
        elif not quoted and depth == 0 and char == ",":
            values.append(header[start:index].strip())
            start = index + 1
    values.append(header[start:].strip())
    return [value for value in values if value]
