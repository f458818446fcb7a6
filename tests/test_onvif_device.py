"""ONVIF device resolution against the fake-but-faithful SOAP device in tests/onvif_device.py."""

from __future__ import annotations

import logging
import time

import pytest

from gateway.config.models import OnvifSettings
from gateway.onvif.device import (
    MediaProfile,
    OnvifCamera,
    choose_profile,
    resolve_camera_sync,
    stream_urls,
)
from gateway.onvif.session import (
    OnvifLoop,
    OnvifNoMediaProfile,
    OnvifNotAuthorized,
    OnvifProtocolError,
    OnvifSoapFault,
    OnvifTimeout,
    OnvifUnreachable,
)
from gateway.redaction import redact
from onvif_device import FakeOnvifDevice, FakePreset, FakeProfile, FaultSpec
from waiting import PATIENCE_S

PASSWORD = "Secret-1"


def settings(device: FakeOnvifDevice, password: str = PASSWORD, **extra) -> OnvifSettings:
    return OnvifSettings(host=device.host, port=device.port, user="admin", password=password, **extra)


@pytest.fixture
def device():
    with FakeOnvifDevice(presets=[FakePreset("1", "Gate")]) as fake:
        yield fake


def test_resolves_device_profiles_and_smallest_stream_by_default(device):
    camera = resolve_camera_sync(settings(device), timeout=PATIENCE_S)
    assert isinstance(camera, OnvifCamera)
    assert camera.device.manufacturer == "Acme" and camera.device.model == "IPC-2000"
    assert camera.device.serial_number == "SN-0001"
    assert [p.token for p in camera.profiles] == ["Profile_1", "Profile_2"]
    assert camera.profile.name == "subStream" and camera.resolution == (640, 360)
    assert camera.stream_url == (f"rtsp://admin:{PASSWORD}@127.0.0.1:554/Streaming/Channels/Profile_2"
                                 "?transportmode=unicast")
    assert camera.stream_url_display.startswith("rtsp://admin:***@127.0.0.1:554/")
    assert camera.snapshot_url_display.endswith("/onvif/snapshot?profile=Profile_2")
    assert camera.has_ptz and camera.has_events
    assert abs(camera.clock_skew_s) < 2
    assert PASSWORD not in repr(camera)
    # the device saw a pre-auth clock read, then authenticated calls only
    assert device.calls[0] == "GetSystemDateAndTime"
    assert {"GetServices", "GetDeviceInformation", "GetProfiles", "GetStreamUri"} <= set(device.calls)
    assert device.auth_failures == 0


@pytest.mark.parametrize("wanted, token", [
    ("mainStream", "Profile_1"), ("Profile_1", "Profile_1"), ("SUBSTREAM", "Profile_2"),
    ("1920x1080", "Profile_1"), ("640*360", "Profile_2"),
])
def test_profile_chosen_by_name_token_or_resolution(device, wanted, token):
    camera = resolve_camera_sync(settings(device, profile=wanted), timeout=PATIENCE_S)
    assert camera.profile.token == token


def test_unknown_profile_names_the_choices(device):
    with pytest.raises(OnvifNoMediaProfile) as caught:
        resolve_camera_sync(settings(device, profile="thirdStream"), timeout=PATIENCE_S)
    message = str(caught.value)
    assert message.startswith(f"127.0.0.1:{device.port}: ")
    assert "mainStream (Profile_1, H264 1920x1080)" in message and "subStream" in message


def test_choose_profile_prefers_h264_over_mjpeg_and_handles_none():
    profiles = [MediaProfile("jpeg", "mjpeg", "JPEG", 320, 240), MediaProfile("sub", "sub", "H264", 640, 360),
                MediaProfile("main", "main", "H264", 1920, 1080)]
    assert choose_profile(profiles, None).token == "sub"
    assert choose_profile(profiles, "320x240").token == "jpeg"
    with pytest.raises(OnvifNoMediaProfile):
        choose_profile([], None, "cam:80")


