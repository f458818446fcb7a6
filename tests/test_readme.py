"""README.md (with its Chinese 安装指南) works when followed literally.

- Every `gateway …` command in its code blocks that is safe to run here — `check` of a file the
  README provides, `replay` of the sample video, any `--help` — runs, in a fresh checkout-shaped
  directory (`config/` and `../shared` beside it), with the documented exit status and printing
  the documented lines (times, ids and speeds aside). `head` of a file such a command wrote is
  run too.
- Every flag the README gives a `gateway` command (code blocks, tables, inline) is in that
  command's `--help`.
- Every YAML snippet parses, and every configuration snippet passes the real loader once
  completed into a whole file (files the installed box provides, such as a CA, aside).
- Every flow-style YAML written inline (`source: {…}`) parses.
- The GB/T 28181 alarm tables list every alert type with the code the gateway sends, and the
  Chinese alert names in tables are the gateway's own.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from config_keys import model_key_paths
from conftest import REPO, SHARED, YOLOX_NANO
from gateway.checks import check_site
from gateway.config.models import Camera, GatewayConfig
from gateway.events.types import ALERT_TYPES
from gateway.outputs.gb28181.alarm_types import alarm_code
from readme_support import (
    Command,
    ConfigShape,
    as_config,
    commands,
    complete_config,
    documented_flags,
    fenced_blocks,
    gateway_invocations,
    inline_spans,
    secret_names,
)

README = REPO / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = fenced_blocks(TEXT)
COMMANDS = commands(BLOCKS)
SHAPE = ConfigShape(
    top_keys=frozenset(GatewayConfig.model_fields) | {"include"},
    camera_keys=frozenset(Camera.model_fields),
    rule_types=frozenset(("crowd", "gathering", "growth", "loitering", "intrusion")),
)
MISSING_FILE = re.compile(r"file not found|no such file")
"""Issues about a file the installed box provides (a CA, a counting model the page wrote)."""


# --------------------------------------------------------------------------- commands that run


def runnable(command: Command) -> bool:
    """Safe here: one gateway command (optionally followed by `echo "exit $?"`) that only reads
    what the README provides, or `head` of a file."""
    text = command.text.removesuffix('; echo "exit $?"')
    if re.fullmatch(r"head -n \d+ \S+", text):
        return True
    invocations = gateway_invocations(text)
    if len(invocations) != 1 or not re.match(r"^(\.venv/bin/)?gateway ", text):
        return False
    args = invocations[0]
    if "--help" in args:
        return True
    config = _value(args, "-c")
    known_config = config is not None and (
        config in command.files or (not Path(config).is_absolute() and (REPO / config).is_file()))
    if args[:1] == ["check"]:
        return known_config
    if args[:1] == ["replay"]:
        return known_config and (_value(args, "--source") or "").startswith("../shared/")
    return False


def _value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args[:-1] else None


RUNNABLE = [command for command in COMMANDS if runnable(command)]


@dataclass(frozen=True)
class Ran:
    returncode: int
    lines: list[str]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Ran]:
    """Every runnable command, in README order (later ones read what earlier ones wrote), in a
    directory shaped like a checkout: `config/` and `../shared` beside it."""
    root = tmp_path_factory.mktemp("installer")
    checkout = root / "checkout"
    checkout.mkdir()
    (checkout / "config").symlink_to(REPO / "config")
    (root / "shared").symlink_to(SHARED)
    env = {name: value for name, value in os.environ.items() if name not in secret_names(TEXT)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {command.line: _run(command, checkout, env) for command in RUNNABLE}


def _run(command: Command, checkout: Path, env: dict[str, str]) -> Ran:
    text = command.text.removesuffix('; echo "exit $?"')
    if text.startswith("head "):
        argv = text.split()
    else:
        argv = [sys.executable, "-m", "gateway", *gateway_invocations(text)[0]]
    written: dict[str, str] = {}  # where the test wrote a file the README writes -> the README's path
    for documented, content in command.files.items():
        if documented in argv:
            local = checkout / Path(documented).name
            local.write_text(content, encoding="utf-8")
            argv[argv.index(documented)] = str(local)
            written[str(local)] = documented
    result = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    lines = (result.stderr + result.stdout).splitlines()
    for written_at, documented in written.items():
        lines = [line.replace(written_at, documented) for line in lines]
    return Ran(result.returncode, lines)


VOLATILE = [
    (re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "), ""),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\([0-9a-f]{8}, seq"), "(<event>, seq"),
    (re.compile(r"in [\d.]+ s \([\d.]+ fps\)"), "in <seconds> s (<speed> fps)"),
    (re.compile(r"frame \d+: "), "frame <n>: "),
    (re.compile(r"\d+人"), "<n>人"),
    (re.compile(r"\d+ events, \d+ alert messages"), "<n> events, <m> alert messages"),
]
"""What differs from run to run: clock times, event ids, the machine's speed; and what another
CPU may shift by a frame (onnxruntime's kernels differ in the last bits): when an alert fires,
how many people it counts, how many events a whole replay makes. The alerts' kinds and order,
and the frames analysed, must stay as documented."""


def normalized(line: str) -> str:
    line = line.rstrip()
    for pattern, replacement in VOLATILE:
        line = pattern.sub(replacement, line)
    return line


def same_line(documented: str, actual: str) -> bool:
    """Equal once normalized; JSON lines equal as data, coordinates to half a pixel."""
    if documented.startswith("{"):
        try:
            return _close(json.loads(documented), json.loads(actual))
        except json.JSONDecodeError:
            return False
    return normalized(documented) == normalized(actual)


def _close(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        return isinstance(actual, int | float) and math.isclose(expected, actual, abs_tol=0.5)
    if isinstance(expected, dict):
        return isinstance(actual, dict) and expected.keys() == actual.keys() and all(
            _close(expected[key], actual[key]) for key in expected)
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            _close(left, right) for left, right in zip(expected, actual, strict=True))
    return bool(expected == actual)


def _command_id(command: Command) -> str:
    return f"README.md:{command.line} {command.text[:70]}"


def test_the_readme_has_the_commands_an_installer_runs() -> None:
    """The walk-through's commands are found (the parser reads the README it tests)."""
    texts = [" ".join(args) for command in COMMANDS for args in gateway_invocations(command.text)]
    assert "check -c config/demo.yaml" in texts and "check -c /etc/gateway/gateway.yaml" in texts
    assert any(text.startswith("discover --user admin") for text in texts)
    assert any(text.startswith("replay -c config/demo.yaml") for text in texts)
    assert len(RUNNABLE) >= 6


@pytest.mark.parametrize("command", RUNNABLE, ids=_command_id)
def test_documented_command_runs_as_documented(command: Command, ran: dict[int, Ran]) -> None:
    result = ran[command.line]
    shown = "\n".join(result.lines)
    assert result.returncode == command.expected_exit(), f"README.md:{command.line}: exit {result.returncode}\n{shown}"
    documented = [line for line in command.output
                  if line.strip() not in ("…", "...") and not re.fullmatch(r"exit \d+", line.strip())]
    position = 0
    for line in documented:
        while position < len(result.lines) and not same_line(line, result.lines[position]):
            position += 1
        assert position < len(result.lines), (
            f"README.md:{command.line}: the documented line\n  {line}\nis not printed (in this order); "
            f"the command printed:\n{shown}")
        position += 1


# --------------------------------------------------------------------------- flags


@cache
def help_text(*command: str) -> str:
    result = subprocess.run([sys.executable, "-m", "gateway", *command, "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, f"gateway {' '.join(command)} --help: {result.stderr}"
    return result.stdout


def _flags_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


def _flag_problems(where: str, leading: list[str], flags: list[str]) -> list[str]:
    """Flags of `gateway <leading…>` that its --help does not list (global flags before it)."""
    path: list[str] = []
    for word in leading:
        if re.search(rf"^\s+{re.escape(word)}\s", help_text(*path), re.MULTILINE):
            path.append(word)
        else:
            break
    if not path and leading:
        return [f"{where}: gateway has no command {leading[0]!r}"]
    known = _flags_in(help_text(*path)) | _flags_in(help_text())
    return [f"{where}: gateway {' '.join(path)} has no flag {flag}" for flag in flags if flag not in known]


def test_every_documented_flag_is_in_the_commands_help() -> None:
    problems: list[str] = []
    checked = 0
    for command in COMMANDS:
        for args in gateway_invocations(command.text):
            leading = [word for word in args if not word.startswith("-")][:2]
            flags = [arg.split("=")[0] for arg in args if re.match(r"--?[A-Za-z]", arg)]
            problems += _flag_problems(f"README.md:{command.line}", leading, flags)
            checked += 1
    for line, span in inline_spans(TEXT):
        leading, flags = documented_flags(span)
        if leading or flags:
            problems += _flag_problems(f"README.md:{line}", leading, flags)
            checked += 1
    assert checked >= 30
    assert not problems, "\n".join(problems)


def test_the_command_line_table_lists_every_flag_of_every_command() -> None:
    """The other way round: each command's flags are all in the Command line section."""
    section = TEXT[TEXT.index("## Command line"):TEXT.index("### Checking a configuration")]
    for command in (["check"], ["run"], ["replay"], ["calibrate", "count"], ["discover"], ["bench", "detector"]):
        flags = {flag for flag in _flags_in(help_text(*command)) if flag.startswith("--") and flag != "--help"}
        missing = sorted(flag for flag in flags if flag not in section)
        assert not missing, f"gateway {' '.join(command)}: {missing} missing from the Command line section"


# --------------------------------------------------------------------------- YAML


YAML_BLOCKS = [block for block in BLOCKS if block.language == "yaml"]


def snippet_issues(text: str, directory: Path) -> list[str]:
    """The loader's verdict on a snippet completed into a whole configuration (its issues)."""
    data = YAML(typ="safe").load(text)
    config = as_config(data, SHAPE)
    assert config is not None, "not a configuration snippet: none of its keys is a configuration key"
    path = directory / "snippet.yaml"
    dumper = YAML()
    dumper.default_flow_style = False
    with path.open("w", encoding="utf-8") as out:
        dumper.dump(complete_config(config, str(YOLOX_NANO)), out)
    env = {name: f"readme-{name.lower()}-0123456789" for name in secret_names(text)}
    _, issues = check_site(path, env)
    return [str(issue) for issue in issues]


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda block: f"README.md:{block.line}")
def test_yaml_snippet_parses_and_passes_check(block: Any, tmp_path: Path) -> None:
    try:
        issues = snippet_issues(block.text, tmp_path)
    except YAMLError as error:
        pytest.fail(f"README.md:{block.line}: not valid YAML: {error}")
    problems = [issue for issue in issues if not MISSING_FILE.search(issue)]
    assert not problems, f"README.md:{block.line}:\n" + "\n".join(problems) + "\n---\n" + block.text


def test_yaml_snippets_are_found_in_both_languages() -> None:
    guide = TEXT.index("## 安装指南")
    lines_before_guide = TEXT[:guide].count("\n")
    assert sum(block.line > lines_before_guide for block in YAML_BLOCKS) >= 5
    assert sum(block.line <= lines_before_guide for block in YAML_BLOCKS) >= 10


def test_a_webhook_ca_file_must_exist_as_the_readme_says(tmp_path: Path) -> None:
    [block] = [block for block in YAML_BLOCKS if "type: webhook" in block.text and "ca_file:" in block.text]
    ca_line = next(line for line in block.text.splitlines() if "ca_file:" in line)
    assert "must exist" in ca_line
    ca_file = ca_line.split("ca_file:")[1].split()[0]
    [issue] = snippet_issues(block.text, tmp_path)
    assert f"outputs[0].ca_file: no such file: {ca_file}" in issue
    present = tmp_path / "ca.pem"
    present.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    assert snippet_issues(block.text.replace(ca_file, str(present)), tmp_path) == []


def test_every_configuration_key_is_named_in_the_english_readme() -> None:
    """Each key the models accept is written in code somewhere in the README (config/example.yaml
    shows where it goes: tests/test_example_config.py)."""
    english = TEXT[:TEXT.index("## 安装指南")]
    code = "\n".join(span for _, span in inline_spans(english)) + "\n".join(
        block.text for block in fenced_blocks(english))
    names = {re.sub(r"<[^>]*>|\[\]", "", path).split(".")[-1] for path in model_key_paths(GatewayConfig)} - {"*"}
    missing = sorted(name for name in names if not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", code))
    assert not missing, f"README.md never names these configuration keys: {missing}"


FLOW_YAML = re.compile(r"^[a-z_]+: [\[{]")


def test_inline_flow_yaml_parses_and_camera_sources_pass_check(tmp_path: Path) -> None:
    """`source: {onvif: {… password: "${CAM_PASSWORD}" …}}` as written in the text, not only
    in code blocks (a bare ${…} inside {…} is a YAML syntax error)."""
    spans = [(line, span) for line, span in inline_spans(TEXT) if FLOW_YAML.match(span)]
    sources = [(line, span) for line, span in spans if span.startswith("source: {")]
    assert len(sources) >= 4
    for line, span in spans:
        try:
            YAML(typ="safe").load(span)
        except YAMLError as error:
            pytest.fail(f"README.md:{line}: `{span}` is not valid YAML: {error}")
    for line, span in sources:
        problems = [issue for issue in snippet_issues(span, tmp_path) if not MISSING_FILE.search(issue)]
        assert not problems, f"README.md:{line}: `{span}`:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- files named


INSTALLER_FILES = {"config/site.yaml"}
"""Files the README has the installer write (their own site's configuration)."""


def test_every_file_of_the_project_the_readme_names_exists() -> None:
    named = set(re.findall(r"(?<![\w./-])((?:gateway|detectors|config|systemd|tests|bench|\.ci)/[\w./-]*\w)", TEXT))
    assert len(named) >= 30
    missing = sorted(path for path in named - INSTALLER_FILES if not (REPO / path).exists())
    assert not missing, f"README.md names files that do not exist: {missing}"


# --------------------------------------------------------------------------- alert types in tables


def table_rows(marker: str) -> list[list[str]]:
    """The rows (cells, stripped) of the Markdown table whose header contains `marker`."""
    lines = TEXT.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("|") and marker in line)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _code(cell: str) -> int | None:
    match = re.match(r"(\d+)", cell)
    return int(match.group(1)) if match else None


@pytest.mark.parametrize("marker, type_column", [("AlarmMethod", 0), ("报警方式", 1)])
def test_gb28181_alarm_tables_list_every_alert_type_with_its_code(marker: str, type_column: int) -> None:
    rows = {row[type_column].strip("`"): row for row in table_rows(marker)}
    assert sorted(rows) == sorted(ALERT_TYPES)
    for name, row in rows.items():
        code = alarm_code(name)
        method, alarm_type = row[type_column + 1], row[type_column + 2]
        assert (_code(method), _code(alarm_type)) == (code.method, code.type), f"{name}: {row}"


def test_chinese_alert_names_in_tables_are_the_gateways() -> None:
    titles = {alert.title_zh for alert in ALERT_TYPES.values()}
    checked = 0
    for line in TEXT.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")] if line.startswith("|") else []
        names = [cell.strip("`") for cell in cells if cell.strip("`") in ALERT_TYPES and cell.startswith("`")]
        shown = [cell for cell in cells if cell in titles]
        if len(names) == 1 and shown:
            assert shown == [ALERT_TYPES[names[0]].title_zh], line
            checked += 1
    assert checked >= 15
