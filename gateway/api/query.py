"""Strict query strings: an unknown or repeated parameter is a 422, not silently ignored (a typo
such as ?camra=gate must not list every camera's events), and times carry an offset."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def rfc3339(value: Any) -> Any:
    """A date-time with an offset, as the schema says (not a bare number or a naive time)."""
    if isinstance(value, str) and not RFC3339.match(value):
        raise ValueError("use an RFC 3339 date-time with offset, e.g. 2024-05-01T08:00:00+08:00")
    return value


def known_query(*names: str) -> Callable[[Request], None]:
    """A dependency rejecting query parameters other than `names`, and repeated ones."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        names = [name for name, _ in request.query_params.multi_items()]
        errors = [{"loc": ("query", name), "msg": f"unknown query parameter {name!r}; "
                   f"known: {', '.join(sorted(allowed))}", "type": "extra_forbidden"}
                  for name in sorted(set(names) - allowed)]
        errors += [{"loc": ("query", name), "msg": f"query parameter {name!r} given more than once",
                    "type": "repeated"} for name in sorted({n for n in names if names.count(n) > 1} & allowed)]
        if errors:
            raise RequestValidationError(errors)

    return check


def epoch_or_none(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
