"""Configuration problems as installers read them: `file:line: key.path: what is wrong`.

Pydantic's errors are precise but speak Python ("Extra inputs are not permitted", locations
with union tags in them). This module turns each one into a `ConfigIssue` message in the
installer's terms and keeps secrets out of every message: pydantic echoes input values, and a
password that ends up in a terminal or a ticket is a leaked password.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic_core import ErrorDetails

from gateway.config.base import IDENT_PATTERN, LocatedErrors, LocatedValueError
from gateway.config.keypaths import Key, LocInfo, describe_loc, model_keys
from gateway.config.models import GatewayConfig
from gateway.redaction import mask_values, redact


@dataclass(frozen=True)
class ConfigIssue:
    """One problem, pinned to the file and line where the offending key is written.

    `line` is 1-based; 0 means the problem concerns the file as a whole (e.g. it is missing).
    `path` is the key path (`cameras[2].zones[0].polygon`), empty for file-level problems.
    """

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; `issues` lists every problem found, in file and line order."""

    def __init__(self, issues: Iterable[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


# --------------------------------------------------------------------------- key paths

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def format_path(path: Iterable[Key]) -> str:
    """('cameras', 2, 'zones', 0, 'polygon') -> 'cameras[2].zones[0].polygon'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_path(text: str) -> tuple[Key, ...]:
    """The inverse of `format_path`, for the sub-paths carried by `LocatedValueError`."""
    return tuple(int(index) if index else name for name, index in _PATH_PART.findall(text))


# --------------------------------------------------------------------------- secrets

_SECRET_KEY = re.compile(r"(pass(word|wd)?|token|secret|api_?key|psk)$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Keys and environment variables whose values must never be shown (`password`, `*_TOKEN`)."""
    return bool(_SECRET_KEY.search(name))


class Redactor:
    """Masks URL passwords and every secret value of this configuration in a message."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        return mask_values(redact(text), self._secrets)


# --------------------------------------------------------------------------- pydantic errors


def explain(error: ErrorDetails) -> list[tuple[tuple[Key, ...], str, bool]]:
    """(key path, message, from a union branch) for one pydantic error.

    A `LocatedValueError` (or several, from one validator) contributes its own sub-path, so a
    cross-field problem lands on the key it is about rather than on the whole model.
    """
    info = describe_loc(tuple(error["loc"]), GatewayConfig)
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, LocatedErrors):
        return [(info.path + parse_path(e.subpath), e.message, False) for e in cause.errors]
    if isinstance(cause, LocatedValueError):
        return [(info.path + parse_path(cause.subpath), cause.message, False)]
    path, message = _message(error, info)
    return [(path, message, info.branch)]


def join_branches(messages: list[str]) -> str:
    """One message for the per-branch errors of a union such as `int | [w, h]`."""
    nouns = [m.removeprefix("must be ") for m in messages]
    if all(m.startswith("must be ") for m in messages):
        return "must be " + " or ".join(dict.fromkeys(nouns))
    return "; or: ".join(dict.fromkeys(messages))


_TYPE_NOUNS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a map (key: value lines)",
    "model_type": "a map (key: value lines)",
    "model_attributes_type": "a map (key: value lines)",
    "path_type": "a file path",
    "finite_number": "a finite number",
}

_LIMITS = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
}


def _message(error: ErrorDetails, info: LocInfo) -> tuple[tuple[Key, ...], str]:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    path = info.path
    if kind == "missing":
        return path, "required key is missing"
    if kind == "extra_forbidden":
        return path, _unknown_key(path[-1] if path else "?", info)
    if kind == "union_tag_invalid":
        key = str(ctx.get("discriminator", "")).strip("'")
        return (*path, key) if key.isidentifier() else path, _unknown_tag(key, str(ctx.get("tag")), info.labels)
    if kind == "union_tag_not_found":
        key = str(ctx.get("discriminator", "")).strip("'")
        return path, f"needs a '{key}' key: one of {', '.join(info.labels)}"
    if kind == "camera_source":
        return path, error["msg"] + _source_hint(value)
    if kind in _TYPE_NOUNS:
        return path, f"must be {_TYPE_NOUNS[kind]}" + _type_hint(kind, value)
    if kind in _LIMITS:
        name, template = _LIMITS[kind]
        return path, template.format(_number(ctx.get(name)))
    if kind in ("too_short", "too_long"):
        return path, _length_message(kind, ctx)
    if kind == "literal_error":
        return path, f"must be {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return path, _pattern_message(str(ctx.get("pattern")))
    return path, _clean(error["msg"])


def _number(value: Any) -> Any:
    """0.0 -> 0, 0.5 -> 0.5: limits read as the installer would write them."""
    return f"{value:g}" if isinstance(value, float) else value


def _clean(message: str) -> str:
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return re.sub(r"^@\S+: ", "", message)


def _unknown_key(key: Key, info: LocInfo) -> str:
    valid = model_keys(info.owner) if info.owner is not None else []
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}', did you mean '{close[0]}'?"
    return f"unknown key '{key}'" + (f" (valid keys here: {', '.join(valid)})" if valid else "")


def _unknown_tag(key: str, tag: str, labels: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(tag, labels, n=1, cutoff=0.6)
    hint = f", did you mean '{close[0]}'?" if close else ""
    return f"unknown {key or 'kind'} '{tag}'{hint} (one of {', '.join(labels)})"


def _source_hint(value: Any) -> str:
    if not isinstance(value, dict):
        return " as a key, e.g. source: {rtsp: rtsp://host/path}"
    for key in value:
        close = difflib.get_close_matches(str(key), ["rtsp", "nvr", "onvif", "file"], n=1, cutoff=0.5)
        if close:
            return f" (found '{key}', did you mean '{close[0]}'?)"
    return ""


def _type_hint(kind: str, value: Any) -> str:
    if value is None:
        return " (the key has no value)"
    if kind == "string_type" and isinstance(value, (int, float, bool)):
        return " (put it in quotes)"
    return ""


def _length_message(kind: str, ctx: dict[str, Any]) -> str:
    actual = ctx.get("actual_length")
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} items, got {actual}"
    return f"allows at most {ctx.get('max_length')} items, got {actual}"


def _pattern_message(pattern: str) -> str:
    if pattern == IDENT_PATTERN:
        return (
            "not a valid id: 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
            "digit (ids go into MQTT topics and URLs)"
        )
    if pattern == r"^[^#+]+$":
        return "must not be empty or contain '#' or '+' (MQTT wildcards)"
    return f"must match the pattern {pattern}"
