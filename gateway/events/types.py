"""The alert types the gateway raises: one vocabulary for payloads, the schema, the API, metrics
and the page.

Adding an alert type means adding one `AlertType` here (and the rule or watch that raises it).
`alert.schema.json` lists the same names; a test holds the two together, and the web page reads
its labels from the API instead of keeping a copy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AlertType:
    """name: the payload's `type`; title_zh/label_en: what people read; counts_people: the alert
    is about a number of people, so its title carries the count ('人员聚集：东门广场 12人')."""

    name: str
    title_zh: str
    label_en: str
    counts_people: bool


_TYPES = (
    AlertType("crowd", "人数超限", "Crowd limit", counts_people=True),
    AlertType("gathering", "人员聚集", "Gathering", counts_people=True),
    AlertType("growth", "人数激增", "Crowd surge", counts_people=True),
    AlertType("loitering", "人员徘徊", "Loitering", counts_people=True),
    AlertType("intrusion", "区域入侵", "Intrusion", counts_people=True),
    AlertType("sensor", "传感器告警", "Sensor alarm", counts_people=False),
    AlertType("camera_offline", "摄像机离线", "Camera offline", counts_people=False),
    AlertType("camera_tamper", "摄像机遮挡/破坏", "Camera tamper", counts_people=False),
    AlertType("patrol_fault", "巡逻中断", "Patrol stopped", counts_people=False),
    AlertType("disk_full", "存储空间已满", "Disk full", counts_people=False),
)

ALERT_TYPES: dict[str, AlertType] = {alert_type.name: alert_type for alert_type in _TYPES}
"""Every alert type by name, in the order the schema and the page list them."""

ALERT_TYPE_NAMES: tuple[str, ...] = tuple(ALERT_TYPES)
COUNTING_TYPES: tuple[str, ...] = tuple(name for name, kind in ALERT_TYPES.items() if kind.counts_people)
