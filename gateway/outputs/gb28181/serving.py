"""The device's server side: the platform's requests to the gateway. Pure, like the device.

`PlatformRequests` is the UAS half of `Gb28181Device` (the device keeps registration,
keepalives, alarms and the transactions it starts): it answers each request once (a
retransmission gets the same answer, RFC 3261 17.2), refuses what is not from the platform
(log lines rate-limited: the network decides how often they come), hands queries and controls
to `queries`, subscriptions to `subscriptions` and INVITE dialogs (INVITE, ACK, BYE, CANCEL,
INFO) to `invites`, keeps the `CameraJob`s in flight, and sends its Responses, NOTIFYs and BYEs
through the device, which owns their transactions.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from gateway.logs import LogLimiter
from gateway.outputs.gb28181 import manscdp, queries
from gateway.outputs.gb28181.actions import Action, CameraJob, DeviceCounters, DeviceSide, MediaEvent, Send
from gateway.outputs.gb28181.invites import InviteSessions
from gateway.outputs.gb28181.manscdp import Channel, ManscdpError
from gateway.outputs.gb28181.sip import SipRequest, SipResponse, response_to, server_key, uri_of, uri_user
from gateway.outputs.gb28181.subscriptions import Subscription, Subscriptions, catalog_changes, notify

log = logging.getLogger("gateway.outputs.gb28181.device")

SERVER_MEMORY_S = 32.0
SERVER_MEMORY_MAX = 256
USER_AGENT = "edge-gateway GB/T 28181"
ALLOW = "REGISTER, MESSAGE, SUBSCRIBE, NOTIFY, OPTIONS, INVITE, ACK, BYE, CANCEL"
DIALOG_METHODS = frozenset({"INVITE", "BYE", "CANCEL", "INFO"})


class PlatformRequests:
    """Answers the platform's requests for `device` (see the module docstring)."""

    def __init__(self, device: DeviceSide, counters: DeviceCounters, *, label: str,
                 channels: Callable[[], Sequence[Channel]], local_time: Callable[[], str],
                 alarming: Callable[[], frozenset[str]], recording: Callable[[], bool],
                 can_control: bool, has_records: bool) -> None:
        self._device = device
        self._counters = counters
        self._label = label
        self._channels, self._local_time = channels, local_time
        self._alarming, self._recording = alarming, recording
        self._can_control, self._has_records = can_control, has_records
        self._to_tag = device.to_tag
        self._answered: OrderedDict[tuple[str, str], tuple[float, SipResponse]] = OrderedDict()
        self._subscriptions = Subscriptions(device.settings.device_id, self._to_tag)
        self._catalog_seen: dict[str, Channel] = {}
        self._jobs: dict[int, CameraJob] = {}
        self._notifying: dict[tuple[str, str], Subscription] = {}
        """Subscriptions with a NOTIFY in flight (their next ones wait in `queued`)."""
        self._next_job = 0
        self._log_limiter = LogLimiter(burst=5, window_s=60.0)
        self._invites = InviteSessions(device, label=label, channels=channels, remember=self._remember)

    @property
    def _device_id(self) -> str:
        return self._device.settings.device_id

    @property
    def subscriptions(self) -> int:
        return len(self._subscriptions)

    def live_health(self) -> dict[str, Any]:
        """The INVITE sessions: open per camera, refused by cause (see `InviteSessions.health`)."""
        return self._invites.health()

    def media_event(self, event: MediaEvent, now: float) -> list[Action]:
        """How the transport's `OpenMedia` went, or a stream that ended by itself."""
        return self._invites.media_event(event, now)

    def end_sessions(self, reason: str, now: float) -> list[Action]:
        """Every INVITE session ends (platform lost, gateway stopping): BYE, StopMedia."""
        return self._invites.end_all(reason, now)

    def next_wakeup(self) -> float | None:
        times = [t for t in (self._subscriptions.next_expiry(), self._invites.next_wakeup()) if t is not None]
        if self._answered:
            times.append(next(iter(self._answered.values()))[0] + SERVER_MEMORY_S)
        return min(times) if times else None

    def notify_alarm(self, body: bytes, now: float) -> list[Action]:
        """An alarm also goes as a NOTIFY to every Alarm subscription."""
        actions: list[Action] = []
        for subscription in self._subscriptions.of_kind("Alarm"):
            actions += self._notify(subscription, body, now)
        return actions

    def notify_done(self, key: tuple[str, str] | None, status: int | None, now: float) -> list[Action]:
        """A NOTIFY was answered (status) or timed out (None): the subscription's next NOTIFY
        may go; 481/489 mean the platform forgot the subscription."""
        if key is None:
            return []
        if status in (481, 489) and self._subscriptions.forget(key) is not None:
            log.info("%s: the platform ended a subscription (%d to its NOTIFY)", self._label, status)
        subscription = self._notifying.pop(key, None)
        if subscription is None or not subscription.queued:
            return []
        return self._send_notify(subscription, subscription.queued.pop(0), now)

    def job_done(self, job_id: int, result: object, error: str | None, now: float) -> list[Action]:
        """A `CameraJob` finished (error: why it failed): answer the platform as `queries` says."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return []
        reply = queries.job_answer(job, result, error)
        if error is not None:
            self._counters.controls_refused += 1
        log.log(logging.WARNING if error else logging.INFO, "%s: %s", self._label, reply.note)
        return self._send_answers(reply.bodies, now)

    def receive(self, request: SipRequest, now: float) -> list[Action]:
        """One request from the platform: its answer, and whatever the answer sets off."""
        key = server_key(request)
        if key in self._answered:
            return [Send(self._answered[key][1])]  # a retransmission: same answer, no second action
        if request.method == "ACK":
            return self._invites.ack(request, now) if self._refusal(request) is None else []
        problem = self._refusal(request)
        if problem is not None:
            status, reason, why = problem
            self._counters.refused_requests += 1
            self._log_limited(f"refused:{why[:40]}", now, "refused %s: %s", request.summary()[:120], why)
            if request.method == "INVITE":
                self._invites.refused["unknown_channel" if status == 404 else "forbidden"] += 1
            return [self._answer(request, status, reason, now)]
        if request.method in DIALOG_METHODS:
            return self._invites.receive(request, now)
        if request.method == "OPTIONS":
            response = response_to(request, 200, "OK", self._to_tag)
            response.add("Allow", ALLOW)
            return [self._remember(key, response, now)]
        if request.method in ("MESSAGE", "SUBSCRIBE"):
            try:
                command = manscdp.parse(request.body)
            except ManscdpError as error:
                self._counters.malformed += 1
                self._log_limited("bad-body", now, "ignored %s: %s", request.summary()[:120], error)
                return [self._answer(request, 400, "Bad Request", now)]
            if request.method == "SUBSCRIBE":
                return self._on_subscribe(request, command, now)
            return self._on_manscdp(request, command, now)
        log.info("%s: declined %s (501: not a request a GB/T 28181 device serves)", self._label,
                 request.summary()[:120])
        response = response_to(request, 501, "Not Implemented", self._to_tag)
        response.add("Allow", ALLOW)
        return [self._remember(server_key(request), response, now)]

    def _refusal(self, request: SipRequest) -> tuple[int, str, str] | None:
        sender, platform = uri_user(uri_of(request.get("From") or "")), self._device.settings.platform_id
        if sender != platform:
            return 403, "Forbidden", f"From {str(sender)[:24]!r} is not the platform {platform}"
        addressee = uri_user(uri_of(request.get("To") or "")) or uri_user(request.uri)
        if request.method != "OPTIONS" and addressee not in (self._device_id, None) \
                and addressee not in {c.channel_id for c in self._channels()}:
            return 404, "Not Found", f"addressed to {addressee[:24]}, not this device"
        return None

    def _on_manscdp(self, request: SipRequest, command: manscdp.Command, now: float) -> list[Action]:
        actions: list[Action] = [self._answer(request, 200, "OK", now)]
        self._next_job += 1
        reply = queries.answer(command, self._facts(), self._next_job)
        if not reply.supported:
            log.info("%s: %s; answered 200 OK and ignored", self._label, reply.note)
            return actions
        self._counters.queries_answered += 1
        if reply.job is not None:
            self._counters.camera_jobs += 1
            self._jobs[reply.job.job_id] = reply.job
            log.info("%s: %s %s (SN %d) for camera %s: asking the camera", self._label, command.root,
                     command.cmd_type, command.sn, reply.job.camera_id)
            return actions + [reply.job]
        if reply.note:
            log.log(logging.WARNING if command.root == "Control" else logging.INFO, "%s: %s", self._label, reply.note)
            self._counters.controls_refused += command.root == "Control"
        log.info("%s: answering %s %s (SN %d) in %d message(s)", self._label, command.root, command.cmd_type,
                 command.sn, len(reply.bodies))
        return actions + self._send_answers(reply.bodies, now)

    def _facts(self) -> queries.DeviceFacts:
        return queries.DeviceFacts(self._device.settings, list(self._channels()), self._local_time(),
                                   recording=self._recording(), alarming=self._alarming(),
                                   can_control=self._can_control, has_records=self._has_records)

    def _send_answers(self, bodies: Sequence[bytes], now: float) -> list[Action]:
        actions: list[Action] = []
        for body in bodies:
            self._counters.answers_sent += 1
            actions += self._device.send_request(self._device.message_request(body), "answer", now)
        return actions

    # ------------------------------------------------------------------ subscriptions

    def _on_subscribe(self, request: SipRequest, command: manscdp.Command, now: float) -> list[Action]:
        outcome = self._subscriptions.subscribe(request, command, now)
        log.info("%s: SUBSCRIBE %s: %s", self._label, command.cmd_type, outcome.note)
        response = response_to(request, outcome.status, outcome.reason, self._to_tag)
        if outcome.status == 200:
            response.add("Expires", str(outcome.expires))
            response.add("Contact", f"<sip:{self._device_id}@{self._device.contact}>")
            response.add("Content-Type", manscdp.CONTENT_TYPE)
            response.body = outcome.body
        actions: list[Action] = [self._remember(server_key(request), response, now)]
        if outcome.ended is not None:
            actions += self._notify(outcome.ended, b"", now)
        subscription = outcome.subscription
        if outcome.new and subscription is not None and subscription.kind == "Catalog":
            channels = list(self._channels())
            self._catalog_seen = {channel.channel_id: channel for channel in channels}
            for body in manscdp.catalog_responses(self._device_id, subscription.sn, channels, root="Notify",
                                                  events=["ADD"] * len(channels)):
                actions += self._notify(subscription, body, now)
        return actions

    def tend(self, now: float) -> list[Action]:
        """Expired subscriptions get their final NOTIFY; catalogue changes go to Catalog ones;
        unacknowledged answers to INVITEs are sent again."""
        actions: list[Action] = self._invites.tend(now)
        for subscription in self._subscriptions.expire(now):
            log.info("%s: %s subscription ran out", self._label, subscription.kind)
            actions += self._notify(subscription, b"", now)
        watchers = self._subscriptions.of_kind("Catalog")
        if not watchers:
            return actions
        channels = list(self._channels())
        changes = catalog_changes(self._catalog_seen, channels)
        if not changes:
            return actions
        self._catalog_seen = {channel.channel_id: channel for channel in channels}
        log.info("%s: catalogue changed (%s): notifying %d subscription(s)", self._label,
                 ", ".join(f"{c.channel_id} {event}" for c, event in changes[:5]), len(watchers))
        for subscription in watchers:
            for body in manscdp.catalog_responses(self._device_id, self._device.next_sn(), [c for c, _ in changes],
                                                  root="Notify", events=[event for _, event in changes]):
                actions += self._notify(subscription, body, now)
        return actions

    def _notify(self, subscription: Subscription, body: bytes, now: float) -> list[Action]:
        """Send a NOTIFY, or queue it while the subscription's previous one is unanswered: one
        NOTIFY in flight per subscription (RFC 6665 4.2.2), so the parts of a catalogue arrive
        in order even at a platform that handles one request of a dialog at a time."""
        if subscription.key in self._notifying:
            subscription.queued.append(body)
            return []
        return self._send_notify(subscription, body, now)

    def _send_notify(self, subscription: Subscription, body: bytes, now: float) -> list[Action]:
        request = notify(subscription, body, now, self._device.new_request)
        actions = self._device.send_request(request, "notify", now, subscription=subscription.key)
        if actions:  # not connected: nothing went, nothing is in flight
            self._counters.notifies_sent += 1
            self._notifying[subscription.key] = subscription
        return actions

    def forget_notifies(self) -> None:
        """The requests in flight are gone (connection lost, stopping): none awaits an answer."""
        for subscription in self._notifying.values():
            subscription.queued.clear()
        self._notifying.clear()

    def _answer(self, request: SipRequest, status: int, reason: str, now: float) -> Send:
        return self._remember(server_key(request), response_to(request, status, reason, self._to_tag), now)

    def _remember(self, key: tuple[str, str], response: SipResponse, now: float) -> Send:
        response.add("User-Agent", USER_AGENT)
        self._answered[key] = (now, response)
        while len(self._answered) > SERVER_MEMORY_MAX:
            self._answered.popitem(last=False)
        return Send(response)

    def _log_limited(self, kind: str, now: float, message: str, *args: object) -> None:
        """What the network decides how often to cause is logged at most 5 times a minute per kind."""
        self._log_limiter.log(log, logging.WARNING, kind, f"%s: {message}", self._label, *args, now=now)

    def forget_old_answers(self, now: float) -> None:
        while self._answered and next(iter(self._answered.values()))[0] + SERVER_MEMORY_S <= now:
            self._answered.popitem(last=False)
