"""The web API over real HTTP: uvicorn on a free 127.0.0.1 port, httpx as the client.

The view serves real frames of vtest.avi with the real detector's people; alerts are real
`gateway.events` messages noted in a real case ledger and recorded in the history (web_support).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest
from pydantic import SecretStr, ValidationError

from gateway.api.app import ApiConfigError, create_app
from gateway.api.auth import SessionStore
from gateway.api.server import make_server
from gateway.api.throttle import AuthThrottle
from gateway.config.models import ApiSection, MqttSection
from gateway.delivery.history import EventHistory
from gateway.delivery.ledger import CaseLedger
from gateway.delivery.outbox import Outbox
from gateway.outputs.mqtt.sink import MqttSink
from mqtt_broker import Mosquitto, mosquitto  # noqa: F401  (fixture)
from waiting import PATIENCE_S, wait_until
from web_support import GATEWAY_ID, PASSWORD, TOKEN, DemoView, serve

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRETS = (PASSWORD, "plain-gate-pass", TOKEN)
GET_ROUTES = ["/readyz", "/metrics", "/openapi.json", "/docs", "/api/info", "/api/cameras", "/api/cameras/gate",
              "/api/cameras/gate/snapshot.jpg", "/api/events", "/static/app.js", "/favicon.ico",
              "/api/events/7be34d09-609b-4354-921c-fa34abfd3429", "/api/events/9f56760d-4eed-4e18-a513-52153198407b/snapshot.jpg", "/api/events/stream"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    # These tests send wrong credentials on purpose, from one address, for many routes; the
    # throttle that would soon hold it back is tested on its own (test_api_auth.py).
    with serve(tmp_path_factory.mktemp("api"), throttle=AuthThrottle(per_client=10_000, overall=10_000)) as served:
        live, _ = served.alerts.start("gate", "gathering", 120, ago_s=600)
        served.alerts.update(live, 144)
        served.alerts.end(live)
        served.alerts.start("market", "crowd", 72, severity=2, ago_s=300)
        served.alerts.start("gate", "intrusion", 240, severity=4, ago_s=60)
        yield served


@pytest.fixture
def client(api):
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=PATIENCE_S) as c:
        yield c


@pytest.fixture
def anon(api):
    with httpx.Client(base_url=api.url, timeout=PATIENCE_S) as c:
        yield c


def raw_get(url: str, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One GET with the request target sent exactly as given (no client-side normalisation)."""
    parts = urlsplit(url)
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


# --------------------------------------------------------------------------- auth


def test_healthz_is_open(anon):
    response = anon.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "outputs": {}, "disk_full": False}
    assert anon.head("/healthz").status_code == 200


def test_access_log_masks_the_kiosk_token():
    import logging

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/?token={TOKEN}&x=1", "1.1", 303), None)
    assert logging.getLogger("uvicorn.access").filter(record)
    assert TOKEN not in record.getMessage() and "token=***&x=1" in record.getMessage()


@pytest.mark.parametrize("path", GET_ROUTES)
def test_every_other_route_needs_the_token(anon, path):
    missing = anon.get(path)
    assert missing.status_code == 401, path
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for bad in ({"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}x"},
                {"Cookie": "gw_session=forged"}):
        assert anon.get(path, headers=bad).status_code == 401, (path, bad)


def test_token_in_an_api_query_string_is_not_accepted(anon):
    assert anon.get("/api/events", params={"token": TOKEN}).status_code == 401


def test_ack_needs_the_token(anon, api):
    event_id = api.history.list(limit=1).items[0].event_id
    assert anon.post(f"/api/events/{event_id}/ack", json={"by": "x"}).status_code == 401
    assert api.ledger.ack_for(event_id) is None or api.ledger.ack_for(event_id).by != "x"


def test_browser_is_sent_to_the_login_form(anon):
    response = anon.get("/", headers={"Accept": "text/html"})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    form = anon.get("/login")
    assert form.status_code == 200 and 'name="token"' in form.text and "访问令牌" in form.text


