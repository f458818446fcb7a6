"""The one base every alert source stands on: its open events, and the messages that move them.

Alerts are raised in several places (a camera's rules, its outage, its PTZ patrol, its own
alarms, a sensor, the data disk), and each of them needs the same few things: remember which of
its events are open, start one (a new id, `seq` 1, a picture), send an update when the policy
says so (a count that moved, or a heartbeat), end it. `AlertWatch` is that bookkeeping, keyed so
one source can hold several events at once (one per rule instance, per alarm input; `None` for
a source with one event at a time). `ConditionWatch` is the common special case: a condition
that is an alert while it lasts (a camera that sends nothing, a patrol that cannot move, a full
disk), with the heartbeat that tells the centre it is still going.

Pure: the caller passes the clock (`t` monotonic seconds, `now` the aware wall clock) and gets
`AlertMessage`s back to queue; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from datetime import datetime, timedelta

from gateway.events.lifecycle import AlertMessage, OpenEvent, SnapshotSource, UpdatePolicy
from gateway.events.payload import AlertSource, AlertSubject, Reading

HEARTBEAT_S = 600.0
"""An open condition repeats itself every 10 minutes so the centre sees it is still going."""
HEARTBEAT = UpdatePolicy(min_change=1, every_s=HEARTBEAT_S)
NO_COUNT = Reading(count=None)
"""The reading of an alert that counts nobody (an outage, an alarm input, a full disk)."""


def no_picture() -> None:
    """The snapshot source of an alert without evidence picture."""
    return None


class AlertWatch:
    """The open events of one alert source, by key (`None`: the source's only event)."""

    def __init__(self, source: AlertSource) -> None:
        self.source = source
        self._open: dict[Hashable, OpenEvent] = {}

    @property
    def has_open(self) -> bool:
        return bool(self._open)

    def is_open(self, key: Hashable = None) -> bool:
        return key in self._open

    def event(self, key: Hashable = None) -> OpenEvent | None:
        return self._open.get(key)

    def open_keys(self) -> Iterator[Hashable]:
        return iter(list(self._open))

    def start(self, subject: AlertSubject, policy: UpdatePolicy, started_at: datetime, reading: Reading,
              t: float, now: datetime, snapshot: SnapshotSource = no_picture, key: Hashable = None) -> AlertMessage:
        """Open a new event under `key` and return its start message."""
        if key in self._open:
            raise ValueError(f"an event is already open under {key!r}; end it first")
        event = OpenEvent(self.source, subject, policy, started_at)
        self._open[key] = event
        return event.start(reading, t, now, snapshot)

    def update_if_due(self, reading: Reading, t: float, now: datetime, snapshot: SnapshotSource = no_picture,
                      key: Hashable = None) -> list[AlertMessage]:
        """An update when the event's policy says one is due (its count moved, or the heartbeat)."""
        event = self._open.get(key)
        if event is None or not event.observe(reading.count or 0, t):
            return []
        return [event.update(reading, t, now, snapshot)]

    def update(self, reading: Reading, t: float, now: datetime, snapshot: SnapshotSource = no_picture,
               key: Hashable = None) -> list[AlertMessage]:
        """An update now, whatever the policy (the event's subject changed, new evidence)."""
        event = self._open.get(key)
        return [] if event is None else [event.update(reading, t, now, snapshot)]

    def end(self, reading: Reading, t: float, now: datetime, ended_at: datetime | None = None,
            key: Hashable = None) -> list[AlertMessage]:
        """End the event under `key` (none open: no message). `ended_at`: when it really ended."""
        event = self._open.pop(key, None)
        if event is None:
            return []
        return [event.end(reading, t, now, ended_at=max(ended_at or now, event.started_at))]

    def end_all(self, t: float, now: datetime, reading: Reading = NO_COUNT) -> list[AlertMessage]:
        """End every open event (the source is being stopped or removed)."""
        return [message for key in self.open_keys() for message in self.end(reading, t, now, key=key)]


class ConditionWatch:
    """A condition that is an alert while it lasts: one event at a time.

    `observe` once a second or so with whether the condition holds: the event starts when it
    begins, repeats itself every `HEARTBEAT_S`, and ends once the condition has been false for
    `clear_s` (0: at once), so a condition that flaps within `clear_s` stays one event.
    `changed_at` says when the condition really began or ended when the caller knows better than
    `now` (a camera silent for 30 s went offline 30 s ago).
    """

    def __init__(self, source: AlertSource, subject: AlertSubject, *, clear_s: float = 0.0) -> None:
        self.subject = subject
        self.clear_s = clear_s
        self._watch = AlertWatch(source)
        self._clear_since: float | None = None

    @property
    def active(self) -> bool:
        return self._watch.has_open

    def observe(self, holds: bool, t: float, now: datetime, changed_at: datetime | None = None,
                subject: AlertSubject | None = None) -> list[AlertMessage]:
        """`subject`: what a new event is about, when it depends on the moment (default the one given)."""
        if not self.active:
            if not holds:
                return []
            self._clear_since = None
            return [self._watch.start(subject or self.subject, HEARTBEAT, changed_at or now, NO_COUNT, t, now)]
        if holds:
            self._clear_since = None
        elif self._clear_since is None:
            self._clear_since = t
        if self._clear_since is not None and t - self._clear_since >= self.clear_s:
            cleared = now - timedelta(seconds=t - self._clear_since)
            return self._watch.end(NO_COUNT, t, now, ended_at=changed_at or cleared)
        return self._watch.update_if_due(NO_COUNT, t, now)

    def close(self, t: float, now: datetime) -> list[AlertMessage]:
        """End an open event (the source is being stopped)."""
        self._clear_since = None
        return self._watch.end(NO_COUNT, t, now)
