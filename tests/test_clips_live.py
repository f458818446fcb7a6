"""Evidence clips from a running gateway, seen the way the centre sees them.

`gateway run` on the camera-like H.264 sample (looped in real time, as a camera streams it),
a real Mosquitto and the real API: the alert's start says its clip is recording, the event
list shows it ready once written, the link in the payload serves the MP4 (whole and by range,
as a browser's player asks for it), ffprobe decodes it from its first frame, the page's alert
card plays it in Chromium,
and the event's later messages (here: its end when the gateway stops) carry the final state
and the span, which covers the event with its pre-roll.
"""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from clip_support import launch_chromium, probe
from conftest import VTEST_H264, YOLOX_NANO
from gateway.events import validate_alert
from mqtt_broker import Mosquitto, free_port, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from test_service import alerts, start_gateway, wait_until  # noqa: F401  (fixture)
from waiting import PATIENCE_S
from web_support import wait_until as wait_until_shown

TOKEN = "clip-test-token-0123456789"
PRE_S, POST_S, MAX_S = 2.0, 3.0, 12.0  # the clip settings below
GOP_S = 2.0  # the sample's keyframe interval


def write_config(path: Path, broker_port: int, api_port: int, data_dir: Path) -> Path:
    path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-test, name: 测试网关, timezone: Asia/Shanghai, data_dir: {data_dir}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        mqtt: {{host: 127.0.0.1, port: {broker_port}, heartbeat_s: 1}}
        api: {{port: {api_port}, token: {TOKEN}, public_url: "http://127.0.0.1:{api_port}"}}
        cameras:
          - id: cam1
            name: 广场cam1
            source: {{file: {VTEST_H264}}}
            fps: 2
            clips: {{pre_s: {PRE_S}, post_s: {POST_S}, max_s: {MAX_S}}}
            rules:
              - {{type: crowd, min_people: 6, for_s: 2, clear_s: 2, severity: 3}}
        """), encoding="utf-8")
    return path


def finished_clip(messages: list[dict]) -> dict | None:
    """The first message whose clip is written (ready or partial), if any yet."""
    for message in messages:
        if message.get("evidence", {}).get("clip", {}).get("status") in ("ready", "partial"):
            return message
    return None


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE_S) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def listed_clip(api: str, event_id: str) -> dict | None:
    """The clip as the event list shows it (the page's view), None before the event is listed."""
    status, _headers, body = get(f"{api}/api/events?camera=cam1")
    assert status == 200, body
    return next((item["clip"] for item in json.loads(body)["items"] if item["event_id"] == event_id), None)


def test_a_live_alert_carries_a_clip_that_the_api_serves_and_a_browser_plays(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory, start_gateway) -> None:
    sub = subscriber_factory(mosquitto.port, ["gw/gw-test/events/#"])
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    gateway = start_gateway(write_config(tmp_path / "site.yaml", mosquitto.port, api_port, tmp_path / "data"))

    wait_until(lambda: any(m["state"] == "start" for m in alerts(sub, "cam1")), 2 * PATIENCE_S,
               "the crowd alert to start", gateway)
    start = next(m for m in alerts(sub, "cam1") if m["state"] == "start")
    event_id = start["event_id"]
    url = f"{api}/api/events/{event_id}/clip"
    validate_alert(start)
    assert start["evidence"]["clip"] == {"status": "recording", "url": url, "from": None, "to": None}

    # The page's link is relative (same origin); the centre's (above) starts with api.public_url.
    wait_until(lambda: (listed_clip(api, event_id) or {}).get("status") in ("ready", "partial"), 2 * PATIENCE_S,
               "the event list to show the clip written", gateway)
    assert listed_clip(api, event_id)["url"] == f"/api/events/{event_id}/clip"
    status, headers, whole = get(url)
    assert status == 200 and headers["content-type"] == "video/mp4" and whole[4:8] == b"ftyp"
    status, headers, part = get(url, {"Range": "bytes=0-99"})
    assert status == 206 and part == whole[:100] and headers["content-range"] == f"bytes 0-99/{len(whole)}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url), timeout=PATIENCE_S)
    assert refused.value.code == 401
    saved = tmp_path / "clip.mp4"
    saved.write_bytes(whole)
    found = probe(saved)
    assert (found.codec, found.width, found.height, found.first_key) == ("h264", 768, 576, True)

    # The duty officer's page: the alert card's video button plays the clip in the overlay.
    with launch_chromium() as browser:
        page = browser.new_page()
        try:
            page.goto(f"{api}/?token={TOKEN}")  # the kiosk link: a session cookie for the clip's request
            button = f'.alert[data-id="{event_id}"] .clip-btn'
            wait_until_shown(page, f"(() => {{ const b = document.querySelector('{button}'); "
                                   "return !!b && !b.hidden && !b.disabled; })()")
            page.click(button)
            wait_until_shown(page, "document.getElementById('lightbox-video').readyState >= 2")
            wait_until_shown(page, "document.getElementById('lightbox-video').currentTime > 0.5")
            state = page.evaluate("(() => { const v = document.getElementById('lightbox-video'); "
                                  "return {error: v.error && v.error.code, width: v.videoWidth, "
                                  "overlay: !document.getElementById('lightbox').hidden}; })()")
            page.keyboard.press("Escape")
            wait_until_shown(page, "document.getElementById('lightbox').hidden")
        finally:
            page.close()
    assert state == {"error": None, "width": 768, "overlay": True}

    # The memory each camera's ring holds and the clip folder are on /metrics.
    status, _headers, metrics = get(f"{api}/metrics")
    series = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.decode().splitlines()
              if line and not line.startswith("#")}
    assert status == 200 and series['gateway_camera_packet_ring_bytes{camera="cam1"}'] > 0
    assert series['gateway_camera_packet_ring_seconds{camera="cam1"}'] >= PRE_S
    assert series["gateway_clips"] >= 1 and 0 < series["gateway_clips_bytes"] <= series["gateway_clips_max_bytes"]

    # The event's messages after the clip is written carry its final state: its next update, or
    # its end (sent again after the post-roll, or here on the way out).
    assert gateway.stop() == 0, gateway.log()
    assert sub.wait_for(lambda _m: finished_clip([m for m in alerts(sub, "cam1") if m["event_id"] == event_id]),
                        PATIENCE_S), gateway.log()
    lifecycle = [m for m in alerts(sub, "cam1") if m["event_id"] == event_id]
    for message in lifecycle:
        validate_alert(message)
    assert [m["seq"] for m in lifecycle] == list(range(1, len(lifecycle) + 1))
    assert lifecycle[-1]["state"] == "end"
    done = finished_clip(lifecycle)
    states = [m["evidence"]["clip"]["status"] for m in lifecycle]
    finished_at = lifecycle.index(done)
    assert set(states[:finished_at]) == {"recording"} and set(states[finished_at:]) == {states[-1]}, states

    clip = done["evidence"]["clip"]
    started = datetime.fromisoformat(start["started_at"]).timestamp()
    first = datetime.fromisoformat(clip["from"]).timestamp()
    last = datetime.fromisoformat(clip["to"]).timestamp()
    # Starts on the keyframe before the pre-roll (or where the stream began), never after the event.
    assert started - PRE_S - GOP_S - 0.5 <= first <= started, (clip, start["started_at"])
    if clip["status"] == "ready" and clip.get("reason"):  # capped: the event outlasted max_s
        assert last >= started + MAX_S - 0.5 and "capped" in clip["reason"], clip
    elif clip["status"] == "ready":  # the event ended by itself: the post-roll follows its end
        ended = datetime.fromisoformat(done["ended_at"]).timestamp()
        assert last >= ended + POST_S - 0.5, (clip, done["ended_at"])
    else:  # partial: cut short (the looped file reconnected), and says why
        assert clip["reason"], clip
    assert abs(found.duration - (last - first)) <= 1.0, (found.duration, clip)