def test_camera_without_video_profiles_is_a_named_error():
    with FakeOnvifDevice(profiles=[FakeProfile("audio", "audioOnly", 0, 0, encoding="")]) as device:
        with pytest.raises(OnvifNoMediaProfile, match="no media profile with a video encoder"):
            resolve_camera_sync(settings(device), timeout=PATIENCE_S)


def test_credentials_embedded_by_the_camera_are_replaced_and_redacted():
    with FakeOnvifDevice(stream_uri_credentials=True, password="cam-own-pw") as device:
        camera = resolve_camera_sync(settings(device, password="cam-own-pw"), timeout=PATIENCE_S)
    assert camera.stream_url.startswith("rtsp://admin:cam-own-pw@127.0.0.1:554/")
    assert "cam-own-pw" not in camera.stream_url_display and "cam-own-pw" not in repr(camera)


def test_stream_url_helpers():
    url, shown = stream_urls("rtsp://root:leak@10.0.0.5/live?user=root&password=leak", "admin", "p@ss:w/rd")
    assert url.startswith("rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5/live?")
    assert shown == "rtsp://admin:***@10.0.0.5/live?user=root&password=***"  # users stay readable
    url, shown = stream_urls("rtsp://10.0.0.5:554/ch1", "", "")
    assert url == shown == "rtsp://10.0.0.5:554/ch1"
    assert redact("http://u:p@cam/snap.jpg?pwd=x&res=1") == "http://u:***@cam/snap.jpg?pwd=***&res=1"


def test_wrong_password_is_not_authorized_and_never_echoed(device):
    with pytest.raises(OnvifNotAuthorized) as caught:
        resolve_camera_sync(settings(device, password="Wrong-pw-123"), timeout=PATIENCE_S)
    assert str(caught.value).startswith(f"127.0.0.1:{device.port}: not authorized")
    assert "Wrong-pw-123" not in str(caught.value) and PASSWORD not in str(caught.value)
    assert device.auth_failures >= 1


def test_http_401_is_not_authorized():
    with FakeOnvifDevice(auth_failure="http401") as device:
        with pytest.raises(OnvifNotAuthorized, match="HTTP 401"):
            resolve_camera_sync(settings(device, password="nope"), timeout=PATIENCE_S)


def test_old_firmware_without_get_services_falls_back_to_capabilities():
    with FakeOnvifDevice(get_services=False, presets=[FakePreset("1", "Gate")]) as device:
        camera = resolve_camera_sync(settings(device), timeout=PATIENCE_S)
        assert "GetCapabilities" in device.calls
    assert camera.profile.token == "Profile_2" and camera.has_ptz


def test_clock_skew_is_adjusted_and_warned_about(caplog):
    with FakeOnvifDevice(clock_offset_s=-45) as device:
        with caplog.at_level(logging.WARNING, logger="gateway.onvif"):
            camera = resolve_camera_sync(settings(device), timeout=PATIENCE_S)
        assert device.auth_failures == 0  # digests were accepted thanks to the time adjustment
    assert -47 <= camera.clock_skew_s <= -43
    assert any("camera clock is off by -4" in record.getMessage() for record in caplog.records)


def test_small_skew_is_not_warned_about(caplog, device):
    with caplog.at_level(logging.WARNING, logger="gateway.onvif"):
        resolve_camera_sync(settings(device), timeout=PATIENCE_S)
    assert not any("clock" in record.getMessage() for record in caplog.records)


def test_soap_fault_is_a_named_error():
    fault = FaultSpec("env:Receiver", "ter:ActionNotSupported", "Optional Action Not Implemented")
    with FakeOnvifDevice(faults={"GetProfiles": fault}) as device:
        with pytest.raises(OnvifSoapFault, match="ActionNotSupported") as caught:
            resolve_camera_sync(settings(device), timeout=PATIENCE_S)
    assert caught.value.subcodes == ("ActionNotSupported",)


