"""The GB/T 28181 output's settings: IDs of 20 digits with a plausible type code, clear errors.

The `outputs:` list that will hold this model is added elsewhere; until then the model is
validated through pydantic directly, with the error text the loader will show.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config.gb28181 import Gb28181Output
from waiting import PATIENCE_S

REPO = Path(__file__).resolve().parent.parent

GOOD = {
    "host": "10.1.1.1",
    "platform_id": "34020000002000000001",
    "device_id": "34020000001180000001",
    "password": "secret",
}


def errors(**changes: object) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        Gb28181Output.model_validate({**GOOD, **changes})
    return [(error["loc"], error["msg"]) for error in caught.value.errors()]


def test_minimal_settings_and_defaults():
    settings = Gb28181Output.model_validate(GOOD)
    assert settings.type == "gb28181"
    assert settings.port == 5060 and settings.transport == "udp"
    assert settings.sip_domain == "3402000000"  # the first 10 digits of the platform ID
    assert settings.expires_s == 3600 and settings.keepalive_s == 60 and settings.max_missed_keepalives == 3
    assert settings.sink_name == "gb28181:gb28181"
    assert "secret" not in repr(settings)


def test_id_must_be_twenty_digits():
    [(loc, message)] = errors(device_id="3402000000118000001")  # 19 digits
    assert loc == ("device_id",)
    assert "exactly 20 decimal digits" in message and "19 characters" in message
    [(loc, message)] = errors(platform_id="3402000000200000000A")
    assert loc == ("platform_id",) and "exactly 20 decimal digits" in message
    [(_, message)] = errors(device_id="３４０２００００００１１８００００００１")  # full-width digits
    assert "exactly 20 decimal digits" in message


def test_type_code_of_each_id_is_checked_and_explained():
    [(loc, message)] = errors(device_id="34020000001320000001")  # an IP camera code as the gateway
    assert loc == ("device_id",)
    assert "digits 11-13" in message and "132 (IP camera)" in message and "118 NVR" in message
    [(loc, message)] = errors(platform_id="34020000001180000009")
    assert loc == ("platform_id",) and "118 (NVR)" in message and "200" in message
    [(loc, message)] = errors(channels={"cam1": "34020000002000000009"})
    assert loc == ("channels", "cam1")
    assert "200 (central signalling server)" in message and "131 camera, 132 IP camera" in message


def test_swapped_or_shared_ids_are_refused():
    [(_, message)] = errors(channels={"cam1": "34020000001320000001", "cam2": "34020000001320000001"})
    assert "@channels.cam2" in message and "already used by channels.cam1" in message


def test_channels_key_on_camera_and_sensor_ids_and_fall_back_to_the_alarm_channel():
    """WVP files an alarm only under a catalogue channel: nothing falls back to the device ID."""
    settings = Gb28181Output.model_validate({**GOOD, "channels": {"east-gate": "34020000001320000001",
                                                                  "smoke-1": "34020000001340000007"}})
    assert settings.channel_id("east-gate") == "34020000001320000001"
    assert settings.gateway_channel == "34020000001340000001"  # device_id with type 134, same serial
    assert settings.channel_id("unlisted") == settings.gateway_channel
    assert settings.channel_id(None) == settings.gateway_channel  # disk_full: the gateway's own alarm
    assert settings.channel_id("east-gate", "smoke-1") == "34020000001340000007"  # the sensor's own channel
    assert settings.channel_id("east-gate", "door-2") == "34020000001320000001"  # else its linked camera's
    [problem] = settings.channel_problems({"west-gate"}, {"smoke-1"})
    assert problem.subpath == "channels.east-gate"
    assert "unknown camera or sensor 'east-gate' (cameras: west-gate; sensors: smoke-1)" in problem.message
    assert settings.channel_problems({"east-gate"}, {"smoke-1"}) == []
    [(loc, _)] = errors(channels={"bad id/": "34020000001320000001"})
    assert loc == ("channels", "bad id/", "[key]")


def test_sensor_channels_are_alarm_inputs_and_the_alarm_channel_is_distinct():
    settings = Gb28181Output.model_validate({**GOOD, "channels": {"smoke-1": "34020000001320000007"}})
    [problem] = settings.channel_problems(set(), {"smoke-1"})
    assert "sensor 'smoke-1' needs an alarm input channel" in problem.message
    assert "132 (IP camera)" in problem.message and "134 (alarm input device)" in problem.message
    [(loc, message)] = errors(alarm_channel="34020000001320000009")
    assert loc == ("alarm_channel",) and "134 alarm input device" in message
    [(_, message)] = errors(channels={"cam1": "34020000001340000001"})  # the derived alarm channel
    assert "already used by alarm_channel" in message
    chosen = Gb28181Output.model_validate({**GOOD, "alarm_channel": "34020000001340000099"})
    assert chosen.channel_id(None) == "34020000001340000099"


def test_warnings_name_sources_without_a_channel_and_a_keepalive_platforms_do_not_tolerate():
    settings = Gb28181Output.model_validate({**GOOD, "keepalive_s": 120, "channels": {"east": "34020000001320000001"}})
    found = settings.warnings(["east", "yard"], {"smoke": [], "door": ["east"], "pir": ["yard"]})
    assert len(found) == 4
    assert "camera 'yard' has no GB/T 28181 channel" in found[0] and "34020000001340000001" in found[0]
    assert "sensor 'smoke' has no GB/T 28181 channel" in found[1] and "sensor 'pir'" in found[2]
    assert "keepalive_s 120 is longer than the 60 s" in found[3] and "180 s" in found[3]
    assert Gb28181Output.model_validate(GOOD).warnings([], {}) == []


def test_ranges_and_unknown_keys():
    assert errors(transport="sctp")[0][0] == ("transport",)
    assert errors(keepalive_s=0)[0][0] == ("keepalive_s",)
    assert errors(expires_s=10)[0][0] == ("expires_s",)
    assert errors(port=70000)[0][0] == ("port",)
    [(loc, message)] = errors(keepalive=30)
    assert loc == ("keepalive",) and "Extra inputs" in message
    [(loc, message)] = errors(domain="34 02")
    assert loc == ("domain",) and "digits" in message


def test_video_streams_are_capped_and_their_ports_need_one_each():
    settings = Gb28181Output.model_validate(GOOD)
    assert settings.max_streams == 4 and settings.media_ports is None  # a Pi's share; any free port
    ranged = Gb28181Output.model_validate({**GOOD, "media_ports": [30000, 30003], "max_streams": 4})
    assert ranged.media_ports == (30000, 30003)
    assert Gb28181Output.model_validate({**GOOD, "max_streams": 0}).max_streams == 0  # video off
    assert errors(max_streams=65)[0][0] == ("max_streams",)
    [(loc, message)] = errors(media_ports=[30010, 30000])
    assert loc == ("media_ports",) and "1024 <= first <= last <= 65535" in message
    [(_, message)] = errors(media_ports=[30000, 30001], max_streams=3)
    assert "@media_ports" in message and "2 port(s) for max_streams 3: every stream needs a port of its own" in message


def test_unquoted_ids_read_as_numbers_by_yaml_are_accepted():
    settings = Gb28181Output.model_validate({**GOOD, "platform_id": 34020000002000000001,
                                             "channels": {"cam1": 34020000001320000001}})
    assert settings.platform_id == "34020000002000000001" and settings.channels["cam1"] == "34020000001320000001"
    [(_, message)] = errors(device_id=3402000000118000001)
    assert "exactly 20 decimal digits" in message
    assert errors(device_id=True)[0][0] == ("device_id",)


def test_password_is_required():
    settings = dict(GOOD)
    del settings["password"]
    with pytest.raises(ValidationError) as caught:
        Gb28181Output.model_validate(settings)
    assert caught.value.errors()[0]["loc"] == ("password",)


def test_gateway_check_prints_the_gb28181_warnings_and_still_passes(tmp_path):
    """`gateway check` on a file with a GB/T 28181 output: every camera and sensor without a
    channel named as a warning line (exit 0), like the other warnings."""
    model = Path(__file__).resolve().parent.parent.parent / "shared" / "models" / "yolox_nano.onnx"
    (tmp_path / "site.yaml").write_text(textwrap.dedent(f"""\
        gateway: {{id: gw1}}
        detector: {{model: {model}}}
        cameras:
          - {{id: gate, source: {{rtsp: "rtsp://127.0.0.1/gate"}}}}
          - {{id: yard, source: {{rtsp: "rtsp://127.0.0.1/yard"}}}}
        sensor_brokers: {{site: {{host: 127.0.0.1}}}}
        sensors:
          - {{id: smoke-1, type: smoke, topic: z2m/smoke1, format: zigbee2mqtt}}
          - {{id: door-1, type: door, topic: z2m/door1, format: zigbee2mqtt, link: {{cameras: [gate]}}}}
        outputs:
          - type: gb28181
            host: 127.0.0.1
            platform_id: "34020000002000000001"
            device_id: "34020000001180000001"
            password: ${{GB_PASSWORD}}
            keepalive_s: 90
            channels: {{gate: "34020000001320000001"}}
        """))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", "site.yaml"], capture_output=True,
                            text=True, timeout=PATIENCE_S, cwd=tmp_path,
                            env={**os.environ, "GB_PASSWORD": "s3cret", "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if ": warning: " in line]
    assert len(warnings) == 3, result.stderr
    assert "camera 'yard' has no GB/T 28181 channel" in warnings[0] and "34020000001340000001" in warnings[0]
    assert "sensor 'smoke-1' has no GB/T 28181 channel" in warnings[1]  # door-1 alarms on gate's channel
    assert "keepalive_s 90" in warnings[2] and "s3cret" not in result.stderr
