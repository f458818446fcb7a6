"""GB/T 28181 live video end to end: `LiveStream` sends vtest_h264.mp4 in real time, and GStreamer,
as a platform's media server, must decode it (tests/gst_ps_receiver.py: mpegpsdemux ->
h264parse -> avdec_h264), over UDP, TCP with the gateway connecting, and TCP with the gateway
listening; a receiver that joins late decodes from the next keyframe; H.265 too. Then the ways
a stream ends by itself (the platform never connects, refuses, hangs up, stops reading), each
reported through `on_end`, and `stop()` cutting short a send blocked on a platform that does
not read. Everything on 127.0.0.1; waits are on the receiver's output lines and the stream's
counters, never on sleeps (the pacing of the feed emulates the camera).
"""

from __future__ import annotations

import dataclasses
import math
import socket
import threading
import time

import pytest

from gateway.outputs.gb28181.media import LiveStream
from gateway.outputs.gb28181.sdp import parse_offer
from gateway.video.packets import EncodedPacket
from gb28181_media_support import (
    VTEST_AVI,
    VTEST_H264,
    GstReceiver,
    drain,
    feed_in_real_time,
    hevc_clip,
    read_packets,
)
from waiting import wait_until

SSRC = 0x0BEBC201
SECONDS = 10.0
DECODED_SHARE = 0.95


@pytest.fixture(scope="module")
def packets() -> list[EncodedPacket]:
    return read_packets(VTEST_H264)


def live_stream(packets: list[EncodedPacket], transport, remote=None, **options) -> LiveStream:
    return LiveStream("cam1", packets[0].stream, transport, ssrc=SSRC, remote=remote, bind_host="127.0.0.1",
                      **options)


def wait_sent(stream: LiveStream, fed: int) -> int:
    """Wait until the stream has handled every packet fed; the frames it sent."""
    wait_until(lambda: stream.health().frames_sent + stream.health().frames_dropped
               + stream.health().frames_skipped >= fed, what=f"the stream to send {fed} frames")
    health = stream.health()
    assert health.frames_sent > 0 and health.end_reason is None, health
    return health.frames_sent


def assert_decoded(receiver: GstReceiver, sent: int) -> None:
    needed = math.ceil(DECODED_SHARE * sent)
    receiver.wait_frames(needed)
    final = receiver.finish()
    assert receiver.synced and final >= needed, f"GStreamer decoded {final} of {sent} frames"


def test_udp_stream_decodes_in_gstreamer(packets):
    receiver = GstReceiver("udp")
    stream = live_stream(packets, "udp", ("127.0.0.1", receiver.port))
    try:
        stream.start()
        sent = wait_sent(stream, feed_in_real_time(stream, packets, SECONDS))
        assert_decoded(receiver, sent)
        health = stream.health()
        assert health.state == "streaming" and health.rtp_packets > sent and health.bytes_sent > 500_000
    finally:
        stream.stop()
        receiver.kill()


def test_tcp_active_stream_decodes_across_a_camera_reconnect(packets):
    """The gateway connects to GStreamer's tcpserversrc; halfway, the camera 'reconnects' (a new
    StreamInfo, timestamps from 0 again) and the stream goes on without a jump back in time."""
    receiver = GstReceiver("tcp-server")
    stream = live_stream(packets, "tcp-active", ("127.0.0.1", receiver.port))
    try:
        stream.start()
        began = time.monotonic()
        fed = feed_in_real_time(stream, packets, SECONDS / 2, began)
        reconnected = [dataclasses.replace(packet, stream=dataclasses.replace(packet.stream)) for packet in packets]
        fed += feed_in_real_time(stream, reconnected, SECONDS / 2, began + SECONDS / 2)
        sent = wait_sent(stream, fed)
        stream.stop()  # closes the connection: GStreamer sees EOS and prints its final count
        assert_decoded(receiver, sent)
    finally:
        stream.stop()
        receiver.kill()


