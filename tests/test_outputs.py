"""Every kind of output at once: one alert reaches a real Mosquitto, a real HTTP receiver and a
real SIPp GB/T 28181 platform; the platform going away loses nothing for the others and nothing
for itself once it is back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from delivery_support import SOURCE, delivery_config, make_router, sink, start_alert
from http_receiver import Receiver
from mqtt_broker import Mosquitto, mosquitto, subscriber_factory  # noqa: F401  (fixtures)
from test_gb28181_sipp import DEVICE_ID, PASSWORD, PLATFORM_ID, SippPlatform, platform_port
from waiting import PATIENCE_S, wait_until

EAST_GATE = replace(SOURCE, camera_id="east-gate", camera_name="东门广场")
"""The camera the SIPp platform expects alarms for (channel 34020000001320000001)."""


def test_one_alert_reaches_mqtt_a_webhook_and_a_gb28181_platform_and_outages_stay_apart(
        tmp_path: Path, mosquitto: Mosquitto, subscriber_factory) -> None:
    centre = subscriber_factory(mosquitto.port, ["gw/+/events/#"])
    receiver = Receiver().start()
    port = platform_port()
    platforms = [SippPlatform(tmp_path, port, "udp", name="first").start()]
    gb28181 = {"type": "gb28181", "id": "county", "host": "127.0.0.1", "port": port, "transport": "udp",
               "platform_id": PLATFORM_ID, "device_id": DEVICE_ID, "password": PASSWORD, "bind": "127.0.0.1",
               "local_port": 0, "keepalive_s": 1, "answer_timeout_s": 2, "max_missed_keepalives": 2,
               "retry_max_s": 2, "channels": {"east-gate": "34020000001320000001"}}
    config = delivery_config(tmp_path / "data", mqtt_port=mosquitto.port, webhook_url=receiver.url(),
                             more_outputs=[gb28181],
                             cameras=[{"id": "east-gate", "name": "东门广场", "source": {"rtsp": "rtsp://127.0.0.1/e"}}])
    router = make_router(config)
    platform_sink = sink(router, "gb28181:county")
    try:
        first = start_alert(0, source=EAST_GATE)[1]
        router.route([first])
        assert centre.wait_for(lambda m: any(x.json()["event_id"] == first.event_id for x in m), PATIENCE_S)
        assert receiver.wait_for(lambda r: any(x.json()["event_id"] == first.event_id for x in r), PATIENCE_S)
        wait_until(lambda: platform_sink.health()["delivered"] == 1, what="the platform to take the alarm")
        assert platform_sink.outbox.depth() == 0

        platforms[0].kill()  # the platform goes away: MQTT and the webhook go on
        during = [start_alert(index, source=EAST_GATE)[1] for index in (1, 2)]
        router.route(during)
        wanted = {message.event_id for message in during}
        assert centre.wait_for(lambda m: wanted <= {x.json()["event_id"] for x in m}, PATIENCE_S)
        assert receiver.wait_for(lambda r: wanted <= {x.json()["event_id"] for x in r}, PATIENCE_S)
        assert platform_sink.outbox.depth() == 2

        platforms.append(SippPlatform(tmp_path, port, "udp", name="second").start())  # back: it catches up
        wait_until(lambda: platform_sink.outbox.depth() == 0, timeout=60, what="the queued alarms to be taken")
        assert platform_sink.health()["delivered"] == 3
        assert router.health()["outputs"]["gb28181:county"]["alive"]
    finally:
        router.stop()
        receiver.stop()
        for platform in platforms:
            platform.kill()
