"""What a county platform asks of the device, with real SIPp as the platform (tests/sipp/
queries_platform.xml) over UDP and TCP, sending from the platform's own address and port:
RecordInfo, PresetQuery, DeviceStatus, DeviceInfo and ConfigDownload each get their Response
(SIPp checks the bodies), PTZ DeviceControl moves a fake ONVIF camera through
`OnvifCameraControl` (and is refused with Result ERROR for a camera without PTZ), and the
Catalog and Alarm subscriptions get their NOTIFYs. Waits are on the device's health, the fake
camera's reported position and SIPp's exit status, never on sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.config.gb28181 import Gb28181Output
from gateway.config.models import OnvifSettings
from gateway.onvif.control import OnvifCameraControl
from gateway.onvif.session import OnvifLoop
from gateway.outputs.gb28181 import Gb28181Transport
from onvif_device import FakeOnvifDevice, FakePreset
from test_gb28181_sipp import (  # noqa: F401 - the platforms fixture
    CAMERAS,
    CHANNELS,
    DEVICE_ID,
    HOST,
    PASSWORD,
    PLATFORM_ID,
    alert,
    platform_port,
    platforms,
    wait_for,
)
from waiting import wait_until

ANSWERS = 6
"""RecordInfo, PresetQuery, DeviceStatus, DeviceInfo, ConfigDownload and the refused PTZ."""


@pytest.fixture(scope="module")
def loop() -> Iterator[OnvifLoop]:
    with OnvifLoop("test-gb-ptz") as shared:
        yield shared


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_platforms_queries_controls_and_subscriptions_against_sipp(platforms, loop, transport: str):  # noqa: F811
    presets = [FakePreset("1", "Gate", 0.1, -0.2, 0.0), FakePreset("2", "Plaza", 0.6, 0.3, 0.5)]
    with FakeOnvifDevice(presets=presets) as camera:
        control = OnvifCameraControl({"east-gate": OnvifSettings(host=camera.host, port=camera.port, user="admin",
                                                                 password="Secret-1"),
                                      "west-gate": None}, loop=loop)  # west: an RTSP camera, no PTZ
        port = platform_port()
        platform = platforms(port, transport, scenario="queries_platform.xml", name="queries")
        settings = Gb28181Output.model_validate({
            "host": HOST, "port": port, "transport": transport, "platform_id": PLATFORM_ID,
            "device_id": DEVICE_ID, "password": PASSWORD, "bind": HOST, "local_port": 0, "keepalive_s": 1,
            "answer_timeout_s": 5, "max_missed_keepalives": 2, "retry_max_s": 2, "channels": CHANNELS})
        device = Gb28181Transport(settings, cameras=CAMERAS, timezone="Asia/Shanghai", gateway_name="东城网关",
                                  control=control)
        device.open()
        try:
            # the continuous move ran until the platform's stop, then preset 2 was called
            wait_until(lambda: len(camera.stopped_at) == 1, what="the platform's PTZ stop to reach the camera")
            assert camera.stopped_at[0][0] > 0.05  # the head had panned right
            wait_until(lambda: camera.ptz_position() == ((0.6, 0.3, 0.5), False), what="the head at preset 2")
            assert [call[0] for call in camera.ptz_calls] == ["ContinuousMove", "Stop"]
            assert camera.goto_calls == [("Profile_1", "2")]
            health = wait_for(device, lambda h: h["subscriptions"] == 2, "the Catalog and Alarm subscriptions")
            assert health["clock_skew_s"] is not None  # SIPp's 200 carries a Date
            device.deliver(alert(), timeout_s=30)  # also goes as a NOTIFY to the Alarm subscription
            health = wait_for(device, lambda h: h["answers_sent"] == ANSWERS and h["answers_acknowledged"] == ANSWERS
                              and h["notifies_sent"] == 4, "every answer taken by SIPp and the alarm's NOTIFY")
            assert health["controls_refused"] == 1 and health["camera_jobs"] == 5 and health["foreign_datagrams"] == 0
        finally:
            device.close()
            control.close()
        assert platform.stop() == 0, platform.screen()[-3000:]
        log = platform.messages()
        assert b"SIP/2.0 400" not in log and b"SIP/2.0 403" not in log
        assert b"SUBSCRIBE sip:" in log and log.count(b"NOTIFY sip:") >= 4
