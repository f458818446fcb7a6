"""Reading README.md the way an installer does: its code blocks, the shell commands in them (with
the output the README says they print), the files it asks to create, and its YAML snippets
completed into whole configurations so the real loader can judge them.

Pure functions over text: tests/test_readme.py runs what they find.

- A block with `$ ` prompts is a transcript: each `$ ` line is a command (`\\` continues it), the
  lines after it are its documented output. Other shell blocks are scripts: every line is a
  command, and `cat > FILE <<'EOF' … EOF` writes FILE.
- A YAML snippet is a whole configuration, a part of one (top-level sections), or a part of a
  camera (`zones:`, `rules:`, `counting:` …). `complete_config` wraps it into a configuration
  and adds whatever it refers to without showing it — the camera a sensor is linked to, the
  zone a rule watches, the sensor a rule depends on — so what is left to judge is the snippet.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

GATEWAY_COMMANDS = ("gateway", ".venv/bin/gateway", "/usr/local/bin/gateway", "/opt/gateway/venv/bin/gateway")
"""How the README calls the gateway: on an installed box, and in a checkout."""
SCRIPT_LANGUAGES = ("sh", "bash", "shell")
"""Blocks whose every line is a command; a block without a language holds commands only after `$ `."""
_FENCE = re.compile(r"^(\s*)```([\w-]*)\s*$")
_HEREDOC = re.compile(r"^cat > (\S+) <<'?(\w+)'?$")
_SEGMENT_BREAKS = {";", "&&", "||", "|", "&"}


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, the README line of its first content line, its text
    (without the indentation of its fence)."""

    language: str
    line: int
    text: str


@dataclass
class Command:
    """A shell command line from the README, with the output documented below it (if any) and
    the files the README had the reader write before it."""

    line: int
    text: str
    output: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def expected_exit(self) -> int:
        """`…; echo "exit $?"` documents its exit status as `exit N`; any other command exits 0."""
        if 'echo "exit $?"' in self.text:
            for line in self.output:
                match = re.fullmatch(r"exit (\d+)", line.strip())
                if match:
                    return int(match.group(1))
        return 0


def fenced_blocks(markdown: str) -> list[Block]:
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, language = len(opening.group(1)), opening.group(2)
        first_line = index + 2  # README lines count from 1; the content starts below the fence
        body: list[str] = []
        index += 1
        while index < len(lines) and not re.match(r"^\s*```\s*$", lines[index]):
            line = lines[index]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            index += 1
        blocks.append(Block(language, first_line, "\n".join(body)))
        index += 1
    return blocks


def inline_spans(markdown: str) -> list[tuple[int, str]]:
    """`code spans` outside fenced blocks, with their line numbers."""
    spans: list[tuple[int, str]] = []
    in_fence = False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if _FENCE.match(line) or re.match(r"^\s*```\s*$", line):
            in_fence = not in_fence
            continue
        if not in_fence:
            spans += [(number, span) for span in re.findall(r"`([^`\n]+)`", line)]
    return spans


def commands(blocks: list[Block]) -> list[Command]:
    """Every shell command of the README's shell blocks, in order, each knowing the files the
    README wrote before it."""
    found: list[Command] = []
    files: dict[str, str] = {}
    for block in blocks:
        lines = block.text.splitlines()
        if block.language not in (*SCRIPT_LANGUAGES, "", "console"):
            continue
        if any(line.startswith("$ ") for line in lines):
            block_commands = _transcript_commands(block, lines)
        elif block.language in SCRIPT_LANGUAGES:
            block_commands = _script_commands(block, lines, files)
        else:
            continue  # output shown without a command (a log, a diagram)
        for command in block_commands:
            command.files = dict(files)
            found.append(command)
    return found


def _transcript_commands(block: Block, lines: list[str]) -> Iterator[Command]:
    current: Command | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("$ "):
            if current is not None:
                yield current
            start = index
            text, index = _joined(lines, index, line[2:])
            current = Command(block.line + start, text)
        elif current is not None and line.strip():
            current.output.append(line)
        index += 1
    if current is not None:
        yield current


