"""Reading YAML text for the configuration loader: line numbers, readable syntax messages,
include globs, and the small tree helpers the loader's steps share.

Pure functions over ruamel.yaml's nodes and plain Python values; the loader (loader.py) holds the
state they work on.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from gateway.config.keypaths import Key, KeyPath

MAX_DEPTH = 40
"""Nesting deeper than this is no configuration (the deepest real key path is about 8 levels)."""


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def line_at(text: str, position: int | None) -> int:
    return text.count("\n", 0, position or 0) + 1


def huge_number_line(text: str) -> int:
    match = re.search(r"\d{1000,}", text)
    return line_at(text, match.start()) if match else 0


def deepest_line(text: str) -> int:
    """The first line where brackets or indentation pass MAX_DEPTH levels (for the error)."""
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) - len(line.lstrip(" -")) > 2 * MAX_DEPTH:
            return number
        for char in line:
            depth += (char in "[{") - (char in "]}")
            if depth > MAX_DEPTH:
                return number
    return 0


def one_based(zero_based: int | None) -> int:
    return (zero_based or 0) + 1


def item_line(node: Any, kind: str, key: Any, fallback: int) -> int:
    """Line of a map key or list item; a key merged in with `<<: *anchor` has the anchor's line."""
    try:
        return one_based(getattr(node.lc, kind)(key)[0])
    except (AttributeError, KeyError, IndexError, TypeError):
        pass
    for merged in getattr(node, "merge", None) or ():
        if isinstance(merged, dict) and key in merged:
            return item_line(merged, kind, key, fallback)
    return fallback


def plain_key(key: Any) -> Key:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        return str(key)
    return str(key) if isinstance(key, str) else int(key)


def mark_line(error: MarkedYAMLError) -> int:
    mark = error.problem_mark or error.context_mark
    return one_based(mark.line) if mark is not None else 0


def duplicate_key_message(error: DuplicateKeyError) -> str:
    # ruamel's own text quotes both values, which may be passwords: name the key only.
    match = re.search(r'duplicate key "(.*?)" with value', str(error.problem))
    key = f" '{match.group(1)}'" if match else ""
    first = f" (the map starts at line {one_based(error.context_mark.line)})" if error.context_mark else ""
    return f"duplicate key{key}: each key may appear only once in a map{first}"


def syntax_message(error: MarkedYAMLError) -> str:
    problem = str(error.problem or error.context or "invalid YAML")
    if "alias" in problem or "anchor" in problem:
        # The name after * or & is not echoed: it may be a secret's fragment typed in the wrong place.
        return ("YAML syntax error: an undefined alias (a *name without an &name anchor before it in the same "
                "file; anchors do not reach into included files)" if "undefined alias" in problem
                else "YAML syntax error: a malformed alias or anchor (*name or &name)")
    message = f"YAML syntax error: {problem}"
    if "'\\t'" in problem:
        message += " (indent with spaces, not tabs)"
    elif (error.context and error.context_mark and error.problem_mark
          and error.context_mark.line != error.problem_mark.line):
        message += f" ({error.context} started at line {one_based(error.context_mark.line)})"
    return message


def expand(pattern: str, base: Path) -> list[str]:
    """Include targets for one entry, relative to `base` unless absolute; globs sorted."""
    pattern = os.path.expanduser(pattern)
    if glob.has_magic(pattern):
        return sorted(name for name in glob.glob(pattern, root_dir=base) if (base / name).is_file())
    return [pattern] if (base / pattern).is_file() else []


def deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [deep_copy(item) for item in value]
    return value


def set_at(data: Any, path: KeyPath, value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value