def test_login_form_sets_an_http_only_session_cookie(api):
    with httpx.Client(base_url=api.url, timeout=PATIENCE_S) as browser:
        wrong = browser.post("/login", data={"token": "nope"})
        assert wrong.status_code == 401 and "gw_session" not in wrong.headers.get("set-cookie", "")
        response = browser.post("/login", data={"token": TOKEN})
        assert response.status_code == 303 and response.headers["location"] == "/"
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert TOKEN not in cookie  # a random session id, not the token
        session = browser.cookies["gw_session"]
        assert browser.get("/api/cameras").status_code == 200
        page = browser.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert browser.post("/logout").status_code == 303
        assert browser.get("/api/cameras").status_code == 401
    # logout revoked the session itself: a copy of the cookie is worth nothing now
    with httpx.Client(base_url=api.url, timeout=PATIENCE_S, cookies={"gw_session": session}) as thief:
        assert thief.get("/api/cameras").status_code == 401


def test_kiosk_link_trades_the_token_for_a_cookie_and_drops_it_from_the_url(api):
    with httpx.Client(base_url=api.url, timeout=PATIENCE_S) as browser:
        assert browser.get("/", params={"token": "wrong"}).status_code == 401
        response = browser.get("/", params={"token": TOKEN})
        # the page then tells the operator the token is in this browser's history
        assert response.status_code == 303 and response.headers["location"] == "/#token-in-history"
        assert browser.get("/api/info").status_code == 200


def test_cookie_writes_from_another_site_are_refused(api):
    event_id = api.history.list(camera="market", limit=1).items[0].event_id
    with httpx.Client(base_url=api.url, timeout=PATIENCE_S) as browser:
        browser.post("/login", data={"token": TOKEN})
        evil = browser.post(f"/api/events/{event_id}/ack", json={"by": "evil"}, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        assert browser.post("/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}).status_code == 403
        hidden = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}  # a form on another site, strict referrer policy
        assert browser.post(f"/api/events/{event_id}/ack", json={"by": "evil"}, headers=hidden).status_code == 403
        same = browser.post(f"/api/events/{event_id}/ack", json={"by": "王五"}, headers={"Origin": api.url})
        assert same.status_code == 200 and same.json()["ack"]["by"] == "王五"
        assert browser.post("/logout", headers={"Origin": "http://evil.example"}).status_code == 403
        assert browser.get("/api/info").status_code == 200  # still logged in


def test_failed_logins_are_throttled_logged_without_the_guess_and_parallel_guessing_is_bounded(
        tmp_path, caplog):
    with serve(tmp_path) as served:
        async def guess_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=served.url, timeout=PATIENCE_S) as browser:
                return await asyncio.gather(*[browser.post("/login", data={"token": f"guess-{n}-xyz"})
                                              for n in range(30)])

        with caplog.at_level(logging.WARNING, logger="gateway.api"):
            answers = asyncio.run(guess_all())
        codes = sorted(response.status_code for response in answers)
        assert codes == [401] * 5 + [429] * 25  # 5 tries per client per 5 minutes, however parallel
        refused = next(response for response in answers if response.status_code == 429)
        assert 0 < int(refused.headers["retry-after"]) <= 300 and "Too many attempts" in refused.text
        with httpx.Client(base_url=served.url, timeout=PATIENCE_S) as browser:  # even the right token waits
            assert browser.post("/login", data={"token": TOKEN}).status_code == 429
            assert browser.get("/", params={"token": TOKEN}).status_code == 429  # the kiosk link too
    failures = [r.getMessage() for r in caplog.records
                if "API auth failed from 127.0.0.1 (login form" in r.getMessage()]
    assert len(failures) == 5 and "guess-" not in caplog.text


