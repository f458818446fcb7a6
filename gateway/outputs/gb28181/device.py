"""The gateway as a GB/T 28181 device: registration, keepalives, alarms, answers. Pure logic.

One file because `Gb28181Device` is one state machine: registration, keepalives, alarms and the
platform's requests share its transactions, registration and timers. What the answers to the
platform's queries and controls say is `queries`, its subscriptions `subscriptions`; SIP,
digest and MANSCDP encoding are sibling modules too.

`Gb28181Device` is a state machine without sockets, threads or a clock of its own: the
transport feeds it what arrives (`receive`), the passing of time (`tick`, with `next_wakeup`
saying when) and the alarms to send (`send_alarm`), and carries out the `Send` actions it
returns. So every rule below is unit-tested with a fake clock, and the transport stays small.

The rules:
- Registration: REGISTER, answered with 401 + a digest challenge, then REGISTER with
  `Authorization` (username = device ID). Refreshed at 3/4 of the granted lifetime (same
  Call-ID, RFC 3261 10.2.4); a new registration (the first, after any failure) has a new
  Call-ID and starts from a fresh challenge: no credentials until the platform has issued a
  nonce for it. Refreshes answer the current nonce with nc counting 1..9 and then start from a
  fresh challenge again, so nc never holds a hex letter: WVP upper-cases nc before hashing, and
  answers a digest that does not match with 403, never a new 401. A 403 to a digest answer that
  reused a nonce is retried once from a fresh challenge before it counts as refused credentials;
  a 401 to credentials for the same nonce means a wrong password; those, other refusals and no
  answer within `answer_timeout_s` are failures: retried after a capped, jittered backoff
  (`retry_max_s`). The Date of the 200 (the platform's time, GB/T 28181 校时) gives the clock
  skew, reported, never applied.
- Keepalive: a MANSCDP Keepalive MESSAGE every `keepalive_s` while registered. Each one (or
  alarm) left unanswered counts as a miss; `max_missed_keepalives` misses in a row, or a
  refusal (401/403/404/481: the platform forgot the device), mean registering again.
- Alarms: a MESSAGE per alarm; the outcome (answered 2xx, refused, no answer, not registered)
  comes back as `AlarmOutcome` for the alarm's token.
- The platform's requests: MESSAGE queries and controls are answered 200 OK and then as
  `queries` says (a Response MESSAGE at once, or a `CameraJob` whose result comes back through
  `job_done`); SUBSCRIBE as `subscriptions` says; OPTIONS 200; INVITE, ACK, BYE, CANCEL as
  `invites` says (the video sessions, ended when the platform is lost: `media_event` in).
  Only the platform (From = its ID) is served (the transport drops what does not come from
  its address); retransmitted requests get the same answer and are not processed twice.
- UDP requests are retransmitted (timer E: 0.5 s doubling to 4 s) until answered.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from gateway.backoff import Backoff
from gateway.outputs.gb28181 import manscdp
from gateway.outputs.gb28181.actions import (
    Action,
    AlarmOutcome,
    CameraJob,
    DeviceCounters,
    DeviceSettings,
    Disconnect,
    MediaEvent,
    Send,
)
from gateway.outputs.gb28181.digest import Challenge, DigestError, authorization, parse_challenge
from gateway.outputs.gb28181.manscdp import Channel
from gateway.outputs.gb28181.serving import USER_AGENT, PlatformRequests
from gateway.outputs.gb28181.sip import (
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    header_params,
    new_branch,
    new_call_id,
    new_tag,
    parse_date,
)

__all__ = ["Action", "AlarmOutcome", "CameraJob", "DeviceCounters", "DeviceSettings", "Disconnect",
           "Gb28181Device", "Send"]

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
"""RFC 3261 timers: first retransmission interval and its cap (UDP)."""
REFRESH_AT = 0.75
"""Refresh a registration after this share of its lifetime."""
FORGOTTEN = frozenset({401, 403, 404, 481})
"""Answers to a MESSAGE meaning the platform no longer knows the device: register again."""
MAX_NONCE_COUNT = 9
"""Refreshes answer one nonce at most this often: nc stays a decimal digit (see the docstring)."""
CLOCK_SKEW_WARN_S = 10.0
"""The platform's clock this far from ours: say so (alarm times and recordings are compared)."""

