"""What every config section is built from: strict models, ids, one-line text, secrets, and
errors that know the key path they belong to.

Unknown keys are errors (`extra="forbid"`): a typo such as `threshhold` must fail `gateway check`,
not silently fall back to a default. Text that ends up in logs, MQTT topics, HTML or YAML snippets
(names, hosts, users, secrets) must be one line: a line break in a camera name would escape the
comment of the page's YAML snippet, one in a password would forge a log line.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Ids end up in MQTT topics and URLs: no spaces, slashes, '+' or '#'."""

Ident = Annotated[str, Field(pattern=IDENT_PATTERN)]
Point = tuple[float, float]
TIME_WINDOW = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be one line of text: no line breaks or control characters")
    return value


def _one_line_secret(value: SecretStr) -> SecretStr:
    if _CONTROL.search(value.get_secret_value()):
        raise ValueError("must be one line: no line breaks or control characters (check the ${VARIABLE} "
                         "it comes from)")
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]
"""Names, hosts, users: printable text on one line."""
Secret = Annotated[SecretStr, AfterValidator(_one_line_secret)]
"""Passwords and tokens: never printed, and on one line."""


# --------------------------------------------------------------------------- located errors


class LocatedValueError(ValueError):
    """A cross-field error that knows the key path (relative to the model) it belongs to.

    Pydantic reports model-validator errors at the model itself; the loader appends `subpath`
    so `gateway check` points at the exact line (e.g. `cameras[0].rules[2].zone`).
    """

    def __init__(self, subpath: str, message: str):
        super().__init__(f"@{subpath}: {message}")
        self.subpath = subpath
        self.message = message


class LocatedErrors(ValueError):
    """Several located problems found by one validator: all are reported, not just the first."""

    def __init__(self, errors: list[LocatedValueError]):
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors


def located(subpath: str, message: str, known: set[str] | None = None) -> LocatedValueError:
    if known is not None:
        message += f" (known: {', '.join(sorted(known)) or 'none'})"
    return LocatedValueError(subpath, message)


def duplicates(section: str, ids: list[Any]) -> list[LocatedValueError]:
    seen: dict[Any, int] = {}
    problems = []
    for index, ident in enumerate(ids):
        if not isinstance(ident, str):
            continue
        if ident in seen:
            problems.append(
                located(f"{section}[{index}].id", f"duplicate id {ident!r} (first used at {section}[{seen[ident]}])")
            )
        else:
            seen[ident] = index
    return problems
