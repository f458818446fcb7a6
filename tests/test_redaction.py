"""One way to mask credentials (gateway.redaction.redact), and `gateway run` never showing a
camera password or a secret query value: not in its log, not in /api/cameras, not in the
retained MQTT camera state.

Passwords as installers type them: with '@', '/', ':' or a space (invalid in a URL, accepted by
cameras); query parameters as vendors name them (`pwd`, `user_pwd`, `access_token`, `apiKey`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from conftest import REPO, YOLOX_NANO
from gateway.redaction import redact, secret_parameter, url_passwords
from mqtt_broker import Mosquitto, free_port, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from waiting import PATIENCE_S, wait_until


@pytest.mark.parametrize(("text", "shown"), [
    ("rtsp://admin:Pa@ss/word9@10.0.0.5/x", "rtsp://admin:***@10.0.0.5/x"),
    ("rtsp://admin:a/b@c@10.0.0.5:554/Streaming/Channels/102", "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/102"),
    ("rtsp://admin:p@ss@10.0.0.5/x and http://u:pw@h/", "rtsp://admin:***@10.0.0.5/x and http://u:***@h/"),
    ("rtsp://admin:x:y@z@[fe80::1]:8554/live", "rtsp://admin:***@[fe80::1]:8554/live"),
    ("open 'rtsp://admin:Pa@ss/word9@cam.local/x' failed", "open 'rtsp://admin:***@cam.local/x' failed"),
    ("rtsp://admin:pa/ss word@10.0.0.9:554/h264", "rtsp://admin:***@10.0.0.9:554/h264"),
    ("rtsp://corp@admin:s3cret@10.0.0.5/x", "rtsp://corp@admin:***@10.0.0.5/x"),
    ("rtsp://:only@h/x", "rtsp://:***@h/x"),
    ("rtsp://admin@10.0.0.5/x", "rtsp://admin@10.0.0.5/x"),
    ("rtsp://10.0.0.5:554/x?channel=1", "rtsp://10.0.0.5:554/x?channel=1"),
    ("rtsp://cam/live?channel=1&user_pwd=Qx7&subtype=0", "rtsp://cam/live?channel=1&user_pwd=***&subtype=0"),
    ("http://cam/snap.jpg?access_token=abc&res=1", "http://cam/snap.jpg?access_token=***&res=1"),
    ("http://cam/snap.jpg?apiKey=abc&X-Amz-Signature=f00", "http://cam/snap.jpg?apiKey=***&X-Amz-Signature=***"),
    ("rtsp://cam/live?loginPass=abc&PASSWD=d&sessionkey=e", "rtsp://cam/live?loginPass=***&PASSWD=***&sessionkey=***"),
    ("rtsp://cam/live?user=admin&auth_code=1&client_secret=2", "rtsp://cam/live?user=admin&auth_code=***&client_secret=***"),
    ("host 10.0.0.9 path h264 channel=2", "host 10.0.0.9 path h264 channel=2"),
])
def test_redact_masks_passwords_of_any_shape_and_secret_looking_query_values(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(("name", "secret"), [
    ("pwd", True), ("user_pwd", True), ("userPwd", True), ("access_token", True), ("accessToken", True),
    ("X-Amz-Signature", True), ("sig", True), ("api_key", True), ("apikey", True), ("passphrase", True),
    ("Password", True), ("auth", True), ("client-secret", True),
    ("user", False), ("channel", False), ("subtype", False), ("profile", False), ("stream", False),
])
def test_secret_parameter_names(name: str, secret: bool) -> None:
    assert secret_parameter(name) is secret


def test_redact_masks_a_known_urls_password_wherever_it_stands_alone() -> None:
    url = "rtsp://admin:hunter%2122@cam/x"
    text = "error opening rtsp://admin:hunter%2122@cam/x: auth hunter!22 failed"
    cleaned = redact(text, url)
    assert "hunter" not in cleaned and "rtsp://admin:***@cam/x" in cleaned
    query_url = "rtsp://cam/live?user_pwd=Qx7-secret-val"
    assert "Qx7" not in redact("camera said: bad password Qx7-secret-val", query_url)


def test_url_passwords_end_at_the_last_at_before_the_host() -> None:
    assert url_passwords("rtsp://admin:Pa@ss/word9@10.0.0.5/x") == ["Pa@ss/word9"]


# --------------------------------------------------------------------------- gateway run, end to end


def test_gateway_run_never_shows_the_password_or_a_secret_query_value(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory) -> None:  # noqa: F811
    centre = subscriber_factory(mosquitto.port, ["gw/gw-redact/#"])
    camera_port, api_port = free_port(), free_port()  # nothing listens on camera_port: the camera fails
    url = (f"rtsp://admin:Pa@ss/word9@127.0.0.1:{camera_port}/live?channel=1&user_pwd=Qx7-secret-val"
           f"&access_token=Tk9-secret-val")
    config = tmp_path / "site.yaml"
    config.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-redact, data_dir: {tmp_path / 'data'}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, heartbeat_s: 1}}
        api: {{port: {api_port}, token: redaction-test-token-0123}}
        cameras:
          - id: cam1
            source: {{rtsp: "{url}"}}
            fps: 1
            offline_after_s: 2
        """), encoding="utf-8")
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)], cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "rtsp://admin:***@" in log_path.read_text(), 2 * PATIENCE_S,
                       "the camera's URL in the log")
            state_topic = "gw/gw-redact/cameras/cam1/state"
            assert centre.wait_for(lambda m: any(x.topic == state_topic for x in m)), log_path.read_text()[-2000:]

            def cameras() -> str | None:
                try:
                    answer = httpx.get(f"http://127.0.0.1:{api_port}/api/cameras", timeout=PATIENCE_S,
                                       headers={"Authorization": "Bearer redaction-test-token-0123"})
                except httpx.HTTPError:
                    return None
                return answer.text if answer.status_code == 200 else None

            shown = wait_until(cameras, PATIENCE_S, "/api/cameras")
        finally:
            process.terminate()
            process.wait(PATIENCE_S)
    mqtt_text = "\n".join(m.payload.decode("utf-8", "replace") for m in centre.received())
    everything = {"log": log_path.read_text(), "api": shown, "mqtt": mqtt_text}
    for where, text in everything.items():
        for secret in ("word9", "Pa@ss", "Qx7-secret-val", "Tk9-secret-val"):
            assert secret not in text, f"{secret!r} shown in the {where}"
    assert f"rtsp://admin:***@127.0.0.1:{camera_port}/live?channel=1&user_pwd=***&access_token=***" in shown
    state = json.loads(centre.received("gw/gw-redact/cameras/cam1/state")[-1].payload)
    assert "user_pwd=***" in json.dumps(state)