def test_missing_snapshot_uri_is_not_fatal():
    with FakeOnvifDevice(faults={"GetSnapshotUri": FaultSpec()}) as device:
        camera = resolve_camera_sync(settings(device), timeout=PATIENCE_S)
    assert camera.snapshot_url is None and camera.stream_url


def test_html_instead_of_soap_is_a_protocol_error(device):
    device.raw_responses["GetProfiles"] = (200, b"<html><body>Login</body></html>")
    with pytest.raises(OnvifProtocolError):
        resolve_camera_sync(settings(device), timeout=PATIENCE_S)


def test_device_that_never_answers_times_out():
    with FakeOnvifDevice(never_answer=True) as device:
        started = time.monotonic()
        with pytest.raises(OnvifTimeout, match=f"127.0.0.1:{device.port}: the device did not answer within 1"):
            resolve_camera_sync(settings(device), timeout=1.0)
        assert time.monotonic() - started < 20  # gave up: the device would never have answered


def test_unreachable_device():
    import socket

    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OnvifUnreachable, match=f"127.0.0.1:{port}: unreachable"):
        resolve_camera_sync(OnvifSettings(host="127.0.0.1", port=port, user="a", password="b"), timeout=3)


def test_slow_answer_within_the_timeout_is_fine():
    with FakeOnvifDevice(delays={"GetProfiles": 0.5}) as device:
        camera = resolve_camera_sync(settings(device), timeout=PATIENCE_S)
    assert camera.profile.token == "Profile_2"


def test_resolve_on_the_shared_loop_and_again_after_a_failure(device):
    with OnvifLoop() as loop:
        device.faults["GetStreamUri"] = FaultSpec("env:Receiver", None, "Stream busy")
        with pytest.raises(OnvifSoapFault):
            resolve_camera_sync(settings(device), timeout=PATIENCE_S, loop=loop)
        del device.faults["GetStreamUri"]
        camera = resolve_camera_sync(settings(device), timeout=PATIENCE_S, loop=loop)
    assert camera.profile.token == "Profile_2"
    assert not loop.running


def test_settings_object_can_be_the_source_wrapper(device):
    from gateway.config.models import OnvifSource

    camera = resolve_camera_sync(OnvifSource(onvif=settings(device, profile="mainStream")), timeout=PATIENCE_S)
    assert camera.profile.token == "Profile_1"


def test_third_party_profile_s_device_ipycam():
    """ipycam (PyPI) as an independent ONVIF implementation, when installed (pip install --no-deps ipycam).

    Only its SOAP handler runs (no streaming), on 127.0.0.1.
    """
    pytest.importorskip("ipycam")
    import http.server
    import threading
    from types import SimpleNamespace

    from ipycam.config import CameraConfig
    from ipycam.http import IPCameraHTTPHandler
    from ipycam.onvif import ONVIFService

    handler = type("Handler", (IPCameraHTTPHandler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    config = CameraConfig(local_ip="127.0.0.1", onvif_port=port)
    config.set_credentials("admin", PASSWORD)
    handler.camera = SimpleNamespace(onvif=ONVIFService(config), config=config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = OnvifSettings(host="127.0.0.1", port=port, user="admin", password=PASSWORD)
        camera = resolve_camera_sync(target, timeout=PATIENCE_S)
        assert (camera.device.manufacturer, camera.device.model) == ("PythonCam", "VirtualCam-1")
        assert camera.resolution == (640, 360)
        assert camera.stream_url == f"rtsp://admin:{PASSWORD}@127.0.0.1:8554/video_sub"
        assert camera.stream_url_display == "rtsp://admin:***@127.0.0.1:8554/video_sub"
        main = resolve_camera_sync(target.model_copy(update={"profile": "1920x1080"}), timeout=PATIENCE_S)
        assert main.stream_url.endswith("/video_main")
        with pytest.raises(OnvifNotAuthorized):
            resolve_camera_sync(target.model_copy(update={"password": "wrong-one"}), timeout=PATIENCE_S)
    finally:
        server.shutdown()
        server.server_close()
