"""systemd/install.sh for real, into temporary directories: a real venv with the gateway in it,
the `gateway` command on PATH, the starter config passing `gateway check`, the unit passing
`systemd-analyze verify`, the README's walk-through from there to a checked configuration, and a
second run (an upgrade) keeping the installer's edited config and the undelivered outbox."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import REPO, YOLOX_NANO
from readme_support import fenced_blocks, secret_names
from waiting import PATIENCE_S


def install(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GATEWAY_PREFIX": str(tmp_path / "opt"), "GATEWAY_ETC": str(tmp_path / "etc"),
           "GATEWAY_STATE": str(tmp_path / "state"), "GATEWAY_UNIT_DIR": str(tmp_path / "units"),
           "GATEWAY_BIN_DIR": str(tmp_path / "bin")}
    (tmp_path / "units").mkdir(exist_ok=True)
    return subprocess.run(["bash", str(REPO / "systemd" / "install.sh"), "--no-apt", "--no-user",
                           "--no-systemctl", *extra], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A first install (with the model) under a temporary root: opt/, etc/, state/, bin/, units/."""
    root = tmp_path_factory.mktemp("install")
    first = install(root, "--model", str(YOLOX_NANO))
    assert first.returncode == 0, first.stdout + first.stderr
    return root


def test_install_then_upgrade_keeps_config_and_outbox(installed: Path) -> None:
    tmp_path = installed
    gateway = tmp_path / "opt" / "venv" / "bin" / "gateway"
    config = tmp_path / "etc" / "gateway.yaml"
    assert (tmp_path / "opt" / "models" / "yolox_nano.onnx").exists()
    assert oct((tmp_path / "etc" / "gateway.env").stat().st_mode & 0o777) == "0o640"
    command = tmp_path / "bin" / "gateway"  # /usr/local/bin/gateway on a real install
    assert command.is_symlink() and command.resolve() == gateway.resolve()
    on_path = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    check = subprocess.run(["gateway", "check", "-c", str(config)], capture_output=True, text=True, env=on_path)
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr

    unit = (tmp_path / "units" / "gateway.service").read_text()
    assert f"ExecStart={gateway} --log-format json run -c {config}" in unit
    verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "units" / "gateway.service")],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr

    config.write_text(config.read_text() + "# edited by the installer\n")
    outbox = tmp_path / "state" / "outbox.sqlite3"
    outbox.write_bytes(b"undelivered alerts")
    command.unlink()
    command.write_text("#!/bin/sh\necho another program\n")  # someone else's `gateway`: never replaced
    second = install(tmp_path)  # upgrade: no --model needed, the installed one is kept
    assert second.returncode == 0, second.stdout + second.stderr
    assert "exists and is not a link: left alone" in second.stdout
    assert command.read_text() == "#!/bin/sh\necho another program\n"
    assert config.read_text().endswith("# edited by the installer\n")
    assert outbox.read_bytes() == b"undelivered alerts"


def test_the_readme_walk_through_passes_check_on_a_fresh_install(installed: Path, tmp_path: Path) -> None:
    """README "Your own cameras" steps 3-5 as written, on the files install.sh wrote: the camera
    stanza and the mqtt:/api: sections pasted in, the secrets added to gateway.env as shown (the
    token by the README's own command), then the README's check command, with only `sudo` left
    out and /etc/gateway standing for the install's directory."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own cameras"):text.index("## Finding cameras")]
    assert "`/etc/gateway/gateway.yaml: OK — gateway …, 1 camera, 1 rule`" in section
    blocks = fenced_blocks(section)
    etc = tmp_path / "etc"
    shutil.copytree(installed / "etc", etc)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gateway").symlink_to(installed / "opt" / "venv" / "bin" / "gateway")

    config = YAML(typ="safe").load((etc / "gateway.yaml").read_text(encoding="utf-8"))
    for block in (block for block in blocks if block.language == "yaml"):
        config.update(YAML(typ="safe").load(block.text))  # replaces cameras: [], mqtt: and api:
    with (etc / "gateway.yaml").open("w", encoding="utf-8") as out:
        YAML().dump(config, out)
    [secrets] = [block.text for block in blocks if block.language == "sh"
                 and all(re.fullmatch(r"[A-Z_]+='[^']*'", line) for line in block.text.splitlines())]
    with (etc / "gateway.env").open("a", encoding="utf-8") as env_file:
        env_file.write(secrets + "\n")

    commands = [block.text for block in blocks if block.language == "sh" and "/etc/gateway/gateway.env" in block.text]
    assert len(commands) == 2  # the token appended, then the check
    env = {name: value for name, value in os.environ.items() if name not in secret_names(text)}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    results = [subprocess.run(["bash", "-c", command.replace("sudo ", "").replace("/etc/gateway", str(etc))],
                              env=env, capture_output=True, text=True, timeout=120) for command in commands]
    assert results[0].returncode == 0 and re.fullmatch(r"API_TOKEN='[0-9a-f]{32}'\n", results[0].stdout)
    check = results[1]
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"{etc}/gateway.yaml: OK — gateway ") and check.stdout.endswith(
        ", 1 camera, 1 rule\n"), check.stdout
    assert check.stderr == ""


def test_first_install_without_a_model_says_what_is_missing(tmp_path: Path) -> None:
    result = install(tmp_path)
    assert result.returncode == 2
    assert "no detector model: give --model FILE" in result.stderr


def test_help_is_the_header_only(tmp_path: Path) -> None:
    result = install(tmp_path, "--help")
    assert result.returncode == 0 and result.stdout.startswith("Install or upgrade the gateway")
    assert "set -euo" not in result.stdout and not result.stdout.startswith("\n")


@pytest.mark.parametrize("script", ["systemd/install.sh", ".ci/setup"])
def test_32_bit_systems_and_old_pythons_are_refused_with_the_reason(tmp_path: Path, script: str) -> None:
    def run(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO / script), "--no-apt"] if "install" in script
                              else ["bash", str(REPO / script)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "GATEWAY_PREFIX": str(tmp_path / "opt"), **env})

    armv7 = run(GATEWAY_ARCH="armv7l")
    assert armv7.returncode == 1 and "64-bit Raspberry Pi OS (bookworm)" in armv7.stderr
    old_python = tmp_path / "python3.9"
    old_python.write_text("#!/bin/sh\necho 3.9\n")
    old_python.chmod(0o755)
    old = run(GATEWAY_PYTHON=str(old_python))
    assert old.returncode == 1 and "Python 3.9 is too old" in old.stderr


def test_the_demo_stops_the_broker_it_started(tmp_path: Path) -> None:
    for port in (1883, 8080):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} is taken: the demo needs it"
    demo = subprocess.Popen(["bash", str(REPO / ".ci" / "demo")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        for line in demo.stdout:  # ends if the demo dies: then the assertion below says why
            seen.append(line)
            if "web page on http://" in line:
                break
        assert any("started a local MQTT broker" in line for line in seen), "".join(seen)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", 1883)) == 0
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal
        rest = demo.communicate(timeout=2 * PATIENCE_S)[0]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode in (0, 130), rest
    assert "stopped the MQTT broker it had started" in rest
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 1883)) != 0  # nothing left listening
