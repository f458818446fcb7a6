"""The platform's subscriptions (SUBSCRIBE / NOTIFY, RFC 6665, as GB/T 28181-2016 9.11 uses
them). Pure: the device feeds requests and time in, and builds the NOTIFYs it is handed.

What a platform subscribes to is the MANSCDP body's CmdType (WVP sends `Event: Catalog` for
the catalogue and `Event: presence` for Alarm and MobilePosition):

- Catalog: a NOTIFY with the whole catalogue at once (every item Event ADD), then one with the
  items that changed whenever the catalogue changes (ADD, DEL, UPDATE; ON/OFF for a camera
  going online or offline), while the subscription lasts.
- Alarm: every alarm the gateway raises is also sent as a NOTIFY in the subscription's dialog
  (the MESSAGE still goes: it is what platforms store).
- MobilePosition: accepted, and nothing is sent: the gateway and its cameras do not move, and
  their places are in the catalogue (Longitude, Latitude). Refusing would not help: WVP sends
  the SUBSCRIBE again every 10 s after an error answer.

A subscription lives for the Expires granted (the platform's, clamped to 30 s .. 1 day),
is refreshed by a SUBSCRIBE in its dialog (same Call-ID and From tag), and ends with Expires: 0,
when it runs out (a final NOTIFY says `terminated;reason=timeout`), or when the platform answers
a NOTIFY with 481 (it forgot the dialog).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from gateway.outputs.gb28181 import manscdp
from gateway.outputs.gb28181.manscdp import Channel
from gateway.outputs.gb28181.sip import SipRequest, header_params, uri_of, with_tag

KINDS = ("Catalog", "Alarm", "MobilePosition")
DEFAULT_EXPIRES_S = 3600
MIN_EXPIRES_S = 30
MAX_EXPIRES_S = 86_400
MAX_SUBSCRIPTIONS = 16
"""A platform keeps a few; more are refused (a flood must not grow the table)."""

RequestFactory = Callable[..., SipRequest]
"""The device's `_request(method, uri, call_id=, from_value=, to_value=)` (Via, CSeq, ...)."""


@dataclass
class Subscription:
    kind: str
    call_id: str
    remote_tag: str
    remote: str
    """The SUBSCRIBE's From (the NOTIFY's To)."""
    local: str
    """The SUBSCRIBE's To with the device's tag (the NOTIFY's From)."""
    target: str
    """Where NOTIFYs go: the SUBSCRIBE's Contact URI, else its From URI."""
    event: str
    sn: int
    expires_at: float
    ended_by_platform: bool = False
    queued: list[bytes] = field(default_factory=list)
    """NOTIFY bodies waiting for the answer to the one in flight."""

    @property
    def key(self) -> tuple[str, str]:
        return self.call_id, self.remote_tag


@dataclass(frozen=True)
class SubscribeOutcome:
    """The answer to one SUBSCRIBE: status, granted expiry, the subscription (None: refused
    or ended) and the MANSCDP body of the 200 (GB/T 28181 answers with Result OK)."""

    status: int
    reason: str
    expires: int = 0
    subscription: Subscription | None = None
    new: bool = False
    ended: Subscription | None = None
    body: bytes = b""
    note: str = ""