def test_tcp_passive_stream_decodes_when_gstreamer_connects(packets):
    stream = live_stream(packets, "tcp-passive")
    stream.start()
    receiver = GstReceiver("tcp-client", port=stream.local_port)
    try:
        wait_until(lambda: stream.health().state == "streaming", what="the receiver's connection")
        sent = wait_sent(stream, feed_in_real_time(stream, packets, SECONDS))
        stream.stop()
        assert_decoded(receiver, sent)
    finally:
        stream.stop()
        receiver.kill()


def test_a_late_joiner_decodes_from_the_next_keyframe(packets):
    """GStreamer starts on the stream's UDP port 2.5 s in, mid-GOP, with what came before thrown
    away: the PSM before every keyframe is what lets it pick the stream up."""
    port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port.bind(("127.0.0.1", 0))
    port.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    stream = live_stream(packets, "udp", port.getsockname())
    fed: list[int] = []
    feeder = threading.Thread(target=lambda: fed.append(feed_in_real_time(stream, packets, SECONDS)))
    receiver = None
    try:
        stream.start()
        feeder.start()
        wait_until(lambda: stream.health().frames_sent >= 25, what="2.5 s of video sent")
        drain(port)
        joined = stream.health().frames_sent + 1  # the frame being sent may have been cut by the drain
        receiver = GstReceiver("udp", socket_fd=port.fileno())
        port.close()
        feeder.join()
        sent = wait_sent(stream, fed[0])
        next_keyframe = next(index for index in range(joined + 1, sent) if packets[index].keyframe)
        assert_decoded(receiver, sent - next_keyframe)
    finally:
        stream.stop()
        port.close()
        if receiver is not None:
            receiver.kill()


def test_hevc_stream_decodes_in_gstreamer():
    clip = read_packets(hevc_clip())
    receiver = GstReceiver("udp", codec="hevc")
    stream = live_stream(clip, "udp", ("127.0.0.1", receiver.port))
    try:
        stream.start()
        sent = wait_sent(stream, feed_in_real_time(stream, clip, SECONDS))
        assert sent == len(clip) == 60
        assert_decoded(receiver, sent)
    finally:
        stream.stop()
        receiver.kill()


# --------------------------------------------------------------------------- how streams end


