"""GB/T 28181 live video and playback end to end, with real peers: SIPp plays the platform
(tests/sipp/live_platform.xml: WVP-GB28181-pro's INVITE, from the platform's own address and
port), GStreamer is its media server (tests/gst_ps_receiver.py) and must decode what the
gateway sends, and the camera is a real `CameraReader` playing vtest_h264.mp4 in real time
(H.264, 10 fps, a keyframe every 2 s) into its packet ring, as the analysis reader does.

- live video over UDP, TCP with the gateway connecting (the platform's a=setup:passive) and
  TCP with the gateway listening (a=setup:active): 12 s of watching, then the platform's BYE;
  GStreamer decodes >= 95 % of the frames sent, and they are at least 10 s of the camera;
- the camera stops: the gateway sends BYE (through the platform's Record-Route);
- 404 for an unknown channel, 480 for an offline camera, 486 beyond max_streams (SIPp checks);
- playback of an evidence clip made by the real clip writer: streamed at its own pace, decoded
  by GStreamer, ended by the gateway's BYE when the clip is over;
- the whole gateway (`gateway run` with a file camera): the platform watches the camera through
  the live view's packet ring (the analysis reader's), as /metrics reports.
Waits are on SIPp's message log and exit status, GStreamer's output lines and the gateway's
health (or /readyz and /metrics), never on sleeps.
"""

from __future__ import annotations

import math
import re
import socket
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import YOLOX_NANO
from gateway.api.metrics import GatewayMetrics
from gateway.config.gb28181 import Gb28181Output
from gateway.evidence.alerts import ClipEvidence, ClipRecords
from gateway.evidence.clips import ClipPolicy, ClipRecorder
from gateway.evidence.store import ClipStore
from gateway.evidence.worker import ClipWorker
from gateway.outputs.gb28181 import Gb28181Transport
from gateway.video.packets import PacketRing
from gateway.video.reader import CameraReader
from gb28181_media_support import VTEST_H264, GstReceiver
from test_gb28181_sipp import (  # noqa: F401 - the platforms fixture
    CAMERAS,
    CHANNELS,
    DEVICE_ID,
    HOST,
    PASSWORD,
    PLATFORM_ID,
    SippPlatform,
    platform_port,
    platforms,
    wait_for,
)
from test_service import start_gateway  # noqa: F401 - the fixture
from waiting import PATIENCE_S, wait_until

DECODED_SHARE = 0.95
WATCHED_FRAMES = 100
"""The platform watches 12 s; at least 10 s of the camera's 10 fps must have gone out."""
EAST = CHANNELS["east-gate"]
SETUP = {"udp": "none", "tcp-active": "passive", "tcp-passive": "active"}
"""The platform's a=setup for each of the gateway's roles (none: UDP, no a=setup line)."""


class RingVideo:
    """The live view's `VideoSource` over the test's cameras: their packet rings by camera id."""

    def __init__(self, rings: dict[str, PacketRing]) -> None:
        self.rings = rings

    def packets(self, camera_id: str) -> PacketRing | None:
        return self.rings.get(camera_id)


@pytest.fixture
def camera() -> Iterator[tuple[PacketRing, CameraReader]]:
    """The east gate camera: vtest in real time into its ring, with a GOP held already."""
    ring = PacketRing("east-gate", keep_s=2.5)
    reader = CameraReader("east-gate", str(VTEST_H264), realtime=True, decode_mode="keyframes", analysis_fps=0.5,
                          packet_sink=ring.put, open_timeout_s=5, read_timeout_s=5, stall_s=10)
    reader.start()
    wait_until(lambda: ring.stats().packets > 0, what="the camera's first GOP in its ring")
    yield ring, reader
    reader.stop(timeout=PATIENCE_S)
    ring.close()


