"""A webhook receiver cannot hurt the gateway: against a real HTTP receiver that answers with
100 MB, with a chunked body that never ends, or one byte at a time, the gateway reads a few
kB at most, bounds each whole request by `timeout_s`, and says in its health that the far end
is not taking alerts.

Memory is measured in-process with tracemalloc around the real delivery thread.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery_support import alerts, delivery_config, make_router, sink
from gateway.outputs.webhook import MAX_ANSWER_BYTES, MAX_REASON_CHARS
from http_receiver import Receiver
from waiting import PATIENCE_S, wait_until

MEMORY_BOUND = 16 * 1024 * 1024
"""Far above what delivering a few alerts takes, far below the 100 MB a receiver offers."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver().start()
    yield made
    made.stop()


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def peak_growth(baseline: int) -> int:
    return tracemalloc.get_traced_memory()[1] - baseline


def test_a_100_mb_answer_is_not_read_into_memory(tmp_path: Path, receiver: Receiver, traced) -> None:
    receiver.reply = "huge"
    router = make_router(delivery_config(tmp_path / "data", webhook_url=receiver.url()))
    webhook = sink(router, "webhook:cases")
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        router.route(alerts(2))
        wait_until(lambda: webhook.health()["delivered"] == 2, 2 * PATIENCE_S, "both alerts delivered (2xx)")
        growth = peak_growth(baseline)
    finally:
        router.stop()
    assert growth < MEMORY_BOUND, f"delivering took {growth / 2**20:.0f} MB"
    assert webhook.outbox.depth() == 0 and len(receiver.requests) == 2


def test_an_endless_error_answer_fails_with_a_short_excerpt(tmp_path: Path, receiver: Receiver, traced) -> None:
    receiver.reply, receiver.status = "endless", 503
    router = make_router(delivery_config(tmp_path / "data", webhook_url=receiver.url()))
    webhook = sink(router, "webhook:cases")
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        router.route(alerts(1))
        wait_until(lambda: "HTTP 503" in (webhook.health()["last_error"] or ""), PATIENCE_S,
                   "the refusal to be reported")
        health = webhook.health()
        growth = peak_growth(baseline)
    finally:
        router.stop()
    assert health["connected"] is False and health["queued"] == 1  # kept for a retry
    assert "xxxx" in health["last_error"] and len(health["last_error"]) < MAX_REASON_CHARS + 200
    assert growth < MEMORY_BOUND, f"delivering took {growth / 2**20:.0f} MB"


def test_an_endless_success_answer_is_delivered(tmp_path: Path, receiver: Receiver) -> None:
    receiver.reply = "endless"
    router = make_router(delivery_config(tmp_path / "data", webhook_url=receiver.url()))
    webhook = sink(router, "webhook:cases")
    try:
        router.route(alerts(2))
        wait_until(lambda: webhook.health()["delivered"] == 2, PATIENCE_S, "both alerts delivered")
    finally:
        router.stop()


def test_a_trickling_receiver_fails_each_request_within_timeout_s_and_health_says_so(
        tmp_path: Path, receiver: Receiver) -> None:
    """One byte a second: no read ever waits `timeout_s` (2 s), but the answer would take ten
    minutes. Each attempt must end within 2 s overall, and health must say not connected."""
    receiver.reply = "trickle"
    router = make_router(delivery_config(tmp_path / "data", webhook_url=receiver.url(), timeout_s=2))
    webhook = sink(router, "webhook:cases")
    try:
        router.route(alerts(3))
        wait_until(lambda: not webhook.health()["connected"], PATIENCE_S, "health to say not connected")
        health = webhook.health()
        # Several attempts at the first alert within the patience: each one was cut short.
        assert receiver.wait_for(lambda requests: len(requests) >= 3, PATIENCE_S), len(receiver.requests)
    finally:
        router.stop()
    assert "no answer" in health["last_error"] and "within 2 s (the whole request)" in health["last_error"]
    assert health["queued"] == 3 and health["delivered"] == 0


def test_the_answer_cap_is_small() -> None:
    assert 1024 <= MAX_ANSWER_BYTES <= 16 * 1024