def test_sessions_survive_a_restart_and_a_new_token_revokes_them(tmp_path):
    sessions = tmp_path / "web-sessions.json"
    store = SessionStore(b"token-one-0123456789", sessions)
    session = store.create()
    assert store.valid(session) and not store.valid("made-up")
    assert session not in sessions.read_text()  # only hashes are kept
    assert oct(sessions.stat().st_mode & 0o777) == "0o600"
    assert SessionStore(b"token-one-0123456789", sessions).valid(session)      # a restart keeps it
    assert not SessionStore(b"token-two-0123456789", sessions).valid(session)  # a new token does not
    assert store.revoke(session) and not SessionStore(b"token-one-0123456789", sessions).valid(session)
    sessions.write_text("{not json")
    assert len(SessionStore(b"token-one-0123456789", sessions)) == 0  # unreadable: log in again


def test_open_api_only_on_loopback(tmp_path):
    history = EventHistory(tmp_path)
    ledger = CaseLedger(tmp_path, history=history)
    try:
        with pytest.raises(ValidationError, match="api.token is not set"):
            ApiSection(bind="0.0.0.0")  # `gateway check` refuses it
        open_beyond_loopback = ApiSection.model_construct(bind="192.168.1.20", token=None)  # built in code
        with pytest.raises(ApiConfigError, match="api.token"):
            create_app(DemoView(), history, ledger, open_beyond_loopback)
        with pytest.raises(ApiConfigError):
            make_server(object(), open_beyond_loopback)  # type: ignore[arg-type]
        create_app(DemoView(), history, ledger, ApiSection(bind="0.0.0.0", token=SecretStr("a-long-enough-token-123")))
        create_app(DemoView(), history, ledger, ApiSection(bind="::1"))
    finally:
        history.close()
        ledger.close()


def test_open_api_without_token_answers_loopback_hosts_only(tmp_path):
    with serve(tmp_path, token=None) as served:
        with httpx.Client(base_url=served.url, timeout=PATIENCE_S) as c:
            assert c.get("/api/cameras").status_code == 200
            assert c.get("/", headers={"Accept": "text/html"}).status_code == 200
            rebinding = c.get("/api/cameras", headers={"Host": "attacker.example"})
            assert rebinding.status_code == 403
            assert c.get("/api/info").json()["auth"] is False


# --------------------------------------------------------------------------- health, cameras


def test_readyz(client, api):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["checks"]["detector"] and body["checks"]["camera:north"]
    api.view.detector_alive = False
    try:
        down = client.get("/readyz")
        assert down.status_code == 503 and down.json() == {**body, "ready": False,
                                                            "checks": {**body["checks"], "detector": False}}
    finally:
        api.view.detector_alive = True


def test_cameras_with_health(client):
    cameras = {c["id"]: c for c in client.get("/api/cameras").json()}
    assert list(cameras) == ["gate", "market", "north"]
    gate, north = cameras["gate"], cameras["north"]
    assert gate["state"] == "streaming" and gate["analysed_fps"] == 2.0 and gate["last_frame_age_s"] == 0.4
    assert gate["frame_size"] == [768, 576] and gate["zones"][0]["id"] == "plaza"
    assert gate["snapshot_url"] == "/api/cameras/gate/snapshot.jpg" and gate["name"] == "东门广场"
    assert north["state"] == "backoff" and north["reconnects"] == 7 and north["last_frame_age_s"] is None
    assert north["last_error"].startswith("rtsp://admin:***@192.0.2.11") and PASSWORD not in north["last_error"]
    assert cameras["market"]["coordinates"] == "normalized"
    assert client.get("/api/cameras/north").json() == north
    assert client.get("/api/cameras/nope").status_code == 404
    assert client.get("/api/cameras/bad%20id").status_code == 422


