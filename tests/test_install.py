"""systemd/install.sh for real, into temporary directories: a real venv with the gateway in it,
the starter config passing `gateway check`, the unit passing `systemd-analyze verify`, and a
second run (an upgrade) keeping the installer's edited config and the undelivered outbox."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REPO, YOLOX_NANO


def install(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GATEWAY_PREFIX": str(tmp_path / "opt"), "GATEWAY_ETC": str(tmp_path / "etc"),
           "GATEWAY_STATE": str(tmp_path / "state"), "GATEWAY_UNIT_DIR": str(tmp_path / "units")}
    (tmp_path / "units").mkdir(exist_ok=True)
    return subprocess.run(["bash", str(REPO / "systemd" / "install.sh"), "--no-apt", "--no-user",
                           "--no-systemctl", *extra], env=env, capture_output=True, text=True, timeout=600)


def test_install_then_upgrade_keeps_config_and_outbox(tmp_path: Path) -> None:
    first = install(tmp_path, "--model", str(YOLOX_NANO))
    assert first.returncode == 0, first.stdout + first.stderr
    gateway = tmp_path / "opt" / "venv" / "bin" / "gateway"
    config = tmp_path / "etc" / "gateway.yaml"
    assert (tmp_path / "opt" / "models" / "yolox_nano.onnx").exists()
    assert oct((tmp_path / "etc" / "gateway.env").stat().st_mode & 0o777) == "0o640"
    check = subprocess.run([str(gateway), "check", "-c", str(config)], capture_output=True, text=True)
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr

    unit = (tmp_path / "units" / "gateway.service").read_text()
    assert f"ExecStart={gateway} --log-format json run -c {config}" in unit
    verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "units" / "gateway.service")],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr

    config.write_text(config.read_text() + "# edited by the installer\n")
    outbox = tmp_path / "state" / "outbox.sqlite3"
    outbox.write_bytes(b"undelivered alerts")
    second = install(tmp_path)  # upgrade: no --model needed, the installed one is kept
    assert second.returncode == 0, second.stdout + second.stderr
    assert config.read_text().endswith("# edited by the installer\n")
    assert outbox.read_bytes() == b"undelivered alerts"


def test_first_install_without_a_model_says_what_is_missing(tmp_path: Path) -> None:
    result = install(tmp_path)
    assert result.returncode == 2
    assert "no detector model: give --model FILE" in result.stderr