@pytest.fixture
def gateway() -> Iterator[Callable[..., Gb28181Transport]]:
    opened: list[Gb28181Transport] = []

    def make(port: int, ring: PacketRing, records: Any = None, **overrides: Any) -> Gb28181Transport:
        settings = Gb28181Output.model_validate({
            "host": HOST, "port": port, "transport": "udp", "platform_id": PLATFORM_ID, "device_id": DEVICE_ID,
            "password": PASSWORD, "bind": HOST, "local_port": 0, "keepalive_s": 1, "answer_timeout_s": 5,
            "max_missed_keepalives": 5, "retry_max_s": 2, "channels": CHANNELS, **overrides})
        device = Gb28181Transport(settings, cameras=CAMERAS, timezone="Asia/Shanghai",
                                  camera_online=lambda camera_id: camera_id != "west-gate",
                                  video=RingVideo({"east-gate": ring}), records=records)
        opened.append(device)
        device.open()
        return device

    yield make
    for device in opened:
        device.close()


def platform_for(platforms: Callable[..., SippPlatform], port: int, mode: str, *, media_port: int,  # noqa: F811
                 transport: str = "udp", session: str = "Play", timing: str = "0 0",
                 ssrc: str = "0200000001") -> SippPlatform:
    return platforms(port, "udp", scenario="live_platform.xml", name=f"live-{mode}", variables={
        "password": PASSWORD, "mode": mode, "channel": EAST, "session": session, "timing": timing,
        "media_port": str(media_port), "media_proto": "RTP/AVP" if transport == "udp" else "TCP/RTP/AVP",
        "setup": SETUP[transport], "ssrc": ssrc})


def answer_sdp(platform: SippPlatform) -> bytes:
    """The gateway's SDP answer (the 200 OK with a body), as SIPp logged it; b"" before it came."""
    found = re.search(rb"SIP/2\.0 200 OK\r\n(?:(?!\r\n\r\n).)*Content-Type: application/sdp.*?\r\n\r\n(v=0.*?f=[^\r]*)",
                      platform.messages(), re.DOTALL)
    return found.group(1) if found else b""


def answered_port(platform: SippPlatform) -> int:
    """The media port of the gateway's SDP answer."""
    found = re.search(rb"m=video (\d+) ", answer_sdp(platform))
    return int(found.group(1)) if found else 0


def assert_decoded(receiver: GstReceiver, sent: int) -> float:
    needed = math.ceil(DECODED_SHARE * sent)
    receiver.wait_frames(needed)
    final = receiver.finish()
    assert receiver.synced and final >= needed, f"GStreamer decoded {final} of {sent} frames"
    return final / sent


@pytest.mark.parametrize("transport", ["udp", "tcp-active", "tcp-passive"])
def test_the_platform_watches_a_camera_and_gstreamer_decodes_it(platforms, gateway, camera, transport,  # noqa: F811
                                                                 record_property):
    ring, _reader = camera
    receiver = {"udp": lambda: GstReceiver("udp"), "tcp-active": lambda: GstReceiver("tcp-server"),
                "tcp-passive": lambda: None}[transport]()
    try:
        port = platform_port()
        platform = platform_for(platforms, port, "watch", transport=transport,
                                media_port=receiver.port if receiver else 9)
        device = gateway(port, ring)
        if receiver is None:  # the platform's media server connects to the port of the answer
            listening = wait_until(lambda: answered_port(platform), what="the 200 OK with the SDP answer")
            receiver = GstReceiver("tcp-client", port=listening)
        health = wait_for(device, lambda h: h["live_ended_by_platform"] == 1, "the platform's BYE after 12 s")
        sent = health["live_frames_sent"]
        assert sent >= WATCHED_FRAMES and health["live_streams"] == 0 and health["live_invites"] == 1
        assert health["live_bytes_by_camera"]["east-gate"] == health["live_bytes_sent"] > 100_000
        share = assert_decoded(receiver, sent)
        record_property("decoded_share", round(share, 4))
        print(f"\n{transport}: GStreamer decoded {share:.1%} of {sent} frames")
        device.close()  # unregisters: SIPp's registration call ends
        assert platform.stop() == 0, platform.screen()[-3000:]
        answer = answer_sdp(platform)
        assert b"s=Play\r\n" in answer and b"y=0200000001" in answer and b"f=v/2/" in answer
        assert b"a=setup:" not in answer if transport == "udp" else \
            f"a=setup:{transport.split('-')[1]}".encode() in answer  # the gateway's role: the offer's opposite
    finally:
        if receiver is not None:
            receiver.kill()


