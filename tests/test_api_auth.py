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
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from conftest import REPO, YOLOX_NANO
from gateway.api.app import ApiConfigError, create_app
from gateway.api.auth import Auth
from gateway.api.throttle import AuthThrottle
from gateway.api.web import MAX_BODY_BYTES
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


# --------------------------------------------------------------------------- guessing, per client


def client_from(url: str, address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z is this machine)."""
    return httpx.Client(base_url=url, timeout=PATIENCE_S, transport=httpx.HTTPTransport(local_address=address))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def failure_lines(caplog, address: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"API auth failed from {address} " in r.getMessage()]


def test_bearer_guesses_are_throttled_per_client_logged_without_the_guess(tmp_path: Path, caplog) -> None:
    with serve(tmp_path) as served:
        async def guess_all() -> list[httpx.Response]:
            transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            async with httpx.AsyncClient(base_url=served.url, timeout=PATIENCE_S, transport=transport) as script:
                return await asyncio.gather(*[script.get("/api/cameras", headers=bearer(f"guess-{n}-xyz"))
                                              for n in range(30)])

        with caplog.at_level(logging.INFO, logger="gateway.api"):
            answers = asyncio.run(guess_all())
            codes = sorted(response.status_code for response in answers)
            assert codes == [401] * 5 + [429] * 25  # 5 tries per client per 5 minutes, however parallel
            refused = next(response for response in answers if response.status_code == 429)
            assert 0 < int(refused.headers["retry-after"]) <= 300
            with client_from(served.url, "127.0.0.2") as guesser:  # even the right token waits now
                assert guesser.get("/api/cameras", headers=bearer(TOKEN)).status_code == 429
            with client_from(served.url, "127.0.0.3") as other:    # another client is not held back
                assert other.get("/api/cameras", headers=bearer(TOKEN)).status_code == 200
    assert len(failure_lines(caplog, "127.0.0.2")) == 5 and "guess-" not in caplog.text
    assert any("127.0.0.2" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)


def test_cookie_kiosk_link_and_login_form_guesses_share_the_clients_throttle(tmp_path: Path, caplog) -> None:
    with serve(tmp_path) as served, caplog.at_level(logging.INFO, logger="gateway.api"):
        with client_from(served.url, "127.0.0.4") as guesser:
            for n in range(2):
                guesser.cookies.set("gw_session", f"made-up-session-{n}")
                assert guesser.get("/api/events").status_code == 401
            guesser.cookies.clear()
            for n in range(2):
                assert guesser.get("/", params={"token": f"kiosk-guess-{n}"}).status_code == 401
            assert guesser.post("/login", data={"token": "form-guess"}).status_code == 401
            # Five wrong tries on any path: every path is closed to this client for now.
            assert guesser.get("/api/events", headers=bearer(TOKEN)).status_code == 429
            assert guesser.post("/login", data={"token": TOKEN}).status_code == 429
            assert guesser.get("/", params={"token": TOKEN}).status_code == 429
    assert len(failure_lines(caplog, "127.0.0.4")) == 5
    assert "made-up-session" not in caplog.text and "guess-" not in caplog.text


def test_the_right_token_works_from_a_client_that_has_not_guessed_wrong(tmp_path: Path) -> None:
    """Guessing from many addresses (up to the overall bound of 20 failures) does not lock out
    the officer who logs in from elsewhere with the right token; guessers stay held back, and a
    new address gets one guess before it is held back too."""
    with serve(tmp_path) as served:
        for host in range(10, 14):
            with client_from(served.url, f"127.0.0.{host}") as guesser:
                for n in range(5):
                    assert guesser.post("/login", data={"token": f"wrong-{n}"}).status_code == 401
        with client_from(served.url, "127.0.0.14") as guesser:
            assert guesser.post("/login", data={"token": "wrong-a"}).status_code == 401
            assert guesser.post("/login", data={"token": "wrong-b"}).status_code == 429
        with client_from(served.url, "127.0.0.20") as officer:
            assert officer.post("/login", data={"token": TOKEN}).status_code == 303
            assert officer.get("/api/info").status_code == 200
        with client_from(served.url, "127.0.0.21") as script:
            assert script.get("/api/cameras", headers=bearer(TOKEN)).status_code == 200
        with client_from(served.url, "127.0.0.22") as wall:
            assert wall.get("/", params={"token": TOKEN}).status_code == 303
        with client_from(served.url, "127.0.0.10") as guesser:
            assert guesser.get("/api/cameras", headers=bearer(TOKEN)).status_code == 429


def test_a_stale_session_cookie_sent_again_and_again_does_not_lock_its_browser_out(tmp_path: Path) -> None:
    """A wall screen whose session ended (a new api.token) keeps polling with its old cookie:
    the same wrong credential counts once, so its officer can still log in."""
    with serve(tmp_path) as served, client_from(served.url, "127.0.0.5") as wall:
        wall.cookies.set("gw_session", "a-session-from-before-the-new-token")
        for _ in range(10):
            assert wall.get("/api/events").status_code == 401
        wall.cookies.clear()
        assert wall.post("/login", data={"token": TOKEN}).status_code == 303


def test_throttle_counts_per_client_and_holds_back_only_clients_that_failed() -> None:
    throttle = AuthThrottle(per_client=3, overall=5, window_s=60)
    for at in (0, 1, 2):
        assert throttle.retry_after("10.0.0.1", at) == 0
        assert throttle.failed("10.0.0.1", at, f"guess-{at}") == at + 1
    assert throttle.retry_after("10.0.0.1", 3) == pytest.approx(57)   # until its first failure ages out
    assert throttle.retry_after("10.0.0.2", 3) == 0                    # others are not punished
    assert throttle.failed("10.0.0.2", 4, "x") == 1
    assert throttle.failed("10.0.0.2", 4.5, "x") is None                # the same wrong value counts once
    assert throttle.failed("10.0.0.3", 5, "y") == 1
    assert throttle.retry_after("10.0.0.2", 6) == pytest.approx(54)   # 5 failures overall: those who failed wait
    assert throttle.retry_after("10.0.0.4", 6) == 0                    # a client that never failed does not
    assert throttle.retry_after("10.0.0.1", 61) == 0 and throttle.retry_after("10.0.0.2", 61) == 0
    throttle.succeeded("10.0.0.3")
    assert throttle.retry_after("10.0.0.3", 7) == 0
    # IPv6 clients count per /64: one host has billions of addresses.
    for n in range(3):
        throttle.failed(f"2001:db8:1:2::{n + 1}", 100, f"v6-{n}")
    assert throttle.retry_after("2001:db8:1:2:ffff::9", 101) > 0
    assert throttle.retry_after("2001:db8:1:3::1", 101) == 0


# --------------------------------------------------------------------------- junk sent to /login


def post_raw(url: str, head: str, body: bytes) -> tuple[int, bytes]:
    """POST /login with exactly these headers and body bytes; (status, whole answer).

    Only what the server reads is sent: a server that answers and closes with bytes of ours
    still unread resets the connection, and the reset may discard its answer on our side."""
    parts = httpx.URL(url)
    with socket.create_connection((parts.host, parts.port), timeout=PATIENCE_S) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def chunks(body: bytes, size: int = 8192) -> bytes:
    """`body` as HTTP/1.1 chunks, without the last (empty) one: the sender is still sending."""
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in
                    (body[i:i + size] for i in range(0, len(body), size)))


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_big_login_body_gets_413_without_a_traceback(tmp_path: Path, caplog, framing: str) -> None:
    """100 kB declared, or more than the cap streamed in chunks (no length known up front)."""
    with serve(tmp_path) as served, caplog.at_level(logging.DEBUG):
        head = (f"POST /login HTTP/1.1\r\nHost: {httpx.URL(served.url).netloc.decode()}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n")
        if framing == "chunked":
            body = b"token=" + b"A" * (MAX_BODY_BYTES + 4096)
            status, answer = post_raw(served.url, head + "Transfer-Encoding: chunked\r\n", chunks(body))
        else:
            status, answer = post_raw(served.url, head + "Content-Length: 100000\r\n", b"")
        assert status == 413, answer[:300]
        with client_from(served.url, "127.0.0.6") as officer:  # the server is fine afterwards
            assert officer.post("/login", data={"token": TOKEN}).status_code == 303
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("body", [b"token=%FF%FE", b"\xff\xfe\x00token", b"&" * 3000, b"token=a&token=b&x=1&y=2&z=3"])
def test_a_malformed_login_body_is_a_wrong_token_not_an_error(tmp_path: Path, caplog, body: bytes) -> None:
    with serve(tmp_path) as served, caplog.at_level(logging.DEBUG):
        with client_from(served.url, "127.0.0.7") as guesser:
            answer = guesser.post("/login", content=body,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code in (400, 401), answer.text[:300]
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
