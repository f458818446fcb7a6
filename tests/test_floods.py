"""Input from the network in bulk: one line per kind of problem, never a traceback per message."""

from __future__ import annotations

import logging

import pytest

from gateway.jsonpayload import PayloadError, json_object
from gateway.logs import LogLimiter


def test_nested_json_is_a_payload_error_not_a_recursion_error():
    with pytest.raises(PayloadError, match="nested too deeply"):
        json_object(b"[" * 5000 + b"]" * 5000, 16 * 1024)
    with pytest.raises(PayloadError, match="not UTF-8"):
        json_object(b"\xff\xfe", 100)
    with pytest.raises(PayloadError, match="expected an object"):
        json_object(b"[1, 2]", 100)
    with pytest.raises(PayloadError, match="more than the 10 allowed"):
        json_object(b'{"a": "long text"}', 10)
    assert json_object('{"ok": true}', 100) == {"ok": True}


def test_log_limiter_holds_back_a_flood_and_reports_it_later(caplog):
    limiter = LogLimiter(burst=3, window_s=60)
    logger = logging.getLogger("test.flood")
    with caplog.at_level(logging.WARNING, logger="test.flood"):
        for second in range(100):
            limiter.log(logger, logging.WARNING, "ack", "bad ack %d", second, now=float(second) / 10)
        limiter.log(logger, logging.WARNING, "other", "another kind", now=10.0)
        limiter.log(logger, logging.WARNING, "ack", "bad ack again", now=61.0)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[:3] == ["bad ack 0", "bad ack 1", "bad ack 2"]
    assert lines[3] == "another kind"  # kinds are limited apart
    assert lines[4] == "bad ack again (97 more like it held back in the last 60 s)"
    assert len(lines) == 5
