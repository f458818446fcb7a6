"""config/example.yaml keeps its promise: every key the gateway reads, in a file that passes
`gateway check`.

The keys come from the pydantic models themselves (tests/config_keys.py), so a field added to
any section fails here until the example shows it. A few keys cannot be live in one valid
file (a file that must exist on the installed box, a key valid only in another mode); those
must at least be written there as commented-out lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from ruamel.yaml import YAML

from config_keys import data_key_paths, model_key_paths
from conftest import REPO
from gateway.config.models import GatewayConfig

EXAMPLE = REPO / "config" / "example.yaml"

SHOWN_COMMENTED: dict[str, tuple[str, str]] = {
    "cameras[].counting.model": (r"#\s*model:", "the model file must exist; by default it is the file the "
                                                "page's 标注人数 tool writes"),
    "cameras[].tiling.grid": (r"#\s*grid:", "only valid with mode: grid"),
    "outputs[]<webhook>.ca_file": (r"#\s*ca_file:", "the CA file must exist on the installed box"),
    "outputs[]<mqtt>": (r"#\s*- type: mqtt", "one MQTT connection: the top-level mqtt: section is that output"),
}
"""Key path (and everything under it) -> (the commented-out line that shows it, why not live)."""


def shown_commented(path: str) -> str | None:
    for key in SHOWN_COMMENTED:
        if path == key or path.startswith((key + ".", key + "<")):
            return key
    return None


def example_environment() -> dict[str, str]:
    """Every ${NAME} the example refers to, set (tokens long enough not to be warned about)."""
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", EXAMPLE.read_text()))
    return {**os.environ, **{name: f"example-{name.lower()}-0123456789" for name in names}}


def test_every_key_of_the_models_is_in_the_example() -> None:
    every_key = model_key_paths(GatewayConfig)
    assert "outputs[]<gb28181>.channels" in every_key and "cameras[].source<onvif>.onvif.events" in every_key
    shown = data_key_paths(YAML(typ="safe").load(EXAMPLE.read_text()), GatewayConfig)
    missing = sorted(path for path in every_key - shown if shown_commented(path) is None)
    assert not missing, "config/example.yaml does not show these keys (add them, with a comment):\n" + \
        "\n".join(missing)


def test_keys_that_cannot_be_live_are_shown_as_comments() -> None:
    text = EXAMPLE.read_text()
    shown = data_key_paths(YAML(typ="safe").load(text), GatewayConfig)
    for key, (line, why) in SHOWN_COMMENTED.items():
        assert re.search(line, text), f"{key} ({why}) must be shown as a commented-out line: {line}"
        assert key not in shown, f"{key} is live in the example now: drop it from SHOWN_COMMENTED"


def test_the_example_passes_gateway_check_without_warnings() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", "config/example.yaml"], cwd=REPO,
                            env=example_environment(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config/example.yaml: OK"), result.stdout
    assert result.stderr == "", result.stderr


def test_the_example_names_every_secret_it_needs_as_a_variable() -> None:
    """No password or token is written in the example itself: each is a ${VARIABLE}."""
    secret_line = re.compile(r"^\s*(password|token|secret):\s*(\S+)", re.MULTILINE)
    secrets = secret_line.findall(EXAMPLE.read_text())
    assert len(secrets) >= 8  # cameras, NVR, site brokers, centre broker, webhook, GB/T 28181, API
    for key, value in secrets:
        assert value.startswith("${"), f"{key}: {value} is written in the file, not taken from ${{ENV}}"