def test_the_gateway_says_bye_when_the_camera_stops(platforms, gateway, camera):  # noqa: F811
    ring, reader = camera
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media_server:
        media_server.bind((HOST, 0))
        port = platform_port()
        platform = platform_for(platforms, port, "await_bye", media_port=media_server.getsockname()[1])
        device = gateway(port, ring)
        wait_for(device, lambda h: any(s["state"] == "streaming" and s["frames_sent"] >= 20
                                       for s in h["live_sessions"]), "the stream under way")
        reader.stop(timeout=PATIENCE_S)
        ring.close()  # as the camera worker does when the camera is stopped or removed
        health = wait_for(device, lambda h: h["live_ended_by_gateway"] == 1 and h["live_streams"] == 0,
                          "the gateway ending the session")
        device.close()
        assert platform.stop() == 0, platform.screen()[-3000:]
    assert health["live_sessions"] == []
    bye = platform.messages().split(b"BYE sip:")[1]
    assert bye.startswith(f"34020000002000000001@{HOST}:{port}".encode())  # the platform's Contact
    assert f"Route: <sip:{HOST}:{port};lr>".encode() in bye


def test_unknown_offline_and_one_too_many_are_refused(platforms, gateway, camera):  # noqa: F811
    ring, _reader = camera
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media_server:
        media_server.bind((HOST, 0))
        port = platform_port()
        platform = platform_for(platforms, port, "refusals", media_port=media_server.getsockname()[1])
        device = gateway(port, ring, max_streams=1)
        health = wait_for(device, lambda h: h["live_ended_by_platform"] == 1, "the refusals and the BYE")
        device.close()
        assert platform.stop() == 0, platform.screen()[-3000:]
    assert health["live_refused"] == {"unknown_channel": 1, "offline": 1, "busy": 1}
    assert health["live_invites"] == 3 and health["live_streams"] == 0  # the unknown channel: refused earlier
    text = GatewayMetrics(view=OutputsView({device.name: health})).render()[0].decode()
    for series in ('gateway_output_live_refused_total{output="gb28181:gb28181",reason="busy"} 1.0',
                   'gateway_output_live_refused_total{output="gb28181:gb28181",reason="offline"} 1.0',
                   'gateway_output_live_ended_total{by="platform",output="gb28181:gb28181"} 1.0',
                   'gateway_output_live_streams{output="gb28181:gb28181"} 0.0'):
        assert series in text, text


