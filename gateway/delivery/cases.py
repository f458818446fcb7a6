"""The centre's case progress for an alert (the "点派接验单" loop), as the gateway keeps it.

The centre turns an alert into a case (事件工单) and reports how it moves on
`{prefix}/{gateway_id}/cases`: dispatched (派单) → accepted (接单) → handled (办结) → verified (验收),
or rejected (退回). The gateway stores every step in its history and shows the latest on the page.
The page's labels live in gateway/web/i18n.js (`case_<status>`).
"""

from __future__ import annotations

from dataclasses import dataclass

CASE_STATUSES: tuple[str, ...] = ("dispatched", "accepted", "handled", "verified", "rejected")


@dataclass(frozen=True)
class CaseUpdate:
    """One step of a case, as the centre sent it (`at`: its ISO-8601 time, or when it arrived)."""

    event_id: str
    case_id: str
    status: str
    by: str
    at: str
    at_ts: float
    note: str | None = None
