"""WS-Discovery on loopback (unicast to a fake responder), and `gateway discover`'s YAML stanza."""

from __future__ import annotations

import argparse
import socket

import pytest

from gateway.config import check_config
from gateway.onvif.cli import add_discover_parser
from gateway.onvif.discovery import (
    WSD_MULTICAST,
    DiscoveredDevice,
    build_probe,
    ipv4_interfaces,
    no_answer_hint,
    parse_probe_matches,
    parse_target,
    probe,
)
from onvif_device import DiscoveryResponder, FakeOnvifDevice, FakePreset, probe_match

PASSWORD = "Secret-1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_discover(argv: list[str], monkeypatch, password: str | None = PASSWORD) -> int:
    if password is None:
        monkeypatch.delenv("CAM_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("CAM_PASSWORD", password)
    monkeypatch.delenv("CAM_USER", raising=False)
    parser = argparse.ArgumentParser(prog="gateway")
    add_discover_parser(parser.add_subparsers())
    args = parser.parse_args(["discover", *argv])
    return args.handler(args)


def test_probe_message_is_a_ws_discovery_probe_for_video_transmitters():
    text = build_probe("urn:uuid:1234").decode()
    assert "http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>" in text
    assert "<a:MessageID>urn:uuid:1234</a:MessageID>" in text
    assert "<d:Types>dn:NetworkVideoTransmitter</d:Types>" in text
    assert "urn:schemas-xmlsoap-org:ws:2005:04:discovery" in text


def test_probe_matches_are_parsed_with_scopes_and_filtered_by_relates_to():
    scopes = ("onvif://www.onvif.org/name/East%20Gate%20%E4%B8%9C%E9%97%A8 onvif://www.onvif.org/hardware/IPC-2000 "
              "onvif://www.onvif.org/location/city/Shenzhen onvif://www.onvif.org/Profile/Streaming")
    data = probe_match("urn:uuid:ours", "urn:uuid:dev-1",
                       "http://[fe80::1]/onvif/device_service http://10.0.0.5:8080/onvif/device_service", scopes)
    [device] = parse_probe_matches(data, "urn:uuid:ours", "10.0.0.5")
    assert device.endpoint == "urn:uuid:dev-1" and device.sender == "10.0.0.5"
    assert (device.name, device.hardware, device.location) == ("East Gate 东门", "IPC-2000", "city/Shenzhen")
    assert device.xaddr == "http://10.0.0.5:8080/onvif/device_service"
    assert device.host_port == ("10.0.0.5", 8080)
    assert parse_probe_matches(data, "urn:uuid:someone-else") == []
    assert parse_probe_matches(b"<not xml", None) == []
    assert parse_probe_matches(b"<a/>", None) == []
    assert DiscoveredDevice("e", ("http://cam/onvif/device_service",)).host_port == ("cam", 80)


def test_probe_target_parsing():
    assert parse_target("239.255.255.250:3702") == ("239.255.255.250", 3702)
    assert parse_target("127.0.0.1") == ("127.0.0.1", 3702)
    with pytest.raises(ValueError):
        parse_target("camera.local:80")


def test_probe_collects_each_device_once_and_ignores_garbage():
    with FakeOnvifDevice() as one, FakeOnvifDevice(name="Back Door") as two, \
            DiscoveryResponder([one, two], garbage=True) as responder:
        devices = probe(timeout=0.6, address=("127.0.0.1", responder.port))
    assert responder.probes == 2  # the probe is sent twice (UDP retransmission)
    assert sorted(d.name for d in devices) == ["Back Door", "Front Gate"]
    assert {d.xaddr for d in devices} == {one.device_url, two.device_url}


def test_probe_with_nobody_listening_returns_nothing():
    assert probe(timeout=0.3, address=("127.0.0.1", free_udp_port())) == []


def test_discover_prints_a_stanza_that_passes_check(tmp_path, monkeypatch, capsys, yolox_model):
    with FakeOnvifDevice(presets=[FakePreset("1", "Gate")], name="东门 East Gate") as gate, \
            FakeOnvifDevice(password="something-else", name="Back Door", model="IPC-3000") as refusing, \
            FakeOnvifDevice(name="广场") as plaza, \
            DiscoveryResponder([gate, refusing, plaza],
                               extra=[("urn:uuid:gone", "http://127.0.0.1:9/onvif/device_service")]) as wsd:
        code = run_discover(["--address", f"127.0.0.1:{wsd.port}", "--timeout", "0.5",
                             "--resolve-timeout", "3", "--user", "admin"], monkeypatch)
    out = capsys.readouterr().out
    assert code == 0
    assert PASSWORD not in out and "something-else" not in out
    assert out.count("password: \"${CAM_PASSWORD}\"") == 2
    assert "- id: east-gate" in out and "name: \"东门 East Gate\"" in out
    assert "- id: ipc-2000-127-0-0-1" in out  # a name with no ASCII letters: model + host
    assert "profile: \"subStream\"" in out and "resolution: [640, 360]" in out
    assert "rtsp://admin:***@127.0.0.1:554/Streaming/Channels/Profile_1" in out  # every profile's URI
    assert "PTZ" in out
    assert f"http://127.0.0.1:{refusing.port}/onvif/device_service (Back Door, IPC-3000): not authorized" in out
    assert "http://127.0.0.1:9/onvif/device_service: unreachable" in out
    config = tmp_path / "site.yaml"
    config.write_text(
        "gateway: {id: gw-test}\n"
        f"detector: {{model: {yolox_model}}}\n" + out, encoding="utf-8")
    parsed, issues = check_config(config, env={"CAM_PASSWORD": PASSWORD})
    assert issues == [] and parsed is not None
    assert [c.id for c in parsed.cameras] == ["east-gate", "ipc-2000-127-0-0-1"]
    source = parsed.cameras[0].source.onvif
    assert (source.port, source.user, source.password.get_secret_value(), source.profile) == (
        gate.port, "admin", PASSWORD, "subStream")


def test_discover_without_password_lists_devices_as_refused(monkeypatch, capsys):
    with FakeOnvifDevice() as device, DiscoveryResponder([device]) as wsd:
        code = run_discover(["--address", f"127.0.0.1:{wsd.port}", "--timeout", "0.3",
                             "--password-env", "GATE_PW"], monkeypatch, password=None)
    captured = capsys.readouterr()
    assert code == 1  # nothing usable found: a script must not carry on as if it had
    assert "1 refused the credentials" in captured.err
    assert "$GATE_PW is not set" in captured.err
    assert "not authorized" in captured.out and "cameras:" not in captured.out


def test_discover_custom_password_variable_is_used_in_the_stanza(monkeypatch, capsys):
    monkeypatch.setenv("GATE_PW", PASSWORD)
    with FakeOnvifDevice() as device, DiscoveryResponder([device]) as wsd:
        code = run_discover(["--address", f"127.0.0.1:{wsd.port}", "--timeout", "0.3",
                             "--password-env", "GATE_PW"], monkeypatch, password=None)
    out = capsys.readouterr().out
    assert code == 0 and 'password: "${GATE_PW}"' in out and PASSWORD not in out


def test_discover_with_no_answers_and_bad_flags(monkeypatch, capsys):
    assert run_discover(["--address", f"127.0.0.1:{free_udp_port()}", "--timeout", "0.2"], monkeypatch) == 1
    assert "no ONVIF device answered" in capsys.readouterr().out
    assert run_discover(["--address", "not-an-ip"], monkeypatch) == 2
    assert run_discover(["--timeout", "0"], monkeypatch) == 2
    assert run_discover(["--password-env", "1BAD"], monkeypatch) == 2


def test_a_multi_homed_box_that_found_nothing_is_told_to_pick_an_interface():
    networks = [("lo", "127.0.0.1"), ("eth0", "10.20.0.7"), ("eth1", "192.168.1.2")]
    hint = no_answer_hint(networks, None, WSD_MULTICAST)
    assert hint is not None
    assert "eth0 (10.20.0.7)" in hint and "eth1 (192.168.1.2)" in hint and "--interface NAME" in hint
    assert "lo" not in hint.replace("only", "")
    assert no_answer_hint(networks, "eth1", WSD_MULTICAST) is None                 # it chose one already
    assert no_answer_hint(networks, None, ("10.20.0.9", 3702)) is None             # unicast: no interface question
    assert no_answer_hint([("lo", "127.0.0.1"), ("eth0", "10.0.0.2")], None, WSD_MULTICAST) is None


def test_this_boxs_ipv4_interfaces_are_listed_by_name():
    assert ("lo", "127.0.0.1") in ipv4_interfaces()