class Ends:
    """Collects `on_end` reasons."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def test_a_codec_that_cannot_be_remuxed_is_refused_at_construction():
    (avi_packet,) = read_packets(VTEST_AVI, limit=1)
    with pytest.raises(ValueError, match="msmpeg4 video cannot be sent as GB/T 28181 PS"):
        live_stream([avi_packet], "udp", ("127.0.0.1", 9))


def test_streams_for_offers_take_the_gateway_side_and_stop_frees_the_port(packets):
    offer = "v=0\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 30000 TCP/RTP/AVP 96\r\n" \
        "a=recvonly\r\na=rtpmap:96 PS/90000\r\na=setup:{}\r\ny=0200000001\r\n"
    connecting = LiveStream.for_offer("cam1", packets[0].stream, parse_offer(offer.format("passive")),
                                      bind_host="127.0.0.1")
    assert (connecting.transport, connecting.remote) == ("tcp-active", ("127.0.0.1", 30000))
    listening = LiveStream.for_offer("cam1", packets[0].stream, parse_offer(offer.format("active")),
                                     bind_host="127.0.0.1")
    assert listening.transport == "tcp-passive" and listening.remote is None
    for stream in (connecting, listening):
        stream.stop()
        assert stream.health().state == "ended" and not stream.feed(packets[0])
    with socket.create_server(("127.0.0.1", listening.local_port)):
        pass  # the listening port is free again
    with pytest.raises(ValueError, match="no y= line"):
        LiveStream.for_offer("cam1", packets[0].stream, parse_offer(offer.format("active").replace("y=", "x=")))


def test_a_platform_that_never_connects_ends_the_passive_stream(packets):
    ends = Ends()
    stream = live_stream(packets, "tcp-passive", on_end=ends, accept_timeout_s=0.5)
    stream.start()
    wait_until(lambda: ends.reasons, what="on_end")
    assert ends.reasons == [f"the platform did not connect to port {stream.local_port} within 0.5 s"]
    wait_until(lambda: stream.health().state == "ended", what="the stream to end")
    assert stream.health().end_reason == ends.reasons[0]


def test_a_refused_connection_ends_the_active_stream(packets):
    closed = socket.socket()  # bound but not listening: a connection to it is refused
    closed.bind(("127.0.0.1", 0))
    ends = Ends()
    stream = live_stream(packets, "tcp-active", closed.getsockname(), on_end=ends)
    try:
        stream.start()
        wait_until(lambda: ends.reasons, what="on_end")
        assert ends.reasons[0].startswith(f"could not connect to 127.0.0.1:{closed.getsockname()[1]}")
        assert "refused" in ends.reasons[0]
    finally:
        stream.stop()
        closed.close()


def feed_until(stream: LiveStream, packets: list[EncodedPacket], done) -> None:
    """Feed the clip again and again (new timestamps each round) until `done()`."""
    def keep_feeding() -> bool:
        for packet in packets[:40]:
            stream.feed(packet)
            time.sleep(0.001)  # a camera's pace, roughly: the sender gets its turn
        return bool(done())

    wait_until(keep_feeding, what="the stream's reaction")


def test_a_platform_hanging_up_ends_the_stream_with_the_reason(packets):
    with socket.create_server(("127.0.0.1", 0)) as server:
        ends = Ends()
        stream = live_stream(packets, "tcp-active", server.getsockname(), on_end=ends)
        stream.start()
        connection, _ = server.accept()
        connection.close()
        feed_until(stream, packets, lambda: ends.reasons)
        assert ends.reasons[0].startswith("the platform closed the TCP connection")
        assert stream.health().state == "ended"


def test_a_media_port_that_keeps_refusing_ends_the_udp_stream(packets):
    """ICMP port unreachable (the platform closed its RTP port without a BYE): tolerated for
    send_timeout_s, then the stream ends with the reason."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    ends = Ends()
    stream = live_stream(packets, "udp", ("127.0.0.1", port), on_end=ends, send_timeout_s=1.0)
    stream.start()
    feed_until(stream, packets, lambda: ends.reasons)
    assert ends.reasons == [f"the platform's media port 127.0.0.1:{port} has refused the stream for 1 s "
                            "(ICMP port unreachable)"]


def test_a_platform_that_stops_reading_costs_drops_then_ends_the_stream(packets):
    with socket.create_server(("127.0.0.1", 0)) as server:
        ends = Ends()
        stream = live_stream(packets, "tcp-active", server.getsockname(), on_end=ends, send_timeout_s=1.0,
                             queue_frames=20)
        stream.start()
        connection, _ = server.accept()  # and never reads
        try:
            feed_until(stream, packets, lambda: ends.reasons)
            assert ends.reasons == ["the platform has not read the stream for 1 s"]
            assert stream.health().frames_dropped > 0
        finally:
            connection.close()


def test_stop_cuts_short_a_send_blocked_on_a_platform_that_does_not_read(packets):
    with socket.create_server(("127.0.0.1", 0)) as server:
        ends = Ends()
        stream = live_stream(packets, "tcp-active", server.getsockname(), on_end=ends, send_timeout_s=600,
                             queue_frames=20)
        stream.start()
        connection, _ = server.accept()
        try:
            feed_until(stream, packets, lambda: stream.health().frames_dropped > 0)  # the sender is stuck
            stream.stop()
            wait_until(lambda: stream.health().state == "ended", what="the stream to end")
            assert ends.reasons == [] and stream.health().end_reason is None
            assert not stream.feed(packets[0])
        finally:
            connection.close()