def test_live_snapshot_is_a_fresh_jpeg_of_a_real_frame(client):
    response = client.get("/api/cameras/gate/snapshot.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "no-store"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (576, 768, 3) and image.std() > 20  # a real scene, not a blank frame
    assert client.get("/api/cameras/north/snapshot.jpg").status_code == 404  # no frame yet
    assert client.get("/api/cameras/ghost/snapshot.jpg").status_code == 404


# --------------------------------------------------------------------------- events


def test_events_newest_first_with_filters_and_paging(client):
    page = client.get("/api/events").json()
    assert page["total"] == 3 and page["rev"] >= 5
    items = page["items"]
    assert [e["type"] for e in items] == ["intrusion", "crowd", "gathering"]
    gathering = items[2]
    assert gathering["state"] == "end" and not gathering["active"] and gathering["ended_at"]
    assert gathering["seq"] == 3 and gathering["peak_count"] >= gathering["count"] == 0
    assert gathering["title_zh"].startswith("人员聚集：广场中心") and gathering["grid_id"] == "DM-03"
    assert gathering["snapshot_url"] and gathering["address"] == "东门街道人民路 18 号广场"

    def ids(**params) -> list[str]:
        response = client.get("/api/events", params=params)
        assert response.status_code == 200, response.text
        return [e["type"] for e in response.json()["items"]]

    assert ids(camera="gate") == ["intrusion", "gathering"]
    assert ids(camera="market") == ["crowd"] and ids(camera="north") == []
    assert ids(type="crowd") == ["crowd"]
    assert ids(state="end") == ["gathering"] and ids(state="active") == ["intrusion", "crowd"]
    assert ids(state="start", camera="gate") == ["intrusion"]
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert ids(since=future) == []
    recent = (datetime.now(timezone.utc) - timedelta(seconds=200)).isoformat()
    assert set(ids(since=recent)) == {"intrusion", "gathering"}  # the crowd event was last updated 5 min ago
    assert ids(limit=1) == ["intrusion"] and ids(limit=1, offset=1) == ["crowd"] and ids(offset=3) == []
    for bad in ({"type": "fire"}, {"state": "open"}, {"limit": 0}, {"limit": 501}, {"offset": -1},
                {"since": "yesterday"}, {"camera": "../etc"}, {"acked": "maybe"}, {"camra": "gate"},
                {"since": "-3607"}, {"since": "2024-05-01T08:00:00"}, {"since": "2024-05-01"},
                [("limit", "1"), ("limit", "2")], [("camera", "gate"), ("camera", "market")]):
        response = client.get("/api/events", params=bad)
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"][0] == "query"
    assert "camra" in client.get("/api/events", params={"camra": "gate"}).text  # says which one


def test_one_event_and_its_pictures(client, api):
    gathering = client.get("/api/events", params={"type": "gathering"}).json()["items"][0]
    event_id = gathering["event_id"]
    detail = client.get(f"/api/events/{event_id}").json()
    assert detail["payload"]["schema"] == "gw.alert/1" and detail["payload"]["event_id"] == event_id
    assert detail["payload"]["state"] == "end" and detail["payload"]["rule"]["type"] == "gathering"
    assert "data" not in (detail["payload"]["snapshot"] or {})  # base64 stays out of the API
    start = client.get(f"/api/events/{event_id}/snapshot.jpg")
    assert start.status_code == 200 and start.headers["content-type"] == "image/jpeg"
    assert start.content == api.history.snapshot(event_id, "start")
    image = cv2.imdecode(np.frombuffer(start.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == 768
    crowd = client.get("/api/events", params={"type": "crowd"}).json()["items"][0]
    assert client.get(f"/api/events/{crowd['event_id']}/snapshot.jpg", params={"which": "peak"}).status_code == 404
    assert client.get(f"/api/events/{crowd['event_id']}/snapshot.jpg", params={"which": "latest"}).status_code == 200
    assert client.get(f"/api/events/{event_id}/snapshot.jpg", params={"which": "../x"}).status_code == 422
    unknown = uuid.uuid4()
    assert client.get(f"/api/events/{unknown}").status_code == 404
    assert client.get(f"/api/events/{unknown}/snapshot.jpg").status_code == 404
    assert client.get("/api/events/not-a-uuid").status_code == 422
    assert client.get(f"/api/events/{str(unknown).upper()}").status_code == 422


@pytest.mark.parametrize("target", [
    "/static/../api/app.py",
    "/static/..%2Fapi%2Fapp.py",
    "/static/%2e%2e%2fapi%2fapp.py",
    "/static/..%5capi%5capp.py",
    "/static/index.html%00.js",
    "/static/.env",
    "/api/events/..%2F..%2F..%2Fetc%2Fpasswd/snapshot.jpg",
    "/api/events/%2e%2e/snapshot.jpg",
    "/api/events/../../../../etc/passwd",
    "/api/cameras/..%2F..%2Fetc/snapshot.jpg",
    "/../../../../etc/passwd",
])
def test_path_traversal_finds_nothing(api, target):
    status, body = raw_get(api.url, target, AUTH)
    assert status in (400, 404, 422), (target, status)
    assert b"root:" not in body and b"import " not in body and b"def " not in body


def test_static_files_and_docs_are_served_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing from a CDN
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert not re.search(r"https?://", js.text.replace("http://www.w3.org/2000/svg", ""))  # an XML namespace
    assert client.get("/static/style.css").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    assert client.get("/static/nope.js").status_code == 404
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_acknowledge_goes_to_the_case_ledger(client, api):
    intrusion = client.get("/api/events", params={"type": "intrusion"}).json()["items"][0]
    event_id = intrusion["event_id"]
    assert intrusion["ack"] is None
    response = client.post(f"/api/events/{event_id}/ack", json={"by": "张三", "case_id": "C-2024-001", "note": "已派网格员"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["new"] is True and body["ack"]["by"] == "张三" and body["ack"]["case_id"] == "C-2024-001"
    assert body["event"]["ack"]["note"] == "已派网格员"
    record = api.ledger.ack_for(event_id)  # the one place for acks
    assert (record.by, record.case_id) == ("张三", "C-2024-001")
    again = client.post(f"/api/events/{event_id}/ack", json={"by": "张三", "case_id": "C-2024-001"})
    assert again.status_code == 200 and again.json()["new"] is False
    assert client.get(f"/api/events/{event_id}").json()["ack"]["by"] == "张三"
    assert event_id in {e["event_id"] for e in client.get("/api/events", params={"acked": "true"}).json()["items"]}
    assert event_id not in {e["event_id"] for e in client.get("/api/events", params={"acked": "false"}).json()["items"]}
    default = client.post(f"/api/events/{event_id}/ack", json={})
    assert default.status_code == 200 and default.json()["ack"]["by"] == "web"


def test_acknowledge_errors(client, api):
    event_id = api.history.list(limit=1).items[0].event_id
    assert client.post(f"/api/events/{uuid.uuid4()}/ack", json={"by": "x"}).status_code == 404
    assert client.post("/api/events/not-a-uuid/ack", json={"by": "x"}).status_code == 422
    for bad in ({"by": ""}, {"by": "   "}, {"by": "x" * 65}, {"by": 5}, {"by": "a\nb"}, {"by": "a\x00"},
                {"by": "x", "case_id": ["C1"]}, {"by": "x", "extra": 1}, {"by": "x", "note": "n" * 501}, [], "x"):
        assert client.post(f"/api/events/{event_id}/ack", json=bad).status_code == 422, bad
    not_json = client.post(f"/api/events/{event_id}/ack", content=b"by=x",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert not_json.status_code == 422
    huge = client.post(f"/api/events/{event_id}/ack", content=b'{"by": "x"}' + b" " * 70_000,
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 413

    def chunks():
        yield b'{"by": "x", "note": "'
        for _ in range(80):
            yield b"n" * 1000
        yield b'"}'

    chunked = client.post(f"/api/events/{event_id}/ack", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code in (400, 413)
    # an event the history shows but the ledger has forgotten (older than its history_days)
    forgotten = api.alerts.start("gate", "loitering", 48)[1]
    with sqlite3.connect(api.ledger.path) as db:
        db.execute("DELETE FROM known_events WHERE event_id=?", (forgotten.event_id,))
    assert client.post(f"/api/events/{forgotten.event_id}/ack", json={"by": "x"}).status_code == 409


# --------------------------------------------------------------------------- live stream


class SseReader:
    """Reads server-sent events off one streaming response (one line iterator for its whole life:
    a second iterator would lose what the first had buffered)."""

    def __init__(self, response: httpx.Response):
        self._lines = response.iter_lines()

    def read(self, want: int) -> list[tuple[str, str, str | None]]:
        """(event, data, id) tuples until `want` non-comment messages arrived (comments kept).

        A stream that goes quiet ends in the client's read timeout (httpx.ReadTimeout)."""
        out: list[tuple[str, str, str | None]] = []
        event, data, event_id = "message", "", None
        for line in self._lines:
            if line.startswith(":"):
                out.append(("comment", line, None))
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line == "" and data:
                out.append((event, data, event_id))
                event, data, event_id = "message", "", None
            if sum(e != "comment" for e, _, _ in out) >= want:
                break
        return out


def read_sse(response: httpx.Response, want: int) -> list[tuple[str, str, str | None]]:
    return SseReader(response).read(want)


def test_stream_pushes_a_new_alert_without_waiting_for_the_heartbeat(tmp_path):
    """The alert is pushed when it is recorded: with the keep-alive at 120 s and the client
    giving up after 60 s of silence, only a push can deliver it."""
    with serve(tmp_path, sse_heartbeat_s=120) as served:
        with httpx.Client(base_url=served.url, headers=AUTH, timeout=60) as c:
            with c.stream("GET", "/api/events/stream") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                stream = SseReader(response)
                hello = stream.read(1)
                assert hello[-1][0] == "hello"
                message = served.alerts.start("market", "gathering", 96)[1]
                event, data, rev = stream.read(1)[-1]
    body = json.loads(data)
    assert event == "alert" and body["event_id"] == message.event_id and int(rev) == body["rev"]
    assert body["title_zh"].startswith("人员聚集") and body["state"] == "start"


def test_stream_resumes_after_last_event_id(client, api):
    rev = api.history.rev
    with client.stream("GET", "/api/events/stream", headers={"Last-Event-ID": str(rev - 2)}) as response:
        messages = read_sse(response, 3)
    revs = [int(i) for e, _, i in messages if e == "alert"]
    assert revs and revs[-1] == rev and all(r > rev - 2 for r in revs)


def test_stream_heartbeats_and_cleans_up_on_disconnect(tmp_path):
    with serve(tmp_path, sse_heartbeat_s=0.2) as served:
        hub = served.app.state.hub
        with httpx.Client(base_url=served.url, headers=AUTH, timeout=PATIENCE_S) as c:
            with c.stream("GET", "/api/events/stream") as response:
                lines = response.iter_lines()  # keep a reference: dropping it closes the connection
                while next(lines) != ": keep-alive":
                    pass
                assert next(lines) == ""
                assert next(lines) == ": keep-alive"  # and another one
                assert len(hub.clients) == 1
        wait_until(lambda: not hub.clients, what="the stream to end after the client went away")
    # and the server stopped promptly although a stream had been open (serve() checks)


def test_server_stops_promptly_with_a_stream_open(tmp_path):
    """serve() fails unless the server stops within 30 s: with the stream's keep-alive at 300 s,
    only a server that ends open streams itself gets there."""
    with serve(tmp_path, sse_heartbeat_s=300) as served:
        c = httpx.Client(base_url=served.url, headers=AUTH, timeout=PATIENCE_S)
        stream = c.stream("GET", "/api/events/stream")
        response = stream.__enter__()
        assert response.status_code == 200
    c.close()


# --------------------------------------------------------------------------- metrics


def test_metrics_for_prometheus(tmp_path, mosquitto: Mosquitto):  # noqa: F811
    publishers: list[MqttSink] = []

    def publisher(outbox: Outbox) -> MqttSink:
        made = MqttSink(MqttSection(host="127.0.0.1", port=mosquitto.port), GATEWAY_ID, outbox, poll_s=0.1)
        publishers.append(made)
        return made

    with serve(tmp_path, publisher_factory=publisher) as served:
        served.alerts.start("gate", "gathering", 120)
        served.alerts.start("market", "crowd", 72)
        served.metrics.observe_inference(12.5)
        served.metrics.observe_inference(240.0)
        with httpx.Client(base_url=served.url, headers=AUTH, timeout=PATIENCE_S) as c:
            queued = c.get("/metrics")
            assert queued.status_code == 200 and queued.headers["content-type"].startswith("text/plain")
            text = queued.text
            assert 'gateway_outbox_depth 2.0' in text
            age = float(re.search(r"^gateway_outbox_oldest_undelivered_age_seconds (\S+)$", text, re.M).group(1))
            assert 0 <= age < 30
            pub = publishers[0]
            pub.start()
            try:
                assert pub.wait_connected(PATIENCE_S)
                pub.notify()
                assert pub.flush(PATIENCE_S)
                text = c.get("/metrics").text
            finally:
                pub.stop(PATIENCE_S)
    sample = lambda name: float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))  # noqa: E731
    assert sample('gateway_camera_analysed_fps{camera="gate"}') == 2.0
    assert sample('gateway_camera_decoded_fps{camera="market"}') == 0.5
    assert sample('gateway_camera_frame_age_seconds{camera="gate"}') == 0.4
    assert 'gateway_camera_frame_age_seconds{camera="north"}' not in text  # no frame yet: no sample
    assert sample('gateway_camera_reconnects_total{camera="north"}') == 7
    assert sample('gateway_camera_skip_ratio{camera="gate"}') == 0.35
    assert sample('gateway_camera_up{camera="north"}') == 0 and sample('gateway_camera_up{camera="gate"}') == 1
    assert sample('gateway_camera_state{camera="north",state="backoff"}') == 1
    assert sample('gateway_inference_ms_bucket{le="20.0"}') == 1 and sample('gateway_inference_ms_count') == 2
    assert sample('gateway_inference_ms_sum') == 252.5
    assert sample('gateway_outbox_depth') == 0 and sample('gateway_outbox_oldest_undelivered_age_seconds') == 0
    assert sample('gateway_alerts_total{type="gathering"}') == 1 and sample('gateway_alerts_total{type="crowd"}') == 1
    assert sample('gateway_mqtt_connected') in (0, 1) and sample('gateway_mqtt_published_total') == 2
    assert sample('gateway_mqtt_publish_latency_ms{quantile="0.95"}') >= 0
    assert sample('gateway_ready{component="detector"}') == 1
    for secret in SECRETS:
        assert secret not in text


# --------------------------------------------------------------------------- leaks


def test_no_credentials_in_any_response(client, api):
    event_id = api.history.list(limit=1).items[0].event_id
    paths = [p for p in GET_ROUTES if "stream" not in p] + [f"/api/events/{event_id}", "/", "/static/i18n.js",
                                                             "/api/events?limit=500", "/api/cameras/north"]
    for path in paths:
        response = client.get(path)
        assert response.status_code < 500, path
        blob = response.content + str(response.headers).encode()
        for secret in SECRETS:
            assert secret.encode() not in blob, (path, secret)
    with client.stream("GET", "/api/events/stream", params={"after": 0}) as response:
        streamed = "".join(line for _, line, _ in read_sse(response, 3))
    for secret in SECRETS:
        assert secret not in streamed
    openapi = client.get("/openapi.json").json()
    assert "bearerAuth" in str(openapi) or "HTTPBearer" in str(openapi)
