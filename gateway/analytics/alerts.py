"""Turns rule signals into alert messages: one open event per rule instance (an `AlertWatch`).

This is where analytics meet the events package: a rule's static facts become the event's
subject, an observation becomes a reading with member boxes, monotonic times become wall-clock
timestamps, and the evidence picture is drawn from the frame only when a message carries one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from gateway.analytics.rules.engine import Signal
from gateway.analytics.rules.scene import Observation, Scene
from gateway.analytics.tracker import TrackFrame
from gateway.config.models import Camera, GatewaySection, RuleBase
from gateway.events.lifecycle import AlertMessage, OpenEvent, UpdatePolicy
from gateway.events.payload import AlertSource, AlertSubject, Reading
from gateway.events.snapshot import Evidence, Snapshot, take_snapshot
from gateway.events.watch import AlertWatch

FrameSource = np.ndarray | Callable[[], np.ndarray]
"""The analysed frame (masks filled) for evidence pictures, or a function that builds it: a
replay converts the full-size picture only for the frames whose alert carries one."""

EventKey = tuple[str, Hashable]
LastSeen = tuple[Observation, TrackFrame]


class AlertDesk:
    """Open events of one camera, keyed by (rule id, instance key)."""

    def __init__(
        self,
        camera: Camera,
        gateway: GatewaySection,
        frame_size: tuple[int, int],
        zones: dict[str, np.ndarray],
        masks: list[np.ndarray],
        details: dict | None = None,
    ):
        self.timezone = ZoneInfo(gateway.timezone)
        self._watch = AlertWatch(AlertSource.for_camera(gateway.id, camera, frame_size))
        self.camera = camera
        self.details = details
        self._subjects = {rule.rule_id: self._subject(rule) for rule in camera.rules}
        self.zones = zones
        self.masks = masks
        self._last: dict[EventKey, LastSeen] = {}

    @property
    def has_open_events(self) -> bool:
        return self._watch.has_open

    def handle(
        self, signals: list[Signal], scene: Scene, now: datetime, frame: FrameSource | None
    ) -> list[AlertMessage]:
        """Messages for this frame's signals, in signal order."""
        now = now.astimezone(self.timezone)
        messages = []
        for signal in signals:
            key = (signal.rule.rule_id, signal.key)
            snapshot = self._snapshot_source(signal, scene, now, frame)
            if signal.kind == "start":
                messages.append(self._start(key, signal, scene, now, snapshot))
            elif signal.kind == "end":
                messages += self._end(key, signal, scene, now)
            elif self._escalation_changed(self._open(key), signal.rule, scene) or (
                    # `holds` implies an observation (RuleEngine.step); the check only narrows it.
                    signal.holds and signal.observation is not None
                    and self._open(key).observe(signal.observation.count, scene.t)):
                reading = _reading(signal.observation, scene.people)
                messages += self._watch.update(reading, scene.t, now, snapshot, key=key)
            if signal.kind != "end" and signal.observation is not None:
                self._last[key] = (signal.observation, scene.people)
        return messages

    def _open(self, key: EventKey) -> OpenEvent:
        """The open event of a rule instance the engine reports as open (it started it)."""
        event = self._watch.event(key)
        assert event is not None, f"rule instance {key} holds without an open event"
        return event

    def _start(self, key: EventKey, signal: Signal, scene: Scene, now: datetime, snapshot) -> AlertMessage:
        started_at = _wall(now, scene.t, signal.since_t)
        return self._watch.start(self._subject_now(signal.rule, scene), _policy(signal.rule), started_at,
                                 _reading(signal.observation, scene.people), scene.t, now, snapshot, key=key)

    def _end(self, key: EventKey, signal: Signal, scene: Scene, now: datetime) -> list[AlertMessage]:
        self._last.pop(key, None)
        ended_at = _wall(now, scene.t, signal.since_t)
        return self._watch.end(_reading(signal.observation, scene.people), scene.t, now, ended_at, key=key)

    def close(self, signals: list[Signal], t: float, now: datetime) -> list[AlertMessage]:
        """End messages for a shutdown: each reports the last reading its event had."""
        now = now.astimezone(self.timezone)
        messages = []
        for signal in signals:
            key = (signal.rule.rule_id, signal.key)
            reading = _reading(*self._last.pop(key, (None, None)))
            messages += self._watch.end(reading, t, now, _wall(now, t, signal.since_t), key=key)
        return messages

    def _subject_now(self, rule: RuleBase, scene: Scene) -> AlertSubject:
        """The rule's subject, with its severity raised while its `escalate` sensor is active."""
        subject = self._subjects[rule.rule_id]
        escalate = rule.escalate
        if escalate is not None and scene.sensors.get(escalate.sensor, False):
            return replace(subject, severity=max(subject.severity, escalate.severity),
                           details={**(subject.details or {}), "escalated_by": escalate.sensor})
        return subject

    def _escalation_changed(self, event: OpenEvent, rule: RuleBase, scene: Scene) -> bool:
        """An open event whose escalation sensor changed gets the new severity in an update now."""
        subject = self._subject_now(rule, scene)
        if subject == event.subject:
            return False
        event.subject = subject
        return True

    def _subject(self, rule: RuleBase) -> AlertSubject:
        zone = next((z for z in self.camera.zones if z.id == rule.zone), None)
        zone_name = (zone.name or zone.id) if zone else None
        return AlertSubject(
            type=rule.type,  # type: ignore[attr-defined]
            severity=rule.severity,
            place=zone_name or self.camera.name or self.camera.id,
            zone_id=rule.zone,
            zone_name=zone_name,
            rule_id=rule.rule_id,
            rule=rule.model_dump(mode="json"),
            details=self.details,
        )

    def _snapshot_source(self, signal: Signal, scene: Scene, now: datetime, frame: FrameSource | None):
        """A closure drawing this signal's evidence, called only if the message needs a picture."""

        def draw() -> Snapshot | None:
            if frame is None:
                return None
            people = scene.people.select(scene.present)
            members = np.zeros(len(scene.people), bool)
            if signal.observation is not None:
                members[signal.observation.members] = True
            count = signal.observation.count if signal.observation else 0
            rule = signal.rule
            zone = self.zones[rule.zone] if rule.zone else None
            estimated = signal.observation is not None and signal.observation.count_source == "model"
            heat = scene.count_map.heat_map() if estimated and scene.count_map is not None else None
            evidence = Evidence(
                boxes=people.boxes,
                track_ids=people.ids,
                highlight=members[scene.present],
                zones=(self.zones[rule.zone],) if rule.zone else (),
                masks=self.masks,
                hull=rule.type == "gathering",  # type: ignore[attr-defined]
                caption=(
                    f"{rule.type.upper()} {rule.rule_id}",  # type: ignore[attr-defined]
                    f"count {count}" + (" (counting model)" if heat is not None else ""),
                    now.strftime("%Y-%m-%d %H:%M:%S %z"),
                ),
                heat=heat,
                heat_region=zone,
            )
            return take_snapshot(frame() if callable(frame) else frame, evidence, now)

        return draw


def _reading(observation: Observation | None, people: TrackFrame | None) -> Reading:
    """Count, member boxes and density of an observation; an unseen instance reads 0."""
    if observation is None or people is None:
        return Reading(count=0)
    rows = observation.members
    boxes = np.round(people.boxes[rows].astype(np.float64), 1).tolist()
    scores = np.round(people.scores[rows].astype(np.float64), 3).tolist()
    members = [
        {"track_id": track_id, "box": box, "score": score}
        for track_id, box, score in zip(people.ids[rows].tolist(), boxes, scores, strict=True)
    ]
    return Reading(observation.count, members, observation.density_per_m2, observation.count_source)


def _policy(rule: RuleBase) -> UpdatePolicy:
    updates = rule.updates
    return UpdatePolicy(updates.min_change, updates.every_s, updates.min_change_share, updates.settle_s)


def _wall(now: datetime, t: float, since_t: float | None) -> datetime:
    """The wall-clock time of monotonic time `since_t`, given that `t` is `now`."""
    return now if since_t is None else now - timedelta(seconds=t - since_t)