class OutputsView:
    """The live view as /metrics reads it: every output's health (here one output's, real)."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs

    def cameras(self) -> list:
        return []

    def readiness(self) -> dict:
        return {}

    def health(self) -> dict:
        return {"outputs": self.outputs}


@pytest.fixture
def evidence_clip(camera, tmp_path: Path) -> Iterator[tuple[ClipRecords, Any]]:
    """An evidence clip of the east gate made by the real recorder and clip writer: 2 s of
    pre-roll and 6 s after the event, about 8 s (80 frames)."""
    ring, _reader = camera
    store = ClipStore(tmp_path)
    writer = ClipWorker()
    writer.start()
    recorder = ClipRecorder("east-gate", ring, store, ClipPolicy(pre_s=2, post_s=6, max_s=30), wake=writer.wake)
    writer.add(recorder)
    wait_until(lambda: ring.stats().seconds >= 2.0, what="2 s of packets in the ring")
    event = str(uuid.uuid4())
    started = time.monotonic()
    recorder.start(event, started)
    recorder.end(event, started)
    clip = wait_until(lambda: (c := store.get(event)) and c.finished and c, timeout=PATIENCE_S + 10,
                      what="the clip finished")
    assert clip.status == "ready" and clip.packets >= 70
    evidence = ClipEvidence(_Discard())
    evidence.add(recorder)
    yield ClipRecords(store, evidence, timezone=_tz()), clip
    writer.stop(timeout=PATIENCE_S)


def test_the_platform_plays_an_evidence_clip_and_gstreamer_decodes_it(platforms, gateway, camera,  # noqa: F811
                                                                      evidence_clip, record_property):
    ring, _reader = camera
    records, clip = evidence_clip
    receiver = GstReceiver("udp")
    try:
        port = platform_port()
        platform = platform_for(platforms, port, "await_bye", media_port=receiver.port, session="Playback",
                                timing=f"{int(clip.from_ts)} {int(clip.to_ts) + 1}", ssrc="1200000001")
        device = gateway(port, ring, records=records)
        health = wait_for(device, lambda h: h["live_ended_by_gateway"] == 1 and h["live_streams"] == 0,
                          "the clip played to its end and the gateway's BYE")
        assert health["live_frames_sent"] == clip.packets
        share = assert_decoded(receiver, clip.packets)
        record_property("decoded_share", round(share, 4))
        print(f"\nplayback: GStreamer decoded {share:.1%} of the clip's {clip.packets} frames")
        device.close()
        assert platform.stop() == 0, platform.screen()[-3000:]
        answer = answer_sdp(platform)
        assert b"s=Playback\r\n" in answer and b"y=1200000001" in answer
    finally:
        receiver.kill()


class _Discard:
    """Where `ClipEvidence` would route alerts: nowhere (this test raises none)."""

    def route(self, messages: Any) -> None:
        raise AssertionError("no alert is routed in this test")


def _tz() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


def test_a_running_gateway_streams_its_camera_to_the_platform(platforms, start_gateway, tmp_path,  # noqa: F811
                                                              record_property):
    """`gateway run` with vtest_h264.mp4 as a camera and a gb28181 output: the platform's INVITE
    reaches the camera's packet ring through the live view (no second reading of the source)."""
    port, api_port = platform_port(), free_tcp_port()
    config = tmp_path / "site.yaml"
    config.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-live, name: 测试网关, timezone: Asia/Shanghai, data_dir: {tmp_path / "data"}}}
        detector: {{model: {YOLOX_NANO}, threads: 1}}
        api: {{bind: 127.0.0.1, port: {api_port}}}
        outputs:
          - {{type: gb28181, id: county, host: 127.0.0.1, port: {port}, platform_id: "{PLATFORM_ID}",
             device_id: "{DEVICE_ID}", password: "{PASSWORD}", bind: 127.0.0.1, local_port: 0, keepalive_s: 1,
             retry_max_s: 1, channels: {{east-gate: "{EAST}"}}}}
        cameras:
          - {{id: east-gate, name: 东门, source: {{file: {VTEST_H264}}}, fps: 0.5}}
        """), encoding="utf-8")
    receiver = GstReceiver("udp")
    gateway = start_gateway(config)
    try:
        # the camera first (its ring holds a GOP), then the platform, which the gateway keeps calling
        wait_until(lambda: http_status(f"http://127.0.0.1:{api_port}/readyz") == 200, timeout=2 * PATIENCE_S,
                   what="the gateway ready, its camera streaming")
        platform = platform_for(platforms, port, "watch", media_port=receiver.port)
        metrics = f"http://127.0.0.1:{api_port}/metrics"
        ended = 'gateway_output_live_ended_total{by="platform",output="gb28181:county"} 1.0'
        text = wait_until(lambda: (body := http_text(metrics)) and ended in body and body, timeout=2 * PATIENCE_S,
                          what="the platform watching 12 s, then its BYE")
        sent = int(float(re.search(r'gateway_output_live_frames_total\{output="gb28181:county"\} (\S+)', text)[1]))
        assert sent >= WATCHED_FRAMES
        assert 'gateway_output_live_bytes_total{camera="east-gate",output="gb28181:county"}' in text
        share = assert_decoded(receiver, sent)
        record_property("decoded_share", round(share, 4))
        print(f"\ngateway run: GStreamer decoded {share:.1%} of {sent} frames")
        assert gateway.stop() == 0, gateway.log()[-3000:]
        assert platform.stop() == 0, platform.screen()[-3000:]
    finally:
        receiver.kill()


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def http_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""