def _script_commands(block: Block, lines: list[str], files: dict[str, str]) -> Iterator[Command]:
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        heredoc = _HEREDOC.match(line)
        if heredoc:
            path, terminator = heredoc.groups()
            end = lines.index(terminator, index + 1)
            files[path] = "\n".join(lines[index + 1:end]) + "\n"
            index = end + 1
            continue
        if line and not line.startswith("#"):
            start = index
            text, index = _joined(lines, index, line)
            yield Command(block.line + start, text)
        index += 1


def _joined(lines: list[str], index: int, text: str) -> tuple[str, int]:
    """A command with its continuation lines (after a `\\`, or inside an open quote), and the
    index of its last line."""
    while index + 1 < len(lines) and (text.endswith("\\") or not _quotes_closed(text)):
        index += 1
        text = text[:-1] + " " + lines[index].strip() if text.endswith("\\") else text + "\n" + lines[index]
    return text, index


def _quotes_closed(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def gateway_invocations(command: str) -> list[list[str]]:
    """The gateway's arguments for every `gateway …` in a shell command line, also behind `sudo`,
    after `|`, `;` or `&&`, and inside `bash -c '…'`."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    found: list[list[str]] = []
    segment: list[str] = []
    for token in [*lexer, ";"]:
        if token not in _SEGMENT_BREAKS:
            segment.append(token)
            continue
        found += _segment_invocations(segment)
        segment = []
    return found


def _segment_invocations(tokens: list[str]) -> list[list[str]]:
    while tokens and (tokens[0] == "sudo" or re.fullmatch(r"[A-Za-z_]\w*=.*", tokens[0])):
        tokens = tokens[1:]
    if not tokens:
        return []
    if tokens[0] in GATEWAY_COMMANDS:
        return [[token for token in tokens[1:] if token not in ("...", "…")]]
    if tokens[0] in ("bash", "sh") and "-c" in tokens[:-1]:
        return gateway_invocations(tokens[tokens.index("-c") + 1])
    return []


def documented_flags(span: str) -> tuple[list[str], list[str]]:
    """From a command synopsis (`gateway replay -c FILE [--fps N] …`): its leading words (the
    command and subcommand) and every flag it names."""
    words = span.split()
    if not words or words[0] not in GATEWAY_COMMANDS:
        return [], []
    leading = []
    for word in words[1:]:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        leading.append(word)
    return leading, re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", span)


# --------------------------------------------------------------------------- YAML snippets


@dataclass(frozen=True)
class ConfigShape:
    """The keys that tell a configuration fragment's level, from the models."""

    top_keys: frozenset[str]
    camera_keys: frozenset[str]
    rule_types: frozenset[str]


BASE_CAMERA_ID = "readme-camera"


def as_config(fragment: Any, shape: ConfigShape) -> dict[str, Any] | None:
    """The fragment as (part of) a whole configuration, or None when it is no configuration."""
    if isinstance(fragment, list):
        fragment = _list_section(fragment, shape)
    if not isinstance(fragment, dict) or not fragment:
        return None
    keys = set(fragment)
    if keys & shape.top_keys:
        return copy.deepcopy(fragment)
    if keys & shape.camera_keys:
        camera = {"id": BASE_CAMERA_ID, "source": {"onvif": {"host": "127.0.0.1"}}, **copy.deepcopy(fragment)}
        if "resolution" not in camera and camera.get("coordinates") != "normalized":
            camera["resolution"] = [1920, 1080]
        return {"cameras": [camera]}
    return None


def _list_section(items: list[Any], shape: ConfigShape) -> dict[str, Any] | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    if all(item.get("type") in shape.rule_types for item in items):
        return {"rules": items}
    if all("topic" in item or "onvif" in item for item in items):
        return {"sensors": items}
    if all("source" in item for item in items):
        return {"cameras": items}
    return None


def complete_config(config: dict[str, Any], model_path: str) -> dict[str, Any]:
    """`config` plus what it refers to but does not show (see the module docstring)."""
    config = copy.deepcopy(config)
    config.setdefault("gateway", {"id": "readme-gw"})
    config.setdefault("detector", {"model": model_path})
    cameras = _listed(config, "cameras")
    sensors = _listed(config, "sensors")
    for camera in cameras:
        if isinstance(camera, dict):
            _add_zones(camera)
    for sensor_id in _rule_sensors(cameras):
        _ensure(sensors, sensor_id, {"id": sensor_id, "topic": f"readme/{sensor_id}", "format": "plain"})
    for camera_id in _linked_cameras(sensors):
        _ensure(cameras, camera_id, {"id": camera_id, "source": {"onvif": {"host": "127.0.0.1"}}})
    for source, channel in _gb28181_channels(config):
        if not any(isinstance(item, dict) and item.get("id") == source for item in cameras + sensors):
            if str(channel)[10:13] == "134":
                sensors.append({"id": source, "topic": f"readme/{source}", "format": "plain"})
            else:
                cameras.append({"id": source, "source": {"onvif": {"host": "127.0.0.1"}}})
    brokers = config.setdefault("sensor_brokers", {}) if sensors else {}
    for sensor in sensors:
        if isinstance(sensor, dict) and "topic" in sensor:
            brokers.setdefault(sensor.get("broker", "site"), {})
    return config


def _listed(config: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """The section's list itself (added to in place); items that are not maps are left to the
    loader to report."""
    if not isinstance(config.get(section), list):
        config[section] = []
    items: list[dict[str, Any]] = config[section]
    return items


def _ensure(items: list[dict[str, Any]], item_id: str, item: dict[str, Any]) -> None:
    if not any(isinstance(existing, dict) and existing.get("id") == item_id for existing in items):
        items.append(item)


def _add_zones(camera: dict[str, Any]) -> None:
    """A zone over the whole picture for every zone the camera's rules and patrol name but do not draw."""
    zones = camera.setdefault("zones", [])
    drawn = {zone.get("id") for zone in zones if isinstance(zone, dict)}
    named = [rule.get("zone") for rule in camera.get("rules") or [] if isinstance(rule, dict)]
    named += [zone for stop in camera.get("patrol") or [] if isinstance(stop, dict) for zone in stop.get("zones") or []]
    width, height = (1, 1) if camera.get("coordinates") == "normalized" else camera.get("resolution") or (1, 1)
    for zone_id in dict.fromkeys(zone for zone in named if zone and zone not in drawn):
        zones.append({"id": zone_id, "polygon": [[0, 0], [width, 0], [width, height], [0, height]]})


def _rule_sensors(cameras: list[dict[str, Any]]) -> list[str]:
    found = []
    for camera in cameras:
        for rule in camera.get("rules") or [] if isinstance(camera, dict) else []:
            if isinstance(rule, dict):
                found.append(rule.get("when_sensor"))
                escalate = rule.get("escalate")
                found.append(escalate.get("sensor") if isinstance(escalate, dict) else None)
    return [sensor for sensor in found if isinstance(sensor, str)]


def _linked_cameras(sensors: list[dict[str, Any]]) -> list[str]:
    found: list[Any] = []
    for sensor in (item for item in sensors if isinstance(item, dict)):
        link = sensor.get("link")
        if isinstance(link, dict):
            found += link.get("cameras") or []
        alarm = sensor.get("onvif")
        if isinstance(alarm, dict):
            found.append(alarm.get("camera"))
    return [camera for camera in found if isinstance(camera, str)]


def _gb28181_channels(config: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for output in config.get("outputs") or []:
        if isinstance(output, dict) and output.get("type") == "gb28181":
            found += list((output.get("channels") or {}).items())
    return found


def secret_names(text: str) -> set[str]:
    """Every ${NAME} (or ${NAME:-…}) a text refers to."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
