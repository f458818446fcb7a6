"""GB/T 28181 live video, the pure parts: H.264/H.265 access units, the PS muxer, RTP, SDP,
timestamps and the frame queue. Real NAL units from vtest_h264.mp4 (and an x265 clip of it),
PS read back by a parser written from H.222.0 (tests/gb28181_media_support.py) and by ffprobe.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from gateway.outputs.gb28181 import ps, rtp
from gateway.outputs.gb28181.media import FrameQueue
from gateway.outputs.gb28181.remux import PacketRemuxer, TimestampMapper, UnsupportedStream
from gateway.outputs.gb28181.sdp import SdpError, build_answer, parse_offer, video_format
from gateway.video import h26x
from gateway.video.packets import EncodedPacket
from gb28181_media_support import VTEST_H264, hevc_clip, parse_ps, read_packets

AUD_H264 = b"\x00\x00\x00\x01\x09\xf0"


@pytest.fixture(scope="module")
def h264_packets() -> list[EncodedPacket]:
    return read_packets(VTEST_H264)


@pytest.fixture(scope="module")
def hevc_packets() -> list[EncodedPacket]:
    return read_packets(hevc_clip())


def annexb_twin(packet: EncodedPacket, keep_parameter_sets: bool) -> EncodedPacket:
    """The packet as an RTSP camera sends it: Annex B, extradata as Annex B parameter sets."""
    config = h26x.parse_extradata(packet.stream.codec, packet.stream.extradata)
    info = dataclasses.replace(packet.stream, extradata=h26x.join_annexb(config.parameter_sets))
    units = h26x.split_length_prefixed(packet.data, config.nal_length_size or 4)
    if keep_parameter_sets and packet.keyframe:
        units = list(config.parameter_sets) + units
    return dataclasses.replace(packet, data=h26x.join_annexb(units), stream=info)


def nal_types(codec: str, annexb: bytes) -> list[int]:
    return [h26x.nal_type(codec, unit) for unit in h26x.split_annexb(annexb)]


# --------------------------------------------------------------------------- h26x


def test_split_annexb_takes_3_and_4_byte_start_codes_and_drops_trailing_zeros():
    stream = b"\x00\x00\x00\x01\x67\x01\x02\x00\x00\x01\x68\x03\x00\x00\x00\x00\x01\x65\x04\x05\x00"
    assert h26x.split_annexb(stream) == [b"\x67\x01\x02", b"\x68\x03", b"\x65\x04\x05"]
    with pytest.raises(ValueError, match="no start code"):
        h26x.split_annexb(b"\x01\x02\x00\x00\x01\x65")


def test_avcc_of_the_sample_gives_its_sps_pps_and_4_byte_lengths(h264_packets):
    config = h26x.parse_extradata("h264", h264_packets[0].stream.extradata)
    assert config.nal_length_size == 4
    assert [h26x.nal_type("h264", unit) for unit in config.parameter_sets] == [h26x.H264_SPS, h26x.H264_PPS]
    again = h26x.parse_extradata("h264", h26x.join_annexb(config.parameter_sets))
    assert again.parameter_sets == config.parameter_sets and again.nal_length_size is None


def test_mp4_access_units_become_annexb_with_parameter_sets_on_keyframes_only(h264_packets):
    config = h26x.parse_extradata("h264", h264_packets[0].stream.extradata)
    keyframes = 0
    for packet in h264_packets:
        annexb = h26x.annexb_access_unit(packet)
        units = h26x.split_annexb(annexb)
        original = h26x.split_length_prefixed(packet.data, 4)
        if packet.keyframe:
            keyframes += 1
            assert units[:2] == list(config.parameter_sets) and units[2:] == original
            assert h26x.H264_IDR in nal_types("h264", annexb)
        else:
            assert units == original and h26x.H264_SPS not in nal_types("h264", annexb)
    assert keyframes == 40  # 795 frames, one keyframe every 2 s at 10 fps


def test_annexb_units_pass_unchanged_unless_a_keyframe_lacks_its_parameter_sets(h264_packets):
    key, other = h264_packets[0], h264_packets[1]
    complete = annexb_twin(key, keep_parameter_sets=True)
    assert h26x.annexb_access_unit(complete) is complete.data
    delta = annexb_twin(other, keep_parameter_sets=False)
    assert h26x.annexb_access_unit(delta) is delta.data
    bare = annexb_twin(key, keep_parameter_sets=False)
    assert nal_types("h264", h26x.annexb_access_unit(bare))[:2] == [h26x.H264_SPS, h26x.H264_PPS]
    with_aud = dataclasses.replace(bare, data=AUD_H264 + bare.data)
    assert nal_types("h264", h26x.annexb_access_unit(with_aud))[:3] == [h26x.H264_AUD, h26x.H264_SPS, h26x.H264_PPS]
    with pytest.raises(ValueError, match="not Annex B"):
        h26x.annexb_access_unit(dataclasses.replace(bare, data=key.data))


def test_malformed_access_units_and_records_raise_value_error(h264_packets):
    packet = h264_packets[1]
    with pytest.raises(ValueError, match="truncated NAL length prefix"):
        h26x.split_length_prefixed(packet.data + b"\x00\x00", 4)
    with pytest.raises(ValueError, match="runs past"):
        h26x.split_length_prefixed(packet.data[:-1], 4)
    with pytest.raises(ValueError, match="runs past"):
        h26x.annexb_access_unit(dataclasses.replace(packet, data=packet.data[:100]))
    with pytest.raises(ValueError, match="empty packet"):
        h26x.annexb_access_unit(dataclasses.replace(packet, data=b""))
    record = packet.stream.extradata
    assert record is not None
    for broken, reason in ((record[:5], "too short"), (b"\x02" + record[1:], "configurationVersion"),
                           (record[:-3], "runs past"), (record[:4] + b"\xfe" + record[5:], "3-byte")):
        with pytest.raises(ValueError, match=reason):
            h26x.parse_extradata("h264", broken)
    with pytest.raises(ValueError, match="cannot be remuxed"):
        h26x.parse_extradata("msmpeg4v3", b"")


def test_hevc_record_and_access_units_from_an_x265_clip(hevc_packets):
    config = h26x.parse_extradata("hevc", hevc_packets[0].stream.extradata)
    assert [h26x.nal_type("hevc", unit) for unit in config.parameter_sets] == [
        h26x.HEVC_VPS, h26x.HEVC_SPS, h26x.HEVC_PPS]
    for packet in hevc_packets[:25]:
        types = nal_types("hevc", h26x.annexb_access_unit(packet))
        if packet.keyframe:
            assert types[:3] == [h26x.HEVC_VPS, h26x.HEVC_SPS, h26x.HEVC_PPS]
            assert any(h26x.HEVC_IRAP_FIRST <= kind <= h26x.HEVC_IRAP_LAST for kind in types)
        else:
            assert h26x.HEVC_SPS not in types
    with pytest.raises(ValueError, match="hvcC record of 10 bytes"):
        h26x.parse_extradata("hevc", b"\x01" * 10)


# --------------------------------------------------------------------------- PS


def mux_all(packets: list[EncodedPacket], codec: str = "h264") -> list[tuple[EncodedPacket, bytes, int, int]]:
    muxer, clock = ps.PsMuxer(codec), TimestampMapper()
    frames = []
    for packet in packets:
        pts, dts = clock.map(packet)
        frames.append((packet, muxer.mux(h26x.annexb_access_unit(packet), pts, dts, packet.keyframe), pts, dts))
    return frames


def test_ps_frames_read_back_with_a_psm_before_every_keyframe_only(h264_packets):
    for packet, frame, pts, dts in mux_all(h264_packets[:65]):
        parsed = parse_ps(frame)
        assert parsed.scr == dts and parsed.mux_rate == ps.DEFAULT_MUX_RATE_BPS // 400
        assert (parsed.psm is not None) == packet.keyframe == (parsed.system_header is not None)
        assert parsed.pes[0][:2] == (pts, None)  # no B-frames: DTS equals PTS and is left out
        assert all(stamp is None for later in parsed.pes[1:] for stamp in later[:2])
        assert parsed.aligned == [packet.keyframe] + [False] * (len(parsed.pes) - 1)
        assert parsed.payload == AUD_H264 + h26x.annexb_access_unit(packet)
        if parsed.psm is not None:
            assert parsed.psm[12:16] == bytes((0x1B, 0xE0, 0, 0))  # H.264 is stream 0xE0
            assert ps.mpeg_crc32(parsed.psm) == 0
            assert parsed.system_header is not None and parsed.system_header[12] == 0xE0


def test_psm_crc_is_the_mpeg2_crc():
    assert ps.mpeg_crc32(b"123456789") == 0x0376E6E7  # the CRC-32/MPEG-2 check value
    psm = ps.program_stream_map(0x24, version=3)
    assert ps.mpeg_crc32(psm) == 0 and psm[6] & 0x1F == 3 and psm[12] == 0x24
    assert ps.mpeg_crc32(psm[:-5] + bytes([psm[-5] ^ 1]) + psm[-4:]) != 0


def test_a_large_frame_is_split_into_pes_packets_of_at_most_64_kib():
    access_unit = b"\x00\x00\x00\x01\x65" + bytes(range(256)) * 800  # 200 KiB keyframe
    frame = ps.PsMuxer("h264").mux(access_unit, 90_000, 87_000, keyframe=True)
    parsed = parse_ps(frame)
    assert len(parsed.pes) == 4 and parsed.payload == AUD_H264 + access_unit
    assert parsed.pes[0][:2] == (90_000, 87_000)
    assert all(pts is None and dts is None for pts, dts, _ in parsed.pes[1:])
    offset = frame.index(b"\x00\x00\x01\xe0")
    assert int.from_bytes(frame[offset + 4:offset + 6], "big") == 0xFFFF
    small = parse_ps(ps.PsMuxer("h264", max_pes_payload=1000).mux(access_unit, 0, 0, keyframe=False))
    assert len(small.pes) == -(-(len(access_unit) + len(AUD_H264)) // 1000) and small.system_header is None


def test_timestamps_wrap_at_33_bits_and_an_existing_aud_is_kept():
    access_unit = AUD_H264 + b"\x00\x00\x00\x01\x41\x9a"
    parsed = parse_ps(ps.PsMuxer("h264").mux(access_unit, (1 << 33) + 5, (1 << 33) + 2, keyframe=False))
    assert parsed.scr == 2 and parsed.pes[0][:2] == (5, 2) and parsed.payload == access_unit


def test_hevc_frames_declare_stream_type_0x24_and_start_with_an_hevc_aud(hevc_packets):
    packet, frame, _, _ = mux_all(hevc_packets[:1], "hevc")[0]
    parsed = parse_ps(frame)
    assert parsed.psm is not None and parsed.psm[12] == 0x24 and ps.mpeg_crc32(parsed.psm) == 0
    assert parsed.payload.startswith(b"\x00\x00\x00\x01\x46\x01\x50")
    with pytest.raises(ValueError, match="cannot be carried"):
        ps.PsMuxer("mpeg4")
    with pytest.raises(ValueError, match="Annex B"):
        ps.PsMuxer("h264").mux(packet.data, 0, 0, True)


def test_ffprobe_reads_every_frame_of_the_muxed_stream(h264_packets, tmp_path):
    path = tmp_path / "vtest.ps"
    path.write_bytes(b"".join(frame for _, frame, _, _ in mux_all(h264_packets)))
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
                           capture_output=True, text=True, timeout=120, check=True)
    (stream,) = json.loads(probe.stdout)["streams"]
    assert stream["codec_name"] == "h264" and stream["width"] == 768
    assert int(stream["nb_read_frames"]) == len(h264_packets) == 795


# --------------------------------------------------------------------------- RTP


def test_rtp_packets_carry_one_frame_with_the_marker_on_the_last():
    packetizer = rtp.RtpPacketizer(0x0BEBC201, first_sequence=7)
    packets = packetizer.packetize(bytes(3000), 123_456)
    assert [len(packet) for packet in packets] == [1412, 1412, 212]
    for index, packet in enumerate(packets):
        assert packet[0] == 0x80 and packet[1] & 0x7F == 96
        assert bool(packet[1] & 0x80) == (index == 2)
        assert int.from_bytes(packet[2:4], "big") == 7 + index
        assert int.from_bytes(packet[4:8], "big") == 123_456
        assert packet[8:12] == bytes.fromhex("0bebc201")
    assert b"".join(packet[12:] for packet in packets) == bytes(3000)


def test_rtp_sequence_wraps_at_16_bits_and_timestamp_at_32():
    packetizer = rtp.RtpPacketizer(1, payload_type=98, first_sequence=0xFFFE, max_payload=10)
    packets = packetizer.packetize(bytes(25), (1 << 32) + 99)
    assert [int.from_bytes(packet[2:4], "big") for packet in packets] == [0xFFFE, 0xFFFF, 0]
    assert {int.from_bytes(packet[4:8], "big") for packet in packets} == {99}
    assert packets[-1][1] == 0x80 | 98 and packetizer.sequence == 1
    with pytest.raises(ValueError):
        rtp.RtpPacketizer(1 << 32)


def test_rfc4571_frames_prefix_the_length():
    assert rtp.rfc4571_frame(b"\x80abc") == b"\x00\x04\x80abc"
    with pytest.raises(ValueError, match="16-bit"):
        rtp.rfc4571_frame(bytes(70_000))


@pytest.mark.parametrize("bad", ["200000001", "02000000011", "0x0BEBC201", "abcdefghij", "4294967296", ""])
def test_ssrc_from_y_takes_exactly_ten_digits_within_32_bits(bad):
    assert rtp.ssrc_from_y("0200000001") == 0x0BEBC201 and rtp.ssrc_from_y(" 4294967295\r") == 0xFFFFFFFF
    assert rtp.ssrc_to_y(0x0BEBC201) == "0200000001"
    with pytest.raises(ValueError, match="SSRC"):
        rtp.ssrc_from_y(bad)


# --------------------------------------------------------------------------- SDP

WVP_UDP_OFFER = (
    "v=0\r\n"
    "o=34020000001320000001 0 0 IN IP4 10.0.0.2\r\n"
    "s=Play\r\n"
    "c=IN IP4 10.0.0.2\r\n"
    "t=0 0\r\n"
    "m=video 30000 RTP/AVP 96 126 125 99 34 98 97\r\n"
    "a=recvonly\r\n"
    "a=rtpmap:96 PS/90000\r\n"
    "a=fmtp:126 profile-level-id=42e01e\r\n"
    "a=rtpmap:126 H264/90000\r\n"
    "a=rtpmap:98 H264/90000\r\n"
    "y=0200000001\r\n"
    "f=v/2/5/25/1/4096a/1/8/1\r\n"
)


def tcp_offer(setup: str | None) -> str:
    offer = WVP_UDP_OFFER.replace("RTP/AVP 96 126", "TCP/RTP/AVP 96 126")
    extra = (f"a=setup:{setup}\r\n" if setup else "") + "a=connection:new\r\n"
    return offer.replace("y=", extra + "y=")


def answer_lines(offer: str, port: int = 40000) -> list[str]:
    text = build_answer(parse_offer(offer), username="34020000001320000009", address="10.0.0.9", port=port,
                        media_format="v/2/6/25//a///")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    return text.split("\r\n")[:-1]


def test_udp_offer_as_wvp_writes_it_and_its_answer():
    offer = parse_offer(WVP_UDP_OFFER.replace("m=video 30000", "m=video  30000").encode())
    assert (offer.session, offer.address, offer.port, offer.transport) == ("Play", "10.0.0.2", 30000, "udp")
    assert offer.payload_type == 96 and offer.ssrc == "0200000001" and offer.ssrc_value == 0x0BEBC201
    assert offer.origin_user == "34020000001320000001" and offer.media_format == "v/2/5/25/1/4096a/1/8/1"
    assert ("fmtp", "126 profile-level-id=42e01e") in offer.attributes
    assert answer_lines(WVP_UDP_OFFER) == [
        "v=0", "o=34020000001320000009 0 0 IN IP4 10.0.0.9", "s=Play", "c=IN IP4 10.0.0.9", "t=0 0",
        "m=video 40000 RTP/AVP 96", "a=sendonly", "a=rtpmap:96 PS/90000", "y=0200000001", "f=v/2/6/25//a///"]


def test_tcp_passive_platform_makes_the_gateway_connect_and_answer_active():
    offer = parse_offer(tcp_offer("passive"))
    assert offer.tcp and offer.setup == "passive" and offer.connection_new
    assert offer.transport == "tcp-active" and (offer.address, offer.port) == ("10.0.0.2", 30000)
    lines = answer_lines(tcp_offer("passive"))
    assert "m=video 40000 TCP/RTP/AVP 96" in lines
    assert lines[lines.index("a=rtpmap:96 PS/90000") + 1:] == [
        "a=setup:active", "a=connection:new", "y=0200000001", "f=v/2/6/25//a///"]


def test_tcp_active_platform_makes_the_gateway_listen_and_answer_passive():
    offer = parse_offer(tcp_offer("active"))
    assert offer.transport == "tcp-passive"
    lines = answer_lines(tcp_offer("active"), port=41000)
    assert "m=video 41000 TCP/RTP/AVP 96" in lines and "a=setup:passive" in lines


@pytest.mark.parametrize("setup", [None, "actpass"])
def test_tcp_offers_without_a_clear_role_have_the_gateway_connect(setup):
    assert parse_offer(tcp_offer(setup)).transport == "tcp-active"


def test_playback_and_download_offers_keep_their_time_range():
    playback = (WVP_UDP_OFFER.replace("s=Play", "s=Playback\r\nu=34020000001320000001:0")
                .replace("t=0 0", "t=1700000000 1700003600"))
    offer = parse_offer(playback)
    assert (offer.session, offer.start, offer.stop, offer.uri) == (
        "Playback", 1700000000, 1700003600, "34020000001320000001:0")
    assert "t=1700000000 1700003600" in answer_lines(playback) and "s=Playback" in answer_lines(playback)
    download = playback.replace("s=Playback", "s=Download").replace("a=recvonly", "a=recvonly\r\na=downloadspeed:4")
    assert parse_offer(download).session == "Download"
    assert ("downloadspeed", "4") in parse_offer(download).attributes


def test_media_level_address_and_an_offer_without_y_need_an_ssrc_for_the_answer():
    text = WVP_UDP_OFFER.replace("a=recvonly", "c=IN IP4 10.0.0.3\r\na=recvonly").replace("y=0200000001\r\n", "")
    offer = parse_offer(text)
    assert offer.address == "10.0.0.3" and offer.ssrc is None and offer.ssrc_value is None
    with pytest.raises(ValueError, match="no y= line"):
        build_answer(offer, username="x", address="10.0.0.9", port=1)
    assert "y=0000000007" in build_answer(offer, username="x", address="10.0.0.9", port=1, ssrc="0000000007")


@pytest.mark.parametrize(("change", "named"), [
    (("m=video 30000 RTP/AVP", "m=audio 30000 RTP/AVP"), "no m=video line"),
    (("m=video 30000", "m=video 7x"), "line 6 'm=video 7x"),
    (("m=video 30000", "m=video 0"), "port 0"),
    (("RTP/AVP 96 126", "RTP/SAVP 96 126"), "RTP/SAVP"),
    (("s=Play", "s=Talk"), "s='Talk'"),
    (("a=rtpmap:96 PS/90000", "a=rtpmap:96 MP2P/90000"), "PS/90000"),
    (("y=0200000001", "y=200000001"), "line 12 'y=200000001'"),
    (("a=recvonly", "a=sendonly"), "a=sendonly"),
    (("c=IN IP4 10.0.0.2\r\n", ""), "no c= line"),
    (("c=IN IP4 10.0.0.2", "c=IN IP6 ::1"), "IPv4"),
    (("c=IN IP4 10.0.0.2", "c=IN IP4 platform.local"), "not an IPv4 address"),
    (("t=0 0", "t=now"), "line 5 't=now'"),
    (("s=Play", "s=Playback"), "needs a time range"),
    (("v=0", "v=0\r\nthis is not sdp"), "line 2 'this is not sdp'"),
])
def test_bad_offers_raise_sdp_error_naming_the_problem(change, named):
    with pytest.raises(SdpError) as error:
        parse_offer(WVP_UDP_OFFER.replace(*change))
    assert named in str(error.value)


def test_a_tcp_offer_with_an_unknown_setup_role_is_refused():
    with pytest.raises(SdpError, match="a=setup:holdconn"):
        parse_offer(tcp_offer("holdconn"))
    with pytest.raises(SdpError, match="empty"):
        parse_offer("\r\n")


def test_f_line_codes():
    assert video_format("h264", 1920, 1080, 25.0) == "v/2/6/25//a///"
    assert video_format("hevc", 768, 576, None) == "v/5////a///"


# --------------------------------------------------------------------------- timestamps, remuxer, queue


def restamped(packets: list[EncodedPacket], stream=None, shift: int = 0) -> list[EncodedPacket]:
    """The packets as a new connection would give them (a new StreamInfo, timestamps shifted)."""
    stream = stream or dataclasses.replace(packets[0].stream)
    return [dataclasses.replace(packet, stream=stream, pts=packet.pts + shift, dts=packet.dts + shift)
            for packet in packets]


def test_timestamps_continue_across_a_reconnect_and_backward_jumps(h264_packets):
    clock = TimestampMapper()
    first = [clock.map(packet) for packet in h264_packets[:30]]
    assert first[0] == (0, 0) and first[1] == (9000, 9000) and first[-1] == (29 * 9000, 29 * 9000)
    reconnected = [clock.map(packet) for packet in restamped(h264_packets[:5])]  # time restarts at 0
    assert [dts for _, dts in reconnected] == [30 * 9000 + index * 9000 for index in range(5)]
    same_stream_back = dataclasses.replace(h264_packets[0], stream=restamped(h264_packets[:1])[0].stream)
    clock.map(dataclasses.replace(same_stream_back, pts=10**6, dts=10**6))
    assert clock.map(dataclasses.replace(same_stream_back, pts=5, dts=5))[1] == 36 * 9000


def test_timestamps_close_long_gaps_and_fill_missing_ones_and_keep_pts_after_dts(h264_packets):
    clock = TimestampMapper()
    clock.map(h264_packets[0])
    clock.map(h264_packets[1])
    ticks_per_minute = 60 * 10240
    jumped = dataclasses.replace(h264_packets[2], pts=ticks_per_minute, dts=ticks_per_minute)
    assert clock.map(jumped) == (18000, 18000)
    assert clock.map(dataclasses.replace(h264_packets[3], pts=None, dts=None)) == (27000, 27000)
    b_frame = dataclasses.replace(h264_packets[4], pts=ticks_per_minute + 1024 * 3, dts=ticks_per_minute + 1024 * 2)
    assert clock.map(b_frame) == (18000 + 27000, 18000 + 18000)


def test_remuxer_starts_at_a_keyframe_and_again_after_a_new_stream(h264_packets):
    remuxer = PacketRemuxer(0x0BEBC201, first_sequence=0)
    sent: list[bytes] = []

    def remux(packet: EncodedPacket) -> bool:
        packets = remuxer.remux(packet)
        sent.extend(packets or [])
        return packets is not None

    assert not remux(h264_packets[1])
    assert remux(h264_packets[0]) and parse_ps(b"".join(packet[12:] for packet in sent)).psm is not None
    assert remux(h264_packets[1])
    reconnect = restamped(h264_packets[:2])
    assert not remux(reconnect[1]) and remux(reconnect[0])
    remuxer.resync()
    assert not remux(reconnect[1]) and remux(reconnect[0])
    assert [int.from_bytes(packet[2:4], "big") for packet in sent] == list(range(len(sent)))
    assert {packet[8:12] for packet in sent} == {bytes.fromhex("0bebc201")}
    assert sum(packet[1] >> 7 for packet in sent) == 4  # one marker per frame sent


def test_remuxer_follows_a_codec_change_and_refuses_an_unremuxable_one(h264_packets, hevc_packets):
    remuxer = PacketRemuxer(1)
    remuxer.remux(h264_packets[0])
    packets = remuxer.remux(hevc_packets[0])
    assert packets is not None
    psm = parse_ps(b"".join(packet[12:] for packet in packets)).psm
    assert psm is not None and psm[12] == 0x24 and psm[6] & 0x1F == 1  # a new PSM version
    msmpeg = dataclasses.replace(h264_packets[0].stream, codec="msmpeg4v3")
    with pytest.raises(UnsupportedStream, match="msmpeg4v3"):
        remuxer.remux(dataclasses.replace(h264_packets[0], stream=msmpeg))


def test_frame_queue_starts_at_a_keyframe_and_drops_until_the_next_when_full(h264_packets):
    key, delta = h264_packets[0], h264_packets[1]
    queue = FrameQueue(max_frames=3)
    assert not queue.put(delta) and queue.skipped == 1  # before the first keyframe
    assert all(queue.put(packet) for packet in (key, delta, delta))
    assert not queue.put(delta) and queue.dropped == 1  # full: dropped, and now waiting for a keyframe
    assert queue.get(0) is key
    assert not queue.put(delta) and queue.dropped == 2  # room again, but not a keyframe
    assert queue.put(key)  # the stream resumes here: [delta, delta, key]
    assert not queue.put(delta) and queue.dropped == 3
    assert queue.put(key) and queue.dropped == 6  # full: the keyframe replaces the 3 stale packets
    assert queue.get(0) is key and queue.get(0) is None
    assert queue.skipped == 1


def test_frame_queue_trims_to_the_latest_keyframe_and_closes(h264_packets):
    key, delta = h264_packets[0], h264_packets[1]
    queue = FrameQueue()
    for packet in (key, delta, key, delta):
        queue.put(packet)
    queue.trim_to_latest_keyframe()
    assert queue.skipped == 2 and queue.get(0) is key and queue.get(0) is delta
    queue.close()
    assert not queue.put(key) and queue.get(5) is None