State = Literal["stopped", "registering", "registered", "waiting"]


@dataclass
class _Transaction:
    """A request the gateway sent, waiting for its final answer."""

    request: SipRequest
    purpose: Literal["register", "unregister", "keepalive", "alarm", "answer", "notify", "bye"]
    deadline: float
    retransmit_at: float | None
    interval: float = T1
    token: int | None = None
    subscription: tuple[str, str] | None = None


@dataclass
class _Registration:
    """One registration binding: Call-ID and From tag live as long as it does."""

    call_id: str
    from_tag: str
    challenge: Challenge | None = None
    nonce_count: int = 0
    sent_with_nonce: str | None = None
    challenges_answered: int = 0
    fresh_retry_used: bool = False
    expires: int = 0


@dataclass
class _Timers:
    retry_at: float | None = None
    refresh_at: float | None = None
    keepalive_at: float | None = None


class Gb28181Device:
    """The device side of GB/T 28181 as a state machine (see the module docstring)."""

    def __init__(
        self,
        settings: DeviceSettings,
        *,
        channels: Callable[[], Sequence[Channel]],
        local_time: Callable[[], str],
        backoff: Backoff,
        label: str = "GB/T 28181 platform",
        wall_clock: Callable[[], datetime] | None = None,
        alarming: Callable[[], frozenset[str]] = frozenset,
        recording: Callable[[], bool] = lambda: False,
        can_control: bool = False,
        has_records: bool = False,
    ) -> None:
        """channels: the catalogue now; local_time: 'YYYY-MM-DDTHH:MM:SS' now; wall_clock: the
        aware time now (for the clock skew); alarming: channel ids with an alarm raised now;
        recording: a clip being written now; can_control/has_records: whether PTZ and
        recordings can be asked of the cameras (`CameraJob`s)."""
        self.settings = settings
        self._wall_clock = wall_clock
        self._backoff = backoff
        self._label = label
        self.clock_skew_s: float | None = None
        self.state: State = "stopped"
        self.last_error: str | None = None
        self.missed = 0
        self.counters = DeviceCounters()
        self.registered_since: float | None = None
        self._local: tuple[str, int] | None = None
        self._link_up = False
        self._registration: _Registration | None = None
        self._transactions: dict[tuple[str, str], _Transaction] = {}
        self._timers = _Timers()
        self._cseq = 0
        self._sn = secrets.randbelow(10_000)
        self.to_tag = new_tag()
        self._serving = PlatformRequests(self, self.counters, label=label, channels=channels, local_time=local_time,
                                         alarming=alarming, recording=recording, can_control=can_control,
                                         has_records=has_records)

    # ------------------------------------------------------------------ inputs from the transport

    def start(self, now: float) -> list[Action]:
        """Begin: register as soon as the link is up (`link_up`)."""
        self.state = "waiting"
        self._timers.retry_at = now
        return self.tick(now)

    def link_up(self, local: tuple[str, int], now: float) -> list[Action]:
        """The socket is ready (UDP bound, TCP connected) with this address for Via and Contact:
        register on it, after the backoff wait of a previous failure if one is running."""
        self._local = local
        self._link_up = True
        if self.state == "waiting" and self._timers.retry_at is not None:
            self._timers.retry_at = max(now, self._timers.retry_at)
        return self.tick(now)

    def link_down(self, reason: str, now: float) -> list[Action]:
        """TCP connection lost: everything in flight failed, the registration with it."""
        self._link_up = False
        actions = self._fail_all(f"connection lost ({reason})", now)
        if self.state in ("registered", "registering"):
            actions += self._registration_failed(f"connection to the platform lost ({reason})", now)
        return actions

    def tick(self, now: float) -> list[Action]:
        """Timers: retransmissions, timeouts, registration retry and refresh, keepalives."""
        actions: list[Action] = []
        for key, transaction in list(self._transactions.items()):
            if key not in self._transactions:
                continue  # ended by an earlier timeout's consequences
            if now >= transaction.deadline:
                del self._transactions[key]
                actions += self._timed_out(transaction, now)
            elif transaction.retransmit_at is not None and now >= transaction.retransmit_at:
                transaction.interval = min(transaction.interval * 2, T2)
                transaction.retransmit_at = now + transaction.interval
                actions.append(Send(transaction.request))
        self._serving.forget_old_answers(now)
        if not self._link_up or self.state == "stopped":
            return actions
        actions += self._serving.tend(now)
        if self.state == "waiting" and self._due(self._timers.retry_at, now):
            actions += self._register(now, fresh=True)
        elif self.state == "registered":
            if self._due(self._timers.refresh_at, now):
                self._timers.refresh_at = None
                actions += self._register(now, fresh=False)
            if self._due(self._timers.keepalive_at, now):
                actions += self._send_keepalive(now)
        return actions

    def next_wakeup(self) -> float | None:
        """The earliest time `tick` has something to do (None: only input can change anything)."""
        times = [t.deadline for t in self._transactions.values()]
        times += [t.retransmit_at for t in self._transactions.values() if t.retransmit_at is not None]
        if self._link_up and self.state == "waiting" and self._timers.retry_at is not None:
            times.append(self._timers.retry_at)
        if self.state == "registered":
            times += [t for t in (self._timers.refresh_at, self._timers.keepalive_at) if t is not None]
        if (serving := self._serving.next_wakeup()) is not None:
            times.append(serving)
        return min(times) if times else None

    def receive(self, message: SipMessage, now: float) -> list[Action]:
        if isinstance(message, SipResponse):
            return self._on_response(message, now)
        assert isinstance(message, SipRequest)
        return self._serving.receive(message, now)

    def send_alarm(self, token: int, notice: manscdp.Alarm, now: float) -> list[Action]:
        """Send one alarm; its `AlarmOutcome` comes now (not registered) or with the answer."""
        if self.state != "registered":
            detail = f"; last error: {self.last_error}" if self.last_error else ""
            return [AlarmOutcome(token, f"not registered with the platform ({self.state}{detail})")]
        self.counters.alarms_sent += 1
        body = manscdp.alarm(notice, self.next_sn())
        return self.send_request(self.message_request(body), "alarm", now, token=token) + \
            self._serving.notify_alarm(body, now)

    def job_done(self, job_id: int, result: object, error: str | None, now: float) -> list[Action]:
        """A `CameraJob` finished (error: why it failed): answer the platform as `queries` says."""
        return self._serving.job_done(job_id, result, error, now)

    def media_event(self, event: MediaEvent, now: float) -> list[Action]:
        """The transport's media for an INVITE is ready, failed, or ended by itself (`invites`)."""
        return self._serving.media_event(event, now)

    def abandon(self, token: int) -> None:
        """The sender stopped waiting for this alarm: a late answer produces no outcome."""
        for transaction in self._transactions.values():
            if transaction.token == token:
                transaction.token = None

    def unregister(self, now: float) -> list[Action]:
        """Say goodbye (REGISTER with Expires: 0) if registered; the device is stopped after."""
        actions = self._fail_all("the gateway is stopping", now)
        if self.state == "registered" and self._registration is not None and self._link_up:
            actions += self.send_request(self._register_request(expires=0), "unregister", now)
        self.state = "stopped"
        return actions

    @property
    def busy_unregistering(self) -> bool:
        return any(t.purpose == "unregister" for t in self._transactions.values())

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "registered": self.state == "registered",
            "local": self.contact if self._local else None,
            "missed_keepalives": self.missed,
            "last_error": self.last_error,
            "clock_skew_s": None if self.clock_skew_s is None else round(self.clock_skew_s, 1),
            "subscriptions": self._serving.subscriptions,
            **self._serving.live_health(),
            **vars(self.counters),
        }

    # ------------------------------------------------------------------ registration

    def _register(self, now: float, *, fresh: bool) -> list[Action]:
        """A new registration (fresh: new Call-ID, no credentials until challenged) or a refresh."""
        if fresh or self._registration is None:
            self._registration = _Registration(call_id=new_call_id(self._host), from_tag=new_tag())
        if fresh:
            self.state = "registering"
        return self.send_request(self._register_request(self.settings.expires_s), "register", now)

    def _register_request(self, expires: int) -> SipRequest:
        registration = self._registration
        assert registration is not None
        own = f"<sip:{self.settings.device_id}@{self.settings.domain}>"
        request = self.new_request("REGISTER", self._platform_uri, call_id=registration.call_id,
                                from_value=f"{own};tag={registration.from_tag}", to_value=own)
        request.add("Contact", f"<sip:{self.settings.device_id}@{self.contact}>")
        request.add("Expires", str(expires))
        registration.sent_with_nonce = None
        if registration.challenge is not None and registration.nonce_count >= MAX_NONCE_COUNT:
            registration.challenge = None  # start from a fresh challenge: nc stays a digit
        if registration.challenge is not None:
            registration.nonce_count += 1
            registration.sent_with_nonce = registration.challenge.nonce
            request.add("Authorization", authorization(
                registration.challenge, username=self.settings.device_id, password=self.settings.password,
                method="REGISTER", uri=self._platform_uri, nonce_count=registration.nonce_count,
                cnonce=secrets.token_hex(8)))
        return request

    def _on_register_answer(self, transaction: _Transaction, response: SipResponse, now: float) -> list[Action]:
        registration = self._registration
        if registration is None or response.call_id != registration.call_id:
            return []  # the answer to a registration given up since
        if 200 <= response.status < 300:
            return self._registered(response, now)
        if response.status in (401, 407):
            return self._answer_challenge(registration, response, now)
        if response.status == 423 and (response.get("Min-Expires") or "").isdigit():
            self.settings = replace(self.settings, expires_s=int(response.get("Min-Expires") or 0))
            return self._register(now, fresh=False)
        if (response.status == 403 and registration.sent_with_nonce is not None and registration.nonce_count > 1
                and not registration.fresh_retry_used):
            # a reused nonce refused (WVP answers a digest it cannot match with 403): ask anew
            log.info("%s: 403 to a digest answer with a reused nonce; asking for a fresh challenge", self._label)
            registration.fresh_retry_used, registration.challenge = True, None
            return self.send_request(self._register_request(self.settings.expires_s), "register", now)
        hint = " (check device_id, the password and that the device is added on the platform)" \
            if response.status == 403 else ""
        return self._registration_failed(
            f"the platform refused the registration: {response.status} {response.reason}{hint}", now)

    def _answer_challenge(self, registration: _Registration, response: SipResponse, now: float) -> list[Action]:
        header = response.get("WWW-Authenticate") or response.get("Proxy-Authenticate")
        if header is None:
            return self._registration_failed(f"{response.status} without a digest challenge", now)
        try:
            challenge = parse_challenge(header)
        except DigestError as error:
            return self._registration_failed(f"cannot answer the platform's challenge: {error}", now)
        if registration.sent_with_nonce == challenge.nonce and not challenge.stale:
            return self._registration_failed(
                "the platform refused the password (401 after a digest answer): check password "
                "and device_id against the platform's device entry", now)
        registration.challenges_answered += 1
        if registration.challenges_answered > 3:
            return self._registration_failed(
                "the platform refused every digest answer, with a new nonce each time (401 loop): check "
                "password and device_id against the platform's device entry", now)
        registration.challenge = challenge
        registration.nonce_count = 0
        return self.send_request(self._register_request(self.settings.expires_s), "register", now)

    def _registered(self, response: SipResponse, now: float) -> list[Action]:
        registration = self._registration
        assert registration is not None
        granted = _granted_expires(response, self.settings.expires_s)
        registration.expires = granted
        registration.challenges_answered = 0
        registration.fresh_retry_used = False
        self._read_platform_clock(response)
        first = self.state != "registered"
        self.state = "registered"
        self.last_error = None
        self.missed = 0
        self._backoff.reset()
        self._timers.refresh_at = now + granted * REFRESH_AT
        if not first:
            self.counters.refreshes += 1
        else:
            self.counters.registrations += 1
            self.registered_since = now
            self._timers.keepalive_at = now  # the first keepalive at once: proves the path both ways
            log.info("%s: registered as %s for %d s; keepalive every %g s", self._label,
                     self.settings.device_id, granted, self.settings.keepalive_s)
        return self.tick(now)

    def _read_platform_clock(self, response: SipResponse) -> None:
        """The Date of the platform's 200 (its time, GB/T 28181 校时): the skew is reported in
        health and logged when large; the gateway's clock is NTP's business, never set here."""
        date = response.get("Date")
        if date is None or self._wall_clock is None:
            return
        ours = self._wall_clock()
        theirs = parse_date(date, ours.tzinfo or ours.astimezone().tzinfo)  # type: ignore[arg-type]
        if theirs is None:
            log.debug("%s: unreadable Date %r in the REGISTER answer", self._label, date[:40])
            return
        skew = (theirs - ours).total_seconds()
        if abs(skew) > CLOCK_SKEW_WARN_S and (self.clock_skew_s is None or abs(skew - self.clock_skew_s) > 1):
            log.warning("%s: the platform's clock is %+.0f s from the gateway's (Date %s): alarm times will "
                        "look off by that much on the platform; check NTP on both", self._label, skew, date[:40])
        self.clock_skew_s = skew

    def _registration_failed(self, reason: str, now: float, *, silent_platform: bool = False) -> list[Action]:
        """Registering did not work: wait (backoff), then start a new registration. Over TCP a
        platform that stopped answering gets a new connection too (the old one may be dead)."""
        self.counters.registration_failures += 1
        self.last_error = reason
        self.state = "waiting"
        self.registered_since = None
        self._timers.refresh_at = self._timers.keepalive_at = None
        delay = self._backoff.next_delay()
        self._timers.retry_at = now + delay
        log.warning("%s: %s; registering again in %.1f s", self._label, reason, delay)
        for key, transaction in list(self._transactions.items()):
            if transaction.purpose == "register":
                del self._transactions[key]
        if silent_platform and self.settings.transport == "TCP":
            return [Disconnect(reason)]
        return []

    def _lost_registration(self, reason: str, now: float, *, silent_platform: bool = False) -> list[Action]:
        """Registered, but the platform stopped answering or forgot the device: register anew at
        once (over a new connection if TCP and the platform went silent)."""
        log.warning("%s: %s; registering again", self._label, reason)
        self.last_error = reason
        self.state = "waiting"
        self.registered_since = None
        self._timers.refresh_at = self._timers.keepalive_at = None
        self._timers.retry_at = now
        ended = self._serving.end_sessions(f"the platform is lost ({reason})", now)
        if silent_platform and self.settings.transport == "TCP":
            return [*ended, Disconnect(reason)]
        return ended + self.tick(now)

    # ------------------------------------------------------------------ keepalive and alarms

    def _send_keepalive(self, now: float) -> list[Action]:
        self._timers.keepalive_at = now + self.settings.keepalive_s
        self.counters.keepalives_sent += 1
        body = manscdp.keepalive(self.settings.device_id, self.next_sn())
        return self.send_request(self.message_request(body), "keepalive", now)

    def _on_message_answer(self, transaction: _Transaction, response: SipResponse, now: float) -> list[Action]:
        actions: list[Action] = []
        ok = 200 <= response.status < 300
        if transaction.purpose == "notify":
            return self._serving.notify_done(transaction.subscription, response.status, now)
        if ok:
            self.missed = 0
        if transaction.purpose == "keepalive" and ok:
            self.counters.keepalives_answered += 1
        elif transaction.purpose == "answer" and ok:
            self.counters.answers_acknowledged += 1
        elif transaction.purpose == "alarm":
            error = None if ok else f"the platform answered the alarm with {response.status} {response.reason}"
            actions += self._alarm_ended(transaction, error)
        if not ok and response.status in FORGOTTEN and self.state == "registered":
            what = {"keepalive": "a keepalive", "alarm": "an alarm"}.get(transaction.purpose, "a message")
            actions += self._lost_registration(
                f"the platform answered {what} with {response.status} {response.reason} "
                "(it no longer knows the device)", now)
        return actions

    def _timed_out(self, transaction: _Transaction, now: float) -> list[Action]:
        waited = f"no answer within {self.settings.answer_timeout_s:g} s"
        method = transaction.request.method
        if transaction.purpose == "register":
            return self._registration_failed(f"{waited} to REGISTER", now, silent_platform=True)
        if transaction.purpose == "notify":
            return self._serving.notify_done(transaction.subscription, None, now)
        if transaction.purpose in ("unregister", "bye"):
            return []
        actions: list[Action] = []
        if transaction.purpose == "alarm":
            actions += self._alarm_ended(transaction, f"{waited} to the alarm MESSAGE")
        if self.state == "registered" and transaction.purpose in ("keepalive", "alarm"):
            self.missed += 1
            if self.missed >= self.settings.max_missed_keepalives:
                actions += self._lost_registration(
                    f"{self.missed} messages in a row unanswered ({waited} to {method})", now, silent_platform=True)
        return actions

    # ------------------------------------------------------------------ responses to our requests

    def _on_response(self, response: SipResponse, now: float) -> list[Action]:
        try:
            key = (response.branch, response.cseq[1])
        except SipParseError:
            return []
        transaction = self._transactions.get(key)
        if transaction is None:
            log.debug("%s: late or unknown answer %s ignored", self._label, response.summary())
            return []
        if response.status < 200:
            transaction.interval = T2
            if transaction.retransmit_at is not None:
                transaction.retransmit_at = now + T2
            return []
        del self._transactions[key]
        if transaction.purpose == "register":
            return self._on_register_answer(transaction, response, now)
        if transaction.purpose in ("unregister", "bye"):
            return []
        return self._on_message_answer(transaction, response, now)

    # ------------------------------------------------------------------ building and sending

    def send_request(self, request: SipRequest, purpose: Any, now: float, token: int | None = None,
                     subscription: tuple[str, str] | None = None) -> list[Action]:
        """Send a request and keep its transaction (retransmissions, timeout, answer)."""
        if not self._link_up:
            if token is not None:
                return [AlarmOutcome(token, "not connected to the platform")]
            return []
        retransmit = now + T1 if self.settings.transport == "UDP" else None
        self._transactions[(request.branch, request.method)] = _Transaction(
            request, purpose, now + self.settings.answer_timeout_s, retransmit, T1, token, subscription)
        return [Send(request)]

    def message_request(self, body: bytes) -> SipRequest:
        own = f"<sip:{self.settings.device_id}@{self.settings.domain}>"
        request = self.new_request("MESSAGE", self._platform_uri, call_id=new_call_id(self._host),
                                from_value=f"{own};tag={new_tag()}", to_value=f"<{self._platform_uri}>")
        request.add("Content-Type", manscdp.CONTENT_TYPE)
        request.body = body
        return request

    def new_request(self, method: str, uri: str, *, call_id: str, from_value: str, to_value: str) -> SipRequest:
        self._cseq += 1
        request = SipRequest(method=method, uri=uri)
        request.add("Via", f"SIP/2.0/{self.settings.transport} {self._host}:{self._port};rport;branch={new_branch()}")
        request.add("From", from_value)
        request.add("To", to_value)
        request.add("Call-ID", call_id)
        request.add("CSeq", f"{self._cseq} {method}")
        request.add("Max-Forwards", "70")
        request.add("User-Agent", USER_AGENT)
        return request

    def _alarm_ended(self, transaction: _Transaction, error: str | None) -> list[Action]:
        """Count how an alarm ended; its sender learns it unless it stopped waiting (abandon)."""
        if error is None:
            self.counters.alarms_delivered += 1
        else:
            self.counters.alarms_failed += 1
        return [AlarmOutcome(transaction.token, error)] if transaction.token is not None else []

    def _fail_all(self, reason: str, now: float) -> list[Action]:
        actions: list[Action] = []
        for transaction in self._transactions.values():
            if transaction.purpose == "alarm":
                actions += self._alarm_ended(transaction, reason)
        self._transactions.clear()
        self._serving.forget_notifies()
        return actions + self._serving.end_sessions(reason, now)

    def next_sn(self) -> int:
        self._sn = self._sn % 999_999_999 + 1
        return self._sn

    @property
    def contact(self) -> str:
        """host:port the platform reaches the device at (Via, Contact)."""
        return f"{self._host}:{self._port}"

    @property
    def _platform_uri(self) -> str:
        return f"sip:{self.settings.platform_id}@{self.settings.domain}"

    @property
    def _host(self) -> str:
        return self._local[0] if self._local else "0.0.0.0"

    @property
    def _port(self) -> int:
        return self._local[1] if self._local else 0

    @staticmethod
    def _due(moment: float | None, now: float) -> bool:
        return moment is not None and now >= moment


def _granted_expires(response: SipResponse, asked: int) -> int:
    """The lifetime the registrar granted: Contact's expires, else Expires, else what was asked."""
    for contact in response.get_all("Contact"):
        value = header_params(contact).get("expires", "")
        if value.isdigit():
            return max(1, int(value))
    value = (response.get("Expires") or "").strip()
    return max(1, int(value)) if value.isdigit() else asked
