"""Alerts: event lifecycles (ids, seq, update policy), payloads (DESIGN §3.3), evidence JPEGs,
and the one base every alert source stands on (`watch.AlertWatch`, `watch.ConditionWatch`).

Knows nothing of video analytics or MQTT: analytics feed it readings, the publisher ships
the resulting `AlertMessage`s.
"""

from gateway.events.lifecycle import AlertMessage, AlertPath, OpenEvent, UpdatePolicy
from gateway.events.payload import TITLES_ZH, AlertSource, AlertSubject, Reading, build_payload, title_zh
from gateway.events.schema import alert_errors, alert_schema, validate_alert, validate_counts
from gateway.events.snapshot import Evidence, Snapshot, take_snapshot

__all__ = [
    "TITLES_ZH",
    "AlertMessage",
    "AlertPath",
    "AlertSource",
    "AlertSubject",
    "Evidence",
    "OpenEvent",
    "Reading",
    "Snapshot",
    "UpdatePolicy",
    "alert_errors",
    "alert_schema",
    "build_payload",
    "take_snapshot",
    "title_zh",
    "validate_alert",
    "validate_counts",
]
