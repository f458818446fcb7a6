"""MQTT topic names (DESIGN §3.2) and the policy for topics a remote request may make us publish to.

Every topic the gateway uses is built here, so the layout lives in one place:

    {prefix}/{gateway_id}/status                      retained presence + health, LWT "offline"
    {prefix}/{gateway_id}/events/{camera_id}          alerts, QoS 1, not retained
    {prefix}/{gateway_id}/events/sensor-{sensor_id}   alerts of a sensor with no linked camera
    {prefix}/{gateway_id}/events/gateway              alerts about the gateway itself (disk_full)
    {prefix}/{gateway_id}/ack                         the centre acknowledges an alert
    {prefix}/{gateway_id}/acks                        a duty officer acknowledged on the gateway's page
    {prefix}/{gateway_id}/cases                       the centre's case progress for an alert
    {prefix}/{gateway_id}/cameras/{camera_id}/state   retained camera health
    {prefix}/{gateway_id}/cameras/{camera_id}/counts  retained live counts (gw.counts/1)
    {prefix}/{gateway_id}/cmd/snapshot                remote look request
    {prefix}/{gateway_id}/replies/...                 where remote-look replies may go (see below)

Reply topics: a snapshot request names its own `reply_to`. Publishing wherever a request says would
let anyone with publish rights on `cmd/snapshot` make this gateway (with its broker identity and
ACL) write to any topic: overwrite another gateway's retained status, spoof alerts on an `events`
topic, or feed a sensor topic. So `reply_to` must lie under `{prefix}/{gateway_id}/replies/` (or
an extra prefix the integrator passes in code), must not contain wildcards, `$`-topics, empty
levels or control characters, and is at most 256 bytes. The centre subscribes to
`{prefix}/+/replies/#` and picks a unique suffix per request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""One topic level built from an id (gateway, camera): same rule as the config's Ident."""

REPLY_SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,4}$")
MAX_REPLY_TOPIC_BYTES = 256


def check_level(kind: str, value: str) -> str:
    """Reject ids that would break the topic tree ('/', '+', '#', spaces) before they reach paho."""
    if not isinstance(value, str) or not LEVEL.match(value):
        raise ValueError(f"{kind} {value!r} is not usable in an MQTT topic (letters, digits, _ . - only)")
    return value


@dataclass(frozen=True)
class Topics:
    """The topic tree of one gateway."""

    prefix: str
    gateway_id: str

    def __post_init__(self) -> None:
        if not self.prefix or any(ch in self.prefix for ch in "#+") or self.prefix.endswith("/"):
            raise ValueError(f"MQTT prefix {self.prefix!r} must be non-empty, without '#', '+' or a trailing '/'")
        check_level("gateway id", self.gateway_id)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.gateway_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def acks(self) -> str:
        return f"{self.base}/acks"

    @property
    def cases(self) -> str:
        return f"{self.base}/cases"

    @property
    def cmd_snapshot(self) -> str:
        return f"{self.base}/cmd/snapshot"

    @property
    def replies(self) -> str:
        """Prefix (with trailing '/') under which remote-look replies may be published."""
        return f"{self.base}/replies/"

    def events(self, camera_id: str) -> str:
        return f"{self.base}/events/{check_level('camera id', camera_id)}"

    def alert(self, payload: dict) -> str:
        """The topic of one alert: its camera's; for a sensor with no linked camera
        `events/sensor-<sensor id>`; for an alert about the gateway itself (no camera, no sensor:
        `disk_full`) `events/gateway` (DESIGN §3.2 names topics by camera only)."""
        camera_id = payload.get("camera_id")
        if camera_id:
            return self.events(camera_id)
        sensor_id = (payload.get("details") or {}).get("sensor_id")
        if sensor_id:
            return self.events(f"sensor-{sensor_id}")
        return f"{self.base}/events/gateway"

    def camera_state(self, camera_id: str) -> str:
        return f"{self.base}/cameras/{check_level('camera id', camera_id)}/state"

    def camera_counts(self, camera_id: str) -> str:
        return f"{self.base}/cameras/{check_level('camera id', camera_id)}/counts"


def reply_topic_problem(topic: object, allowed_prefixes: Sequence[str]) -> str | None:
    """Why `topic` may not be used as a reply topic, or None when it is acceptable.

    The reason is for the log line an operator reads ("reply_to ... is outside ..."), so it says
    what was expected.
    """
    if not isinstance(topic, str) or not topic:
        return "reply_to must be a non-empty string"
    if len(topic.encode("utf-8")) > MAX_REPLY_TOPIC_BYTES:
        return f"reply_to is longer than {MAX_REPLY_TOPIC_BYTES} bytes"
    if any(ch in topic for ch in "#+\x00") or topic.startswith("$"):
        return "reply_to must not contain wildcards or start with '$'"
    for prefix in allowed_prefixes:
        if topic.startswith(prefix) and REPLY_SUFFIX.match(topic[len(prefix):]):
            return None
    allowed = ", ".join(f"{p}<id>" for p in allowed_prefixes)
    return f"reply_to {topic!r} is outside the allowed reply topics ({allowed})"
