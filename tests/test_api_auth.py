"""Who gets in, as an attacker or a careless installer would try it: an empty `api.token`,
token guessing on every path (Bearer, cookie, login form, kiosk link), and junk sent to /login.

`gateway check` and `gateway run` run as real processes; the API runs on a real uvicorn on a
free 127.0.0.1 port (web_support.serve) and is asked over real HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from conftest import REPO, YOLOX_NANO
from gateway.api.app import ApiConfigError, create_app
from gateway.api.auth import Auth, LoginThrottle
from gateway.config.models import ApiSection
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import CaseLedger
from mqtt_broker import free_port
from waiting import PATIENCE_S, wait_until
from web_support import TOKEN, DemoView, serve

GATEWAY = [sys.executable, "-m", "gateway"]


# --------------------------------------------------------------------------- an empty token


def site_with_api(tmp_path: Path, token_line: str, port: int) -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-auth, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{host: 127.0.0.1, port: {free_port()}}}
        cameras: []
        api:
          bind: 0.0.0.0
          port: {port}
        """) + f"  {token_line}\n", encoding="utf-8")
    return config


EMPTY_TOKENS = [
    pytest.param("token: ${API_TOKEN}", {"API_TOKEN": ""}, id="empty-variable"),
    pytest.param("token: ${API_TOKEN:-}", {}, id="empty-default"),
    pytest.param('token: ""', {}, id="empty-string"),
    pytest.param('token: "   "', {}, id="blank-string"),
]


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "API_TOKEN"}
    return {**env, **extra, "PYTHONPATH": str(REPO)}


def answer_to_loopback_host(port: int) -> bytes | None:
    """What the API says to a client that claims `Host: 127.0.0.1` (None: nothing listens)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /api/cameras HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data
    except OSError:
        return None


@pytest.mark.parametrize(("token_line", "env"), EMPTY_TOKENS)
def test_an_empty_api_token_is_an_error_at_check_naming_the_line(tmp_path: Path, token_line: str, env) -> None:
    config = site_with_api(tmp_path, token_line, free_port())
    result = subprocess.run([*GATEWAY, "check", "-c", str(config)], capture_output=True, text=True,
                            timeout=2 * PATIENCE_S, cwd=tmp_path, env=environment(env))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{config}:8: api.token: " in result.stderr and "empty" in result.stderr, result.stderr


@pytest.mark.parametrize(("token_line", "env"), EMPTY_TOKENS[:2])
def test_gateway_run_refuses_an_empty_api_token_and_serves_nobody(tmp_path: Path, token_line: str, env) -> None:
    port = free_port()
    config = site_with_api(tmp_path, token_line, port)
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([*GATEWAY, "run", "-c", str(config)], cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT, env=environment(env))
        try:
            def ended_or_served() -> bool:
                return process.poll() is not None or answer_to_loopback_host(port) is not None

            wait_until(ended_or_served, 2 * PATIENCE_S, "the gateway to exit or to serve")
            served = answer_to_loopback_host(port)
            assert served is None, f"an empty token left the API open: {served[:200]!r}"
            assert process.wait(PATIENCE_S) == 2
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(PATIENCE_S)
    assert "api.token: " in log_path.read_text() and "empty" in log_path.read_text()


def test_an_api_built_in_code_with_an_empty_token_is_refused(tmp_path: Path) -> None:
    """The config refuses it; the server refuses it too when settings are made some other way."""
    with pytest.raises(ValidationError, match="empty"):
        ApiSection(bind="0.0.0.0", token=SecretStr(""))
    history = EventHistory(tmp_path)
    ledger = CaseLedger(tmp_path, history=history)
    try:
        for bind in ("0.0.0.0", "127.0.0.1"):
            settings = ApiSection.model_construct(bind=bind, port=8080, token=SecretStr(" "))
            with pytest.raises(ApiConfigError, match="empty"):
                create_app(DemoView(), history, ledger, settings)
        with pytest.raises(ApiConfigError, match="empty"):
            Auth("")
    finally:
        history.close()
        ledger.close()
