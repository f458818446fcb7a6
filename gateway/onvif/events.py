"""Camera events over ONVIF PullPoint: tamper, motion and digital inputs as `CameraEvent` records.

One file because it is one PullPoint client: the listener and the parsing of what it pulls (topic
rules, `CameraEvent` records) follow the same rules below, and nothing else parses notifications.

The listener does not build alerts: it emits plain `CameraEvent`s (camera, kind, active, topic,
data, time) and the lead's event path turns them into `camera_tamper` / `sensor` alerts.

PullPoint rules (ONVIF Core §9.3, WS-BaseNotification, and what Home Assistant learned in the field):
- Subscriptions are kept short (`subscription_s`, default 10 min) and renewed at 80 % of the time
  the camera actually granted (TerminationTime - CurrentTime, both in the camera's clock).  ONVIF
  gives no way to list subscriptions, so a leaked one occupies one of the camera's few slots until
  it expires; short terms bound that.
- Each PullMessages long-poll is capped so it returns before the renewal is due: one task does
  pull and renew in turn, no timer races.
- A camera that grants much less than asked (under half) misreads relative times: renewals then
  ask for an absolute time in the camera's clock (the library's skew adjustment gives it).
- A SOAP fault from PullMessages/Renew means the subscription is gone (the camera rebooted, or the
  subscription expired while unreachable): create a new one at once, with no Unsubscribe.
  Network errors, timeouts and refused credentials keep the subscription and retry with the
  gateway's backoff (`retry_min_s` doubling to `retry_max_s`); the session (clock offset, service
  addresses) is rebuilt after such an error, since a reboot can change both.
- Some cameras cancel *all* subscriptions (other clients' too, e.g. the NVR's) on one Unsubscribe.
  For those the listener never unsubscribes and lets its subscriptions expire.  It is told so
  (`let_expire=True`) or finds out itself: when it replaces a subscription it creates the new one
  first, unsubscribes the old one, and if the new one is then unknown to the camera, the camera
  is remembered (per host:port, for the whole process) as one that cancels all.
- After (re)subscribing it asks SetSynchronizationPoint, so the camera re-sends current states
  (PropertyOperation="Initialized") and a tamper that ended during an outage is not left open.
  Repeats of a state already reported for the same topic and source are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from gateway.backoff import Backoff
from gateway.logs import LogLimiter
from gateway.onvif.session import (
    DEFAULT_TIMEOUT_S,
    OnvifError,
    OnvifLoop,
    OnvifNotAuthorized,
    OnvifNotSupported,
    OnvifProtocolError,
    OnvifSession,
    OnvifSoapFault,
    xml_text,
)

log = logging.getLogger("gateway.onvif.events")

EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
TT = "http://www.onvif.org/ver10/schema"

RENEW_FRACTION = 0.8
MIN_PULL_S = 1.0


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class CameraEvent:
    """One camera-side state change.

    kind: 'tamper' | 'motion' | 'digital_input'.  data: 'source' (the message's Source items,
    e.g. VideoSourceToken / InputToken), 'items' (its Data items), 'operation' ('Initialized' for
    a state re-sent after subscribing, 'Changed', 'Deleted'), and for tamper a 'reason'
    ('scene_change', 'too_dark', 'too_bright', 'too_blurry', 'signal_loss', 'tamper').
    `at` is the camera's UtcTime for the message (timezone-aware), or the receive time.
    """

    camera_id: str
    kind: str
    active: bool
    source_topic: str
    data: dict[str, Any]
    at: datetime

    @property
    def initial(self) -> bool:
        return self.data.get("operation") == "Initialized"


@dataclass(frozen=True)
class TopicRule:
    topic: str  # without namespace prefixes, e.g. RuleEngine/CellMotionDetector/Motion
    kind: str
    reason: str | None
    items: tuple[str, ...]  # Data item names that carry the state, in order of preference


TOPIC_RULES: tuple[TopicRule, ...] = (
    TopicRule("VideoSource/GlobalSceneChange", "tamper", "scene_change", ("State",)),
    TopicRule("RuleEngine/TamperDetector/Tamper", "tamper", "tamper", ("IsTamper", "State")),
    TopicRule("VideoSource/ImageTooDark", "tamper", "too_dark", ("State",)),
    TopicRule("VideoSource/ImageTooBright", "tamper", "too_bright", ("State",)),
    TopicRule("VideoSource/ImageTooBlurry", "tamper", "too_blurry", ("State",)),
    TopicRule("VideoSource/SignalLoss", "tamper", "signal_loss", ("State",)),
    TopicRule("RuleEngine/CellMotionDetector/Motion", "motion", None, ("IsMotion", "State")),
    TopicRule("RuleEngine/MotionRegionDetector/Motion", "motion", None, ("State", "IsMotion")),
    TopicRule("VideoSource/MotionAlarm", "motion", None, ("State",)),
    TopicRule("Device/Trigger/DigitalInput", "digital_input", None, ("LogicalState", "State")),
    TopicRule("Device/IO/DigitalInput", "digital_input", None, ("LogicalState", "State")),
)
"""ONVIF topic → event kind.  A rule matches the topic itself and any sub-topic
(GlobalSceneChange/ImagingService, ImageTooDark/AnalyticsService, ...)."""

_TRUE = {"true", "1", "on", "active", "high", "yes"}
_FALSE = {"false", "0", "off", "inactive", "low", "no"}


def normalize_topic(topic: str) -> str:
    """'tns1:RuleEngine/CellMotionDetector/Motion//.' → 'RuleEngine/CellMotionDetector/Motion'.

    Namespace prefixes are dropped per segment (cameras bind tns1 to other prefixes, and add
    vendor ones such as tnsaxis:), as is the trailing '//.' some firmwares append.
    """
    topic = topic.strip().rstrip("/.").strip()
    return "/".join(part.rpartition(":")[2] for part in topic.split("/") if part)


def topic_rule(topic: str) -> TopicRule | None:
    plain = normalize_topic(topic).casefold()
    for rule in TOPIC_RULES:
        key = rule.topic.casefold()
        if plain == key or plain.startswith(key + "/"):
            return rule
    return None


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    text = str(value).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _items(holder: Any) -> dict[str, str]:
    """SimpleItems of a tt:ItemList, from a zeep object or an lxml element."""
    if holder is None:
        return {}
    if isinstance(holder, etree._Element):
        return {item.get("Name", ""): item.get("Value", "")
                for item in holder.iter(f"{{{TT}}}SimpleItem")}
    found = {}
    for item in getattr(holder, "SimpleItem", None) or []:
        name = getattr(item, "Name", None)
        if name is not None:
            found[str(name)] = "" if getattr(item, "Value", None) is None else str(item.Value)
    return found


def _message_parts(message: Any) -> tuple[str, dict[str, str], dict[str, str], str, Any]:
    """(topic, source items, data items, operation, utc time) of a wsnt:NotificationMessage."""
    topic = xml_text(getattr(message, "Topic", None))
    body = getattr(getattr(message, "Message", None), "_value_1", None)
    if isinstance(body, etree._Element):
        inner = body if etree.QName(body).localname == "Message" else body.find(f".//{{{TT}}}Message")
        if inner is None:
            return topic, {}, {}, "", None
        return (topic, _items(inner.find(f"{{{TT}}}Source")), _items(inner.find(f"{{{TT}}}Data")),
                inner.get("PropertyOperation", ""), inner.get("UtcTime"))
    if body is None:
        return topic, {}, {}, "", None
    return (topic, _items(getattr(body, "Source", None)), _items(getattr(body, "Data", None)),
            str(getattr(body, "PropertyOperation", "") or ""), getattr(body, "UtcTime", None))


def _when(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def parse_notification(camera_id: str, message: Any, now: datetime | None = None) -> CameraEvent | None:
    """A CameraEvent for one notification, or None for topics the gateway does not use.

    Raises ValueError for a known topic whose state cannot be read (the caller logs it).
    """
    now = now or datetime.now(UTC)
    topic, source, data, operation, utc = _message_parts(message)
    if not topic:
        return None
    rule = topic_rule(topic)
    if rule is None:
        return None
    state = next((_bool(data[name]) for name in rule.items if name in data), None)
    if state is None:
        booleans = [_bool(v) for v in data.values() if _bool(v) is not None]
        state = booleans[0] if len(booleans) == 1 else None
    if operation == "Deleted":
        state = False
    if state is None:
        raise ValueError(f"{topic}: no readable state in data {data!r}")
    details: dict[str, Any] = {"source": source, "items": data, "operation": operation or "Changed"}
    if rule.reason:
        details["reason"] = rule.reason
    if rule.kind == "digital_input":
        details["input"] = source.get("InputToken") or next(iter(source.values()), "")
    return CameraEvent(camera_id, rule.kind, state, topic.strip().rstrip("/.").strip(), details,
                       _when(utc, now))


# --------------------------------------------------------------------------- listener


@dataclass(frozen=True)
class ListenerStatus:
    """state: 'starting' | 'subscribed' | 'retrying' | 'unsupported' | 'stopped'."""

    state: str = "starting"
    detail: str = ""
    subscriptions: int = 0
    renewals: int = 0
    events: int = 0
    errors: int = 0
    let_expire: bool = False


_CANCELS_ALL: set[str] = set()
_CANCELS_ALL_LOCK = threading.Lock()


def cancels_all_on_unsubscribe(endpoint: str) -> bool:
    """True once a camera (host:port) was seen to cancel every subscription on Unsubscribe."""
    with _CANCELS_ALL_LOCK:
        return endpoint in _CANCELS_ALL


def _mark_cancels_all(endpoint: str) -> None:
    with _CANCELS_ALL_LOCK:
        _CANCELS_ALL.add(endpoint)


@dataclass
class _Subscription:
    address: str
    pullpoint: Any
    manager: Any
    renew_at: float
    expires_at: float
    fresh: bool = True  # not pulled from yet
    unsubscribed_old: bool = False  # its creation replaced a live one that we unsubscribed


class _SubscriptionGone(Exception):
    def __init__(self, reason: str, retry_now: bool):
        super().__init__(reason)
        self.retry_now = retry_now


class OnvifEventListener:
    """Keeps one PullPoint subscription alive on one camera and reports its events.

    Runs on a shared `OnvifLoop`; `on_event` and `on_status` are called on the loop's thread
    and must return quickly (hand the record to a queue).  `start()` / `stop()` are thread-safe.
    """

    def __init__(self, camera_id: str, settings: Any, on_event: Callable[[CameraEvent], None], *,
                 loop: OnvifLoop, on_status: Callable[[str, ListenerStatus], None] | None = None,
                 subscription_s: float = 600.0, pull_timeout_s: float = 30.0, message_limit: int = 100,
                 let_expire: bool | None = None, retry_min_s: float = 1.0, retry_max_s: float = 60.0,
                 timeout: float = DEFAULT_TIMEOUT_S):
        self.camera_id = camera_id
        self.settings = getattr(settings, "onvif", settings)
        self.on_event = on_event
        self.on_status = on_status
        self.loop = loop
        self.subscription_s = subscription_s
        self.pull_timeout_s = pull_timeout_s
        self.message_limit = message_limit
        self.let_expire = let_expire
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.timeout = timeout
        self._status = ListenerStatus()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._states: dict[tuple[str, str, tuple[tuple[str, str], ...]], bool] = {}
        self._log_limit = LogLimiter(burst=3, window_s=60.0)  # the camera decides how often it sends
        self._absolute_times = False
        self._endpoint = ""

    # -- thread-facing API

    @property
    def status(self) -> ListenerStatus:
        return self._status

    @property
    def alive(self) -> bool:
        """The listening task runs (resubscribing after a camera fault still counts as alive)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Begin (or resume after stop) in the background on the shared loop."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = asyncio.Event()
        self.loop.run(self._start(), timeout=5)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop pulling; unsubscribe unless the camera is one that cancels all subscriptions."""
        if self._task is None or not self.loop.running:
            return
        self.loop.run(self.aclose(timeout), timeout=timeout + 1)

    async def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"onvif-events-{self.camera_id}")

    async def aclose(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # interrupts a long-poll; run()'s cleanup still unsubscribes
            await asyncio.wait([task], timeout=timeout)

    # -- the loop

    def _set_status(self, **changes: Any) -> None:
        self._status = replace(self._status, **changes)
        if self.on_status is not None:
            try:
                self.on_status(self.camera_id, self._status)
            except Exception:  # noqa: BLE001
                log.exception("%s: status callback failed", self.camera_id)

    def _should_let_expire(self) -> bool:
        if self.let_expire is not None:
            return self.let_expire
        return cancels_all_on_unsubscribe(self._endpoint)

    async def run(self) -> None:
        """Subscribe, pull, renew; recover from reboots and network errors until stopped."""
        session: OnvifSession | None = None
        subscription: _Subscription | None = None
        stale: _Subscription | None = None  # lost to a network error; may still live on the camera
        backoff = Backoff(self.retry_min_s, self.retry_max_s)
        try:
            while not self._stopping.is_set():
                try:
                    if session is None:
                        session = OnvifSession(self.settings, self.timeout)
                        self._endpoint = session.endpoint
                        await session.open()
                        if not session.has_service(EVENTS_NS):
                            raise OnvifNotSupported(session.endpoint, "the device has no event service")
                    if subscription is None:
                        subscription = await self._subscribe(session, stale)
                        stale = None
                    if asyncio.get_running_loop().time() + MIN_PULL_S >= subscription.renew_at:
                        await self._renew(session, subscription)
                    await self._pull(session, subscription)
                    backoff.reset()
                except _SubscriptionGone as gone:
                    log.info("%s: camera event subscription lost (%s); subscribing again",
                             self.camera_id, gone)
                    if subscription is not None and session is not None:
                        await self._forget_services(session, subscription)
                    subscription = None
                    self._set_status(state="retrying", detail=str(gone), errors=self._status.errors + 1)
                    if not gone.retry_now:
                        await self._sleep(backoff.next_delay())
                except OnvifNotSupported as error:
                    self._set_status(state="unsupported", detail=str(error), errors=self._status.errors + 1)
                    log.warning("%s: no camera events: %s", self.camera_id, error)
                    if session is not None:
                        await session.close()
                    session = None
                    await self._sleep(self.retry_max_s * 5)
                except OnvifError as error:
                    # Backoff like every ONVIF retry: a password fixed on the camera is picked up
                    # soon, a wrong one is tried at most once every retry_max_s.
                    delay = backoff.next_delay()
                    level = logging.WARNING if self._status.state != "retrying" else logging.DEBUG
                    log.log(level, "%s: camera events: %s; %s in %.1f s (then backing off up to %g s; "
                            "no camera alarms until then)", self.camera_id, error,
                            "asking with the configured user and password again"
                            if isinstance(error, OnvifNotAuthorized) else "subscribing again",
                            delay, self.retry_max_s)
                    self._set_status(state="retrying", detail=str(error), errors=self._status.errors + 1)
                    if session is not None:
                        if subscription is not None:
                            await self._forget_services(session, subscription)
                            stale = subscription
                        await session.close()
                    session, subscription = None, None  # a reboot can change clock and addresses
                    await self._sleep(delay)
        finally:
            if session is not None:
                if subscription is not None and subscription.manager is not None:
                    await self._release(session, subscription)
                await session.close()
            self._set_status(state="stopped")

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def _termination(self, session: OnvifSession) -> str:
        if not self._absolute_times:
            return f"PT{int(self.subscription_s)}S"
        camera_now = datetime.now(UTC) + timedelta(seconds=session.clock_skew_s)
        return (camera_now + timedelta(seconds=self.subscription_s)).strftime("%Y-%m-%dT%H:%M:%SZ")

    @staticmethod
    def _granted(answer: Any) -> float | None:
        current = getattr(answer, "CurrentTime", None)
        termination = getattr(answer, "TerminationTime", None)
        if isinstance(current, datetime) and isinstance(termination, datetime):
            return (termination - current).total_seconds()
        return None

    def _schedule(self, answer: Any) -> tuple[float, float]:
        """(renew_at, expires_at) in loop time, from the term the camera granted (its own clock)."""
        now = asyncio.get_running_loop().time()
        granted = self._granted(answer)
        granted = max(self.subscription_s if granted is None else granted, 2 * MIN_PULL_S)
        return now + granted * RENEW_FRACTION, now + granted

    async def _subscribe(self, session: OnvifSession, stale: _Subscription | None) -> _Subscription:
        answer = await session.call("events", "CreatePullPointSubscription",
                                    {"InitialTerminationTime": self._termination(session)})
        try:
            address = xml_text(answer.SubscriptionReference.Address)
        except AttributeError:
            address = ""
        if not address:
            raise OnvifProtocolError(session.endpoint, "CreatePullPointSubscription gave no address")
        pullpoint = await session.service_at("pullpoint", address, self.pull_timeout_s + self.timeout)
        manager = await session.service_at("subscription", address)
        renew_at, expires_at = self._schedule(answer)
        subscription = _Subscription(address, pullpoint, manager, renew_at, expires_at)
        if self._status.state in ("retrying", "unsupported"):
            log.info("%s: camera events subscribed again (after: %s)", self.camera_id,
                     self._status.detail or "a lost subscription")
        self._set_status(state="subscribed", detail="", subscriptions=self._status.subscriptions + 1,
                         let_expire=self._should_let_expire())
        granted = self._granted(answer)
        if granted is not None and granted < self.subscription_s / 2 and not self._absolute_times:
            log.info("%s: camera granted %.0f s of the %.0f s asked; renewing with absolute times",
                     self.camera_id, granted, self.subscription_s)
            self._absolute_times = True
            await self._renew(session, subscription)
        if stale is not None and stale.address != address:
            subscription.unsubscribed_old = await self._unsubscribe_stale(session, stale)
        try:
            await session.guard(pullpoint.SetSynchronizationPoint())
        except OnvifError as error:  # optional in practice; the first pull will tell
            log.debug("%s: SetSynchronizationPoint: %s", self.camera_id, error)
        return subscription

    async def _unsubscribe_stale(self, session: OnvifSession, stale: _Subscription) -> bool:
        """Free the camera slot of a subscription lost to a network error (make-before-break)."""
        if self._should_let_expire() or asyncio.get_running_loop().time() >= stale.expires_at:
            return False
        manager = None
        try:
            manager = await session.service_at("subscription", stale.address)
            await session.guard(manager.Unsubscribe(), timeout=min(self.timeout, 5))
            return True
        except OnvifError as error:
            log.debug("%s: Unsubscribe of the old subscription: %s", self.camera_id, error)
            return False
        finally:
            await session.drop_service(manager)

    async def _pull(self, session: OnvifSession, subscription: _Subscription) -> None:
        now = asyncio.get_running_loop().time()
        if now >= subscription.expires_at:
            raise _SubscriptionGone("it expired before it could be renewed", retry_now=True)
        wait = max(MIN_PULL_S, min(self.pull_timeout_s, subscription.renew_at - now))
        try:
            answer = await session.guard(
                subscription.pullpoint.PullMessages(
                    {"Timeout": f"PT{int(wait)}S", "MessageLimit": self.message_limit}),
                timeout=wait + self.timeout)
        except (OnvifSoapFault, OnvifProtocolError) as error:
            if subscription.fresh and subscription.unsubscribed_old and self.let_expire is None:
                # We unsubscribed only the old subscription, yet the new one is gone too.
                _mark_cancels_all(session.endpoint)
                log.warning("%s: %s cancels every subscription on Unsubscribe; from now on its "
                            "subscriptions are left to expire", self.camera_id, session.endpoint)
                raise _SubscriptionGone(error.detail, retry_now=True) from None
            # Gone after working: the camera rebooted or dropped it.  Gone at once: back off.
            raise _SubscriptionGone(error.detail, retry_now=not subscription.fresh) from None
        subscription.fresh = False
        for message in getattr(answer, "NotificationMessage", None) or []:
            self._deliver(message)

    def _deliver(self, message: Any) -> None:
        try:
            event = parse_notification(self.camera_id, message)
        except ValueError as error:
            self._log_limit.log(log, logging.WARNING, "unreadable", "%s: unreadable camera event: %s",
                                self.camera_id, str(error))
            return
        if event is None:
            log.debug("%s: ignoring camera event topic %s", self.camera_id,
                      xml_text(getattr(message, "Topic", None)))
            return
        key = (event.kind, normalize_topic(event.source_topic),
               tuple(sorted(event.data.get("source", {}).items())))
        previous = self._states.get(key)
        if previous is None and not event.active and event.initial:
            self._states[key] = False  # an idle state at subscription time is not news
            return
        if previous == event.active:
            return
        self._states[key] = event.active
        self._status = replace(self._status, events=self._status.events + 1)
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001
            log.exception("%s: event callback failed", self.camera_id)

    async def _renew(self, session: OnvifSession, subscription: _Subscription) -> None:
        try:
            answer = await session.guard(
                subscription.manager.Renew({"TerminationTime": self._termination(session)}))
        except (OnvifSoapFault, OnvifProtocolError) as error:
            raise _SubscriptionGone(f"renew refused: {error.detail}", retry_now=True) from None
        subscription.renew_at, subscription.expires_at = self._schedule(answer)
        self._set_status(renewals=self._status.renewals + 1)

    async def _release(self, session: OnvifSession, subscription: _Subscription) -> None:
        """Unsubscribe at stop, unless this camera cancels everyone's subscriptions on Unsubscribe."""
        if not self._should_let_expire():
            try:
                await session.guard(subscription.manager.Unsubscribe(), timeout=min(self.timeout, 5))
            except OnvifError as error:
                log.debug("%s: Unsubscribe: %s (normal after a camera reboot)", self.camera_id, error)
        await self._forget_services(session, subscription)

    async def _forget_services(self, session: OnvifSession, subscription: _Subscription) -> None:
        await session.drop_service(subscription.pullpoint)
        await session.drop_service(subscription.manager)
        subscription.pullpoint = subscription.manager = None