class Subscriptions:
    """The live subscriptions, by dialog (Call-ID, the platform's From tag)."""

    def __init__(self, device_id: str, local_tag: str) -> None:
        self.device_id = device_id
        self.local_tag = local_tag
        self._live: dict[tuple[str, str], Subscription] = {}

    def subscribe(self, request: SipRequest, command: manscdp.Command, now: float) -> SubscribeOutcome:
        if command.cmd_type not in KINDS:
            return SubscribeOutcome(489, "Bad Event", note=f"subscription to {command.cmd_type} is not offered")
        remote_tag = header_params(request.get("From") or "").get("tag", "")
        key = (request.call_id, remote_tag)
        expires = _expires(request.get("Expires"))
        body = manscdp.result_response(command.cmd_type, self.device_id, command.sn, ok=True)
        if expires == 0:
            ended = self._live.pop(key, None)
            if ended is not None:
                ended.expires_at, ended.ended_by_platform = now, True
            return SubscribeOutcome(200, "OK", 0, None, ended=ended, body=body,
                                    note=f"{command.cmd_type} subscription ended by the platform")
        existing = self._live.get(key)
        if existing is not None:
            existing.expires_at = now + expires
            return SubscribeOutcome(200, "OK", expires, existing, body=body,
                                    note=f"{command.cmd_type} subscription refreshed for {expires} s")
        if len(self._live) >= MAX_SUBSCRIPTIONS:
            return SubscribeOutcome(503, "Service Unavailable", note=f"already {MAX_SUBSCRIPTIONS} subscriptions")
        contact = request.get("Contact")
        subscription = Subscription(
            kind=command.cmd_type, call_id=request.call_id, remote_tag=remote_tag, remote=request.get("From") or "",
            local=with_tag(request.get("To") or "", self.local_tag),
            target=uri_of(contact) if contact else uri_of(request.get("From") or ""),
            event=request.get("Event") or command.cmd_type, sn=command.sn, expires_at=now + expires)
        self._live[key] = subscription
        return SubscribeOutcome(200, "OK", expires, subscription, new=True, body=body,
                                note=f"{command.cmd_type} subscription accepted for {expires} s")

    def of_kind(self, kind: str) -> list[Subscription]:
        return [s for s in self._live.values() if s.kind == kind]

    def expire(self, now: float) -> list[Subscription]:
        """The subscriptions that ran out (removed)."""
        gone = [s for s in self._live.values() if s.expires_at <= now]
        for subscription in gone:
            del self._live[subscription.key]
        return gone

    def forget(self, key: tuple[str, str]) -> Subscription | None:
        return self._live.pop(key, None)

    def next_expiry(self) -> float | None:
        return min((s.expires_at for s in self._live.values()), default=None)

    def __len__(self) -> int:
        return len(self._live)


def notify(subscription: Subscription, body: bytes, now: float, new_request: RequestFactory) -> SipRequest:
    """The NOTIFY carrying `body` in the subscription's dialog, with its Subscription-State."""
    request = new_request("NOTIFY", subscription.target, call_id=subscription.call_id,
                          from_value=subscription.local, to_value=subscription.remote)
    request.add("Event", subscription.event)
    remaining = int(subscription.expires_at - now)
    state = f"active;expires={remaining}" if remaining > 0 else \
        "terminated" if subscription.ended_by_platform else "terminated;reason=timeout"
    request.add("Subscription-State", state)
    request.add("Content-Type", manscdp.CONTENT_TYPE)
    request.body = body
    return request


def catalog_changes(before: Mapping[str, Channel], after: Sequence[Channel]) -> list[tuple[Channel, str]]:
    """What changed in the catalogue, as (item, GB/T 28181 Event): ADD, DEL, ON, OFF, UPDATE."""
    changes: list[tuple[Channel, str]] = []
    current = {channel.channel_id: channel for channel in after}
    for channel_id, channel in current.items():
        old = before.get(channel_id)
        if old is None:
            changes.append((channel, "ADD"))
        elif old.online != channel.online and _same_but_status(old, channel):
            changes.append((channel, "ON" if channel.online else "OFF"))
        elif old != channel:
            changes.append((channel, "UPDATE"))
    changes += [(channel, "DEL") for channel_id, channel in before.items() if channel_id not in current]
    return changes


def _same_but_status(a: Channel, b: Channel) -> bool:
    return replace(a, online=b.online) == b


def _expires(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return DEFAULT_EXPIRES_S
    seconds = int(value.strip())
    return 0 if seconds == 0 else max(MIN_EXPIRES_S, min(MAX_EXPIRES_S, seconds))
