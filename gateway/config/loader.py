"""Read the YAML configuration into a validated `GatewayConfig`, remembering where every key is.

One file because every step reads and writes the same state of one `_Reader` (the merged data,
its key -> line map, the issues so far); the error wording lives in errors.py, and the pure
helpers for YAML text (line numbers, syntax messages, include globs) in yamltext.py.

The steps, each a short method of `_Reader`:
1. parse each file with ruamel.yaml's round-trip loader, which keeps line numbers, and turn it
   into plain Python while recording `key path -> (file, line)` for every key and list item;
   `${NAME}` / `${NAME:-default}` are substituted in string values on the way;
   top-level keys starting with `x-` are ignored: they hold YAML anchors (`x-cam: &cam ...`);
2. follow top-level `include:` (relative to the including file, globs sorted, each file once):
   `cameras` and `sensors` lists are concatenated, any other section may be defined only once;
3. merge `defaults:` into every camera (camera keys win, nested maps merged key by key);
4. resolve relative paths (every `Path` field of the models) against the directory of the file
   they are written in, and require the detector model file to exist;
5. validate with pydantic and map each error back to its file, line and key path;
6. run the caller's file checks on the valid configuration (files it names, such as counting
   models, whose formats belong to modules above the config: see gateway/checks.py).

Every problem found on the way becomes a `ConfigIssue`; nothing stops at the first one.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from gateway.config.errors import (
    ConfigError,
    ConfigIssue,
    Redactor,
    explain,
    format_path,
    is_secret_name,
    join_branches,
)
from gateway.config.gb28181 import Gb28181Output
from gateway.config.keypaths import Key, KeyPath, path_values
from gateway.config.models import GatewayConfig, GatewaySection
from gateway.config.yamltext import (
    MAX_DEPTH,
    deep_copy,
    deepest_line,
    duplicate_key_message,
    expand,
    first_line,
    huge_number_line,
    item_line,
    line_at,
    mark_line,
    one_based,
    plain_key,
    set_at,
    syntax_message,
)
from gateway.redaction import register_secrets, url_passwords

LIST_SECTIONS = ("cameras", "sensors")
"""Sections that included files extend; every other section is defined in exactly one file."""
MAX_FILE_BYTES = 2 * 1024 * 1024
"""A configuration file is kilobytes; anything this big is the wrong file (split cameras into includes)."""
MAX_VALUES = 100_000
"""Values across all files once YAML aliases are expanded: a thousand cameras need a tenth of this,
and a few hundred bytes of aliases referring to aliases (an 'alias bomb') would need billions."""

_ENV_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")



@dataclass(frozen=True)
class Origin:
    """Where a key is written. `shown` is the path to report for values copied from `defaults`;
    `unset_env` marks a value whose `${VAR}` was missing (its follow-on errors are noise)."""

    file: str
    line: int
    shown: KeyPath | None = None
    unset_env: bool = False


LineMap = dict[KeyPath, Origin]


FileCheck = Callable[[GatewayConfig], Iterable[tuple[KeyPath, str]]]
"""A check of files a valid configuration names: yields (key path, what is wrong)."""


def check_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None, file_checks: Sequence[FileCheck] = ()
) -> tuple[GatewayConfig | None, list[ConfigIssue]]:
    """Validate a configuration file: (config, []) when valid, else (None, every issue).

    `env` replaces `os.environ` for `${NAME}` substitution (tests, dry runs). `file_checks` run
    on a valid configuration; their problems are reported at the line of the key they name.
    """
    reader = _Reader(os.environ if env is None else env, file_checks)
    result = reader.run(Path(path), os.fspath(path))
    register_secrets(reader.secrets)  # from now on every log line, API answer and message masks them
    return result


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> GatewayConfig:
    """The validated configuration; raises `ConfigError` listing every problem."""
    config, issues = check_config(path, env)
    if config is None:
        raise ConfigError(issues)
    return config


def config_warnings(config: GatewayConfig) -> list[str]:
    """What is allowed but unwise (`gateway check` prints it; `gateway run` logs it)."""
    found = config.api.warnings()
    cameras = [camera.id for camera in config.cameras]
    sensors = {sensor.id: list(sensor.link.cameras) for sensor in config.sensors}
    for output in config.delivery_outputs:
        if isinstance(output, Gb28181Output):
            found += output.warnings(cameras, sensors)
    return found


def summary(config: GatewayConfig, path: str | os.PathLike[str]) -> str:
    """The one line `gateway check` prints for a valid file."""
    rules = sum(len(camera.rules) for camera in config.cameras)
    parts = [f"gateway {config.gateway.id}", _count(len(config.cameras), "camera"), _count(rules, "rule")]
    if config.sensors:
        parts.append(_count(len(config.sensors), "sensor"))
    return f"{os.fspath(path)}: OK — {', '.join(parts)}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class _Reader:
    """One configuration read: the merged raw data, its line map and the issues found so far."""

    def __init__(self, env: Mapping[str, str], file_checks: Sequence[FileCheck] = ()):
        self.env = env
        self.file_checks = file_checks
        self.data: dict[Any, Any] = {}
        self.lines: LineMap = {}
        self.issues: list[ConfigIssue] = []
        self.files: list[str] = []
        self.dirs: dict[str, Path] = {}
        self.loaded: set[Path] = set()
        self.secrets: set[str] = set()
        self.unreadable = False
        self.values = 0

    # ----------------------------------------------------------------- driver

    def run(self, path: Path, display: str) -> tuple[GatewayConfig | None, list[ConfigIssue]]:
        self._load(path, display, ())
        config = None
        if self.lines and not self.unreadable:  # half a configuration gives misleading errors
            self._apply_defaults()
            self._resolve_paths()
            self._check_model_file()
            self._check_data_dir()
            config = self._validate()
            if config is not None:
                for check in self.file_checks:
                    for key_path, problem in check(config):
                        self._issue_at(key_path, problem)
        issues = self._final_issues()
        return (config if not issues else None), issues

    def _issue(self, file: str, line: int, path: KeyPath, message: str) -> None:
        self.issues.append(ConfigIssue(file, line, format_path(path), message))

    def _issue_at(self, path: KeyPath, message: str) -> None:
        origin, shown = self._locate(path)
        self._issue(origin.file, origin.line, shown, message)

    def _locate(self, path: KeyPath) -> tuple[Origin, KeyPath]:
        """The deepest recorded key on `path` (a missing key is reported at its parent map)."""
        for depth in range(len(path), -1, -1):
            origin = self.lines.get(path[:depth])
            if origin is not None:
                shown = origin.shown + path[depth:] if origin.shown is not None else path
                return origin, shown
        return Origin(self.files[0] if self.files else "?", 1), path

    def _final_issues(self) -> list[ConfigIssue]:
        self._collect_secrets(self.data, ())
        redactor = Redactor(self.secrets)
        order = {name: index for index, name in enumerate(self.files)}
        unique = {replace(issue, message=redactor(issue.message)) for issue in self.issues}
        return sorted(unique, key=lambda i: (order.get(i.file, len(order)), i.line, i.path, i.message))

    def _collect_secrets(self, value: Any, path: KeyPath) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self._collect_secrets(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._collect_secrets(item, (*path, index))
        elif isinstance(value, str) and path and isinstance(path[-1], str) and is_secret_name(path[-1]):
            self.secrets.add(value)

    # ----------------------------------------------------------------- files and includes

    def _load(self, path: Path, display: str, stack: tuple[tuple[Path, str], ...]) -> None:
        real = path.resolve()
        self.loaded.add(real)
        self.files.append(display)
        self.dirs[display] = real.parent
        root = self._parse(path, display)
        if root is None:
            return
        lines: LineMap = {(): Origin(display, one_based(getattr(root.lc, "line", 0)))}
        try:
            data = self._plain(root, (), display, lines)
        except _Refused as refused:
            self._issue(display, refused.line, (), refused.message)
            self.unreadable = True
            return
        if not self._looks_like_configuration(data, display):
            self.unreadable = True
            return
        includes = data.pop("include", None)
        for key in [key for key in data if isinstance(key, str) and key.startswith("x-")]:
            del data[key]  # `x-...:` top-level keys only hold YAML anchors for reuse
        self._merge(data, lines, display)
        chain = (*stack, (real, display))
        for target, target_display, origin in self._includes(includes, lines, real.parent, display):
            if any(target == seen for seen, _ in chain):
                cycle = " -> ".join([name for _, name in chain] + [target_display])
                self._issue(origin.file, origin.line, ("include",), f"include cycle: {cycle}")
            elif target not in self.loaded:
                self._load(target, target_display, chain)

    def _parse(self, path: Path, display: str) -> Any:
        """The file's round-trip YAML tree, or None after recording why it cannot be used."""
        root = self._parse_tree(path, display)
        self.unreadable = self.unreadable or root is None
        return root

    def _parse_tree(self, path: Path, display: str) -> Any:
        text = self._read_text(path, display)
        if text is None:
            return None
        try:
            root = YAML(typ="rt").load(text)
        except DuplicateKeyError as error:
            self._issue(display, mark_line(error), (), duplicate_key_message(error))
            return None
        except MarkedYAMLError as error:
            self._issue(display, mark_line(error), (), syntax_message(error))
            return None
        except ReaderError as error:
            self._issue(display, line_at(text, error.position), (),
                        f"contains a character YAML does not allow (#x{error.character:04x}): is it a binary "
                        "file?" if isinstance(error.character, int) else "not readable as YAML text")
            return None
        except YAMLError as error:
            self._issue(display, 0, (), f"YAML error: {type(error).__name__}")
            return None
        except RecursionError:
            self._issue(display, deepest_line(text), (), "nested too deeply to read: not a configuration")
            return None
        except ValueError as error:  # e.g. an integer of thousands of digits
            self._issue(display, huge_number_line(text), (), f"a value cannot be read: {first_line(error)}")
            return None
        if root is None:
            self._issue(display, 1, (), "the file is empty")
            return None
        if not isinstance(root, dict):
            kind = "a list" if isinstance(root, list) else "a single value"
            self._issue(display, one_based(getattr(getattr(root, "lc", None), "line", 0)), (),
                        f"the top level must be a map of sections (gateway:, detector:, cameras:, ...), not {kind}")
            return None
        return root

    def _read_text(self, path: Path, display: str) -> str | None:
        """The file's text, or None after recording why: missing, not a regular file (a FIFO
        would block `check` forever), too big, or not UTF-8."""
        try:
            info = path.stat()
        except FileNotFoundError:
            self._issue(display, 0, (), "file not found")
            return None
        except OSError as error:
            self._issue(display, 0, (), f"cannot read the file: {error.strerror}")
            return None
        if not stat.S_ISREG(info.st_mode):
            self._issue(display, 0, (), "not a regular file (a directory, pipe or device): refused")
            return None
        if info.st_size > MAX_FILE_BYTES:
            self._issue(display, 0, (), f"the file is {info.st_size / 2**20:.1f} MB; a configuration file is at "
                        f"most {MAX_FILE_BYTES // (1024 * 1024)} MB: is it the right file?")
            return None
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            self._issue(display, 0, (), f"not UTF-8 text (byte {error.start}); save the file as UTF-8")
        except OSError as error:
            self._issue(display, 0, (), f"cannot read the file: {error.strerror}")
        return None

    def _looks_like_configuration(self, data: dict[Any, Any], display: str) -> bool:
        """A file whose top-level keys are mostly not sections is not a configuration (e.g.
        `include: [/etc/shadow]`): say so with a count, never echoing what the file holds."""
        keys = [key for key in data if not (isinstance(key, str) and key.startswith("x-"))]
        unknown = [key for key in keys if key not in SECTIONS]
        if len(unknown) >= 2 and len(unknown) * 2 > len(keys):
            self._issue(display, 0, (), f"not a gateway configuration file: {len(unknown)} of its {len(keys)} "
                        f"top-level keys are not sections ({', '.join(sorted(SECTIONS))})")
            return False
        return True

    def _includes(
        self, value: Any, lines: LineMap, base: Path, display: str
    ) -> list[tuple[Path, str, Origin]]:
        """(file, display name, origin of the include entry) for each file `include:` names."""
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            origin = lines[("include",)]
            self._issue(origin.file, origin.line, ("include",), "must be a file name or a list of file names")
            return []
        found = []
        for index, pattern in enumerate(items):
            origin = lines.get(("include", index), lines[("include",)])
            where = ("include", index) if isinstance(value, list) else ("include",)
            if not isinstance(pattern, str) or not pattern:
                self._issue(origin.file, origin.line, where, "must be a file name")
                continue
            names = expand(pattern, base)
            if not names:
                problem = "matches no files" if glob.has_magic(pattern) else "included file not found"
                self._issue(origin.file, origin.line, where, f"{problem}: {pattern}")
            for name in names:
                shown = name if os.path.isabs(name) else os.path.normpath(os.path.join(os.path.dirname(display), name))
                found.append(((base / name).resolve(), shown, origin))
        return found

    def _merge(self, data: dict[Any, Any], lines: LineMap, display: str) -> None:
        """Add one file's sections: lists extend, any other section must be new."""
        if not self.lines:
            self.lines[()] = lines[()]
        for key, value in data.items():
            origin = lines[(key,)]
            if key not in self.data:
                self.data[key] = value
                self._take_lines(lines, key, 0)
            elif key in LIST_SECTIONS and isinstance(self.data[key], list) and isinstance(value, list):
                offset = len(self.data[key])
                self.data[key].extend(value)
                self._take_lines(lines, key, offset)
            elif key in LIST_SECTIONS:
                self._issue(origin.file, origin.line, (key,), f"'{key}' must be a list to be combined across files")
            else:
                first = self.lines[(key,)]
                self._issue(
                    origin.file, origin.line, (key,),
                    f"section '{key}' is already defined in {first.file}:{first.line} "
                    f"(only {' and '.join(LIST_SECTIONS)} may be split across files)",
                )

    def _take_lines(self, lines: LineMap, key: Key, offset: int) -> None:
        for path, origin in lines.items():
            if not path or path[0] != key:
                continue
            if offset and len(path) > 1 and isinstance(path[1], int):
                path = (key, path[1] + offset, *path[2:])
            elif len(path) == 1 and path in self.lines:
                continue
            self.lines[path] = origin

    # ----------------------------------------------------------------- YAML tree -> plain data

    def _plain(self, node: Any, path: KeyPath, file: str, lines: LineMap) -> Any:
        """Plain dict/list/str/int/float/bool/None, recording the line of every key and item.

        Raises _Refused past MAX_VALUES values (aliases are expanded here) or MAX_DEPTH levels."""
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Refused(lines[path].line, f"the configuration expands to more than {MAX_VALUES:,} values "
                           "(YAML aliases that refer to aliases?): refused")
        if len(path) > MAX_DEPTH:
            raise _Refused(lines[path].line, f"nested more than {MAX_DEPTH} levels deep: not a configuration")
        if isinstance(node, dict):
            result = {}
            for key in node:
                child = (*path, plain_key(key))
                lines[child] = Origin(file, item_line(node, "key", key, lines[path].line))
                result[child[-1]] = self._plain(node[key], child, file, lines)
            return result
        if isinstance(node, list):
            items = []
            for index, item in enumerate(node):
                child = (*path, index)
                lines[child] = Origin(file, item_line(node, "item", index, lines[path].line))
                items.append(self._plain(item, child, file, lines))
            return items
        if isinstance(node, str):
            return self._substitute(str(node), path, lines)
        if isinstance(node, bool):
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        return node

    def _substitute(self, text: str, path: KeyPath, lines: LineMap) -> str:
        """`${NAME}` and `${NAME:-default}` (default when unset or empty); `$${` is a literal `${`."""
        if "${" not in text:
            return text

        def replace_reference(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            body = match.group("body")
            if body is None:
                self._env_problem(path, lines, "unterminated ${ (write $${ for a literal ${)")
                return ""
            name, has_default, default = body.partition(":-")
            if not _ENV_NAME.match(name):
                self._env_problem(path, lines, "bad environment reference: use ${NAME} or ${NAME:-default}")
                return ""
            value = self.env.get(name)
            if not value and has_default:
                value = default
            if value is None:
                self._env_problem(path, lines, f"environment variable {name} is not set")
                return ""
            if value and (is_secret_name(name) or _secret_place(path)):
                self.secrets.add(value)
            if value:
                substituted.append(value)
            return value

        substituted: list[str] = []
        result = _ENV_REFERENCE.sub(replace_reference, text)
        if "://" in result:
            self.secrets.update(_url_secrets(result, substituted))
        return result

    def _env_problem(self, path: KeyPath, lines: LineMap, message: str) -> None:
        origin = lines[path]
        lines[path] = replace(origin, unset_env=True)
        self._issue(origin.file, origin.line, path, message)

    # ----------------------------------------------------------------- defaults and paths

    def _apply_defaults(self) -> None:
        """Copy `defaults` into every camera that does not set the key itself."""
        defaults, cameras = self.data.get("defaults"), self.data.get("cameras")
        if not isinstance(defaults, dict) or not isinstance(cameras, list):
            return
        default_lines = [(path, origin) for path, origin in self.lines.items() if path[:1] == ("defaults",)]
        for index, camera in enumerate(cameras):
            if isinstance(camera, dict):
                self._merge_defaults(camera, defaults, ("cameras", index), ("defaults",), default_lines)

    def _merge_defaults(
        self, camera: dict[Any, Any], defaults: dict[Any, Any], target: KeyPath, source: KeyPath,
        default_lines: list[tuple[KeyPath, Origin]],
    ) -> None:
        for key, value in defaults.items():
            if key not in camera:
                camera[key] = deep_copy(value)
                prefix = (*source, key)
                for path, origin in default_lines:
                    if path[: len(prefix)] == prefix:
                        self.lines[(*target, key, *path[len(prefix):])] = replace(origin, shown=path)
            elif isinstance(camera[key], dict) and isinstance(value, dict):
                self._merge_defaults(camera[key], value, (*target, key), (*source, key), default_lines)

    def _resolve_paths(self) -> None:
        """Relative paths are relative to the file they are written in, not the working directory."""
        for path, value in list(path_values(self.data, GatewayConfig)):
            if not isinstance(value, str) or not value:
                continue
            resolved = Path(value).expanduser()
            if not resolved.is_absolute():
                origin, _ = self._locate(path)
                resolved = Path(os.path.normpath(self.dirs.get(origin.file, Path.cwd()) / resolved))
            set_at(self.data, path, str(resolved))

    def _check_model_file(self) -> None:
        """A missing model is the commonest installer mistake: catch it in `check`, not at start."""
        detector = self.data.get("detector")
        model = detector.get("model") if isinstance(detector, dict) else None
        if not isinstance(model, str):
            return  # absent or of the wrong type: validation says so
        if not model:
            self._issue_at(("detector", "model"), "needs the path of the model file")
        elif not Path(model).is_file():
            problem = "is a directory, not a model file" if Path(model).is_dir() else "model file not found"
            self._issue_at(("detector", "model"), f"{problem}: {model}")

    def _check_data_dir(self) -> None:
        """`gateway run` must be able to write its outbox: a read-only data_dir is an error now."""
        section = self.data.get("gateway")
        value = section.get("data_dir") if isinstance(section, dict) else None
        if value is not None and not isinstance(value, str):
            return  # the wrong type: validation says so
        where = Path(value or GatewaySection.model_fields["data_dir"].default)
        existing = next((p for p in (where, *where.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            self._issue_at(("gateway", "data_dir"), f"{existing} is not a directory")
        elif existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            verb = "is" if existing == where else f"cannot be created ({existing} is)"
            self._issue_at(("gateway", "data_dir"), f"{where} {verb} not writable by this user "
                           f"(uid {os.getuid()}): create it and give it to the user the gateway runs as")

    # ----------------------------------------------------------------- validation

    def _validate(self) -> GatewayConfig | None:
        try:
            return GatewayConfig.model_validate(self.data)
        except ValidationError as error:
            self._validation_issues(error)
            return None

    def _validation_issues(self, error: ValidationError) -> None:
        branches: dict[KeyPath, list[str]] = {}
        for item in error.errors():
            for path, message, branch in explain(item):
                if branch:
                    branches.setdefault(path, []).append(message)
                else:
                    self._validation_issue(path, message)
        for path, messages in branches.items():
            self._validation_issue(path, join_branches(messages))

    def _validation_issue(self, path: KeyPath, message: str) -> None:
        origin, shown = self._locate(path)
        if not origin.unset_env:
            self._issue(origin.file, origin.line, shown, message)


# --------------------------------------------------------------------------- helpers


SECTIONS = frozenset({*GatewayConfig.model_fields, "include"})


class _Refused(Exception):
    """The file is no configuration (too many values, too deep): one issue, at `line`."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


def _secret_place(path: KeyPath) -> bool:
    """A value written under a secret-looking key (password, token, ...)."""
    return bool(path) and isinstance(path[-1], str) and is_secret_name(path[-1])


def _url_secrets(url: str, substituted: list[str]) -> list[str]:
    """The ${ENV} values that make up a URL's password or query string (where cameras take
    credentials and tokens); hosts, ports and paths stay readable in logs."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return list(substituted)
    private = "\n".join([*url_passwords(url), query])
    return [value for value in substituted if value in private]
