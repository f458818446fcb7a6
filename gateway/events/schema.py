"""The alert payload contract (DESIGN §3.3) as a JSON Schema shipped inside the package, and
beside it the live counts message (`counts.schema.json`, gw.counts/1, gateway.events.counts).

Tests validate every payload the analytics emit; the publisher can validate before it writes
to the outbox, so a malformed alert is caught at the gateway rather than at the centre.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_ID = "gw.alert/1"


@cache
def alert_schema() -> dict[str, Any]:
    """The parsed `alert.schema.json`."""
    text = resources.files("gateway.events").joinpath("alert.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def alert_validator() -> Draft202012Validator:
    schema = alert_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def alert_errors(payload: dict[str, Any]) -> list[str]:
    """Every violation as 'path: message' (empty when the payload is valid)."""
    errors = sorted(alert_validator().iter_errors(payload), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


@cache
def counts_validator() -> Draft202012Validator:
    schema = json.loads(resources.files("gateway.events").joinpath("counts.schema.json").read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_counts(payload: dict[str, Any]) -> None:
    """Raise ValueError listing every violation of the live counts schema (gw.counts/1)."""
    errors = sorted(counts_validator().iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        raise ValueError("counts payload violates gw.counts/1: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors))


def validate_alert(payload: dict[str, Any]) -> None:
    """Raise ValueError listing every violation of the alert schema."""
    errors = alert_errors(payload)
    if errors:
        raise ValueError(f"alert payload violates {SCHEMA_ID}: " + "; ".join(errors))
