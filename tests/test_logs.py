"""Log lines: readable or JSON (journald), and never a credential, whoever logs the URL."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.logs import setup_logging
from gateway.redaction import redact


@pytest.mark.parametrize("text, expected", [
    ("rtsp://admin:s3cret@10.0.0.5:554/ch1", "rtsp://admin:***@10.0.0.5:554/ch1"),
    ("rtsp://admin:p@ss@10.0.0.5/x and http://u:pw@h/", "rtsp://admin:***@10.0.0.5/x and http://u:***@h/"),
    ("rtsp://10.0.0.5/no-credentials", "rtsp://10.0.0.5/no-credentials"),
])
def test_redact_masks_every_url_password(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_json_lines_carry_the_camera_and_hide_passwords(capsys) -> None:
    setup_logging("info", "json")
    log = logging.getLogger("gateway.test")
    log.warning("camera %s: %s refused connection", "east_gate", "rtsp://admin:hunter2@10.0.0.5/x",
                extra={"camera": "east_gate"})
    try:
        raise ConnectionError("rtsp://admin:hunter2@10.0.0.5/x unreachable")
    except ConnectionError:
        log.exception("camera east_gate: open failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["camera"] == "east_gate" and lines[0]["level"] == "warning"
    assert lines[0]["msg"] == "camera east_gate: rtsp://admin:***@10.0.0.5/x refused connection"
    assert "hunter2" not in json.dumps(lines) and "admin:***@" in lines[1]["exc"]


def test_text_format_is_one_readable_line(capsys) -> None:
    setup_logging("info", "text")
    logging.getLogger("gateway.test").info("camera %s: streaming", "demo")
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO    gateway.test: camera demo: streaming")
