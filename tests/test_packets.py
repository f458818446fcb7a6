"""The packet ring: GOP-aligned pre-roll, byte bound, subscriptions, slow consumers, reconnects.

Packets are the real ones of ../shared/data/vtest_h264.mp4 (10 fps, a keyframe every 2 s),
stamped with ring times as a camera sending in real time would deliver them; the concurrency
test runs a real `CameraReader` thread putting packets while consumers read.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from clip_support import VTEST_H264, read_packets, restamped
from gateway.video.packets import EncodedPacket, PacketRing, StreamGap
from gateway.video.reader import CameraReader
from waiting import PATIENCE_S, wait_until

GOP_S = 2.0
OFFSET = 1000.0


@pytest.fixture(scope="module")
def packets() -> list[EncodedPacket]:
    return read_packets(VTEST_H264, ring_offset=OFFSET)


def fill(ring: PacketRing, packets: list[EncodedPacket], until: float) -> list[EncodedPacket]:
    """Put the packets with ring time <= `until` (seconds of video); returns them."""
    put = [packet for packet in packets if packet.received_at <= OFFSET + until]
    for packet in put:
        ring.put(packet)
    return put


def drain(subscription) -> list:
    items = []
    while (item := subscription.get_nowait()) is not None:
        items.append(item)
    return items


# --------------------------------------------------------------------------- holding


def test_ring_keeps_whole_gops_from_the_last_keyframe_before_keep_s(packets) -> None:
    ring = PacketRing("gate", keep_s=5.0)
    fill(ring, packets, until=30.0)
    held = ring.snapshot(0.0)
    newest = held[-1].received_at
    assert newest == pytest.approx(OFFSET + 30.0)
    assert held[0].keyframe
    assert newest - 5.0 - GOP_S < held[0].received_at <= newest - 5.0  # the last keyframe at or before
    assert [p.dts for p in held] == sorted(p.dts for p in held)  # contiguous, in order
    assert len(held) == round((held[-1].received_at - held[0].received_at) * 10) + 1
    stats = ring.stats()
    assert stats.packets == len(held) and stats.bytes == sum(len(p.data) for p in held)
    assert stats.seconds == pytest.approx(newest - held[0].received_at)
    assert stats.dropped_gops == 0 and stats.streams == 1


def test_keep_s_changes_at_run_time(packets) -> None:
    ring = PacketRing("gate", keep_s=10.0)
    fill(ring, packets, until=20.0)
    assert ring.stats().seconds >= 10.0
    ring.keep_s = 3.0
    ring.put(next(p for p in packets if p.received_at > OFFSET + 20.0))
    assert 3.0 <= ring.stats().seconds < 3.0 + GOP_S + 0.2
    with pytest.raises(ValueError, match="keep_s"):
        ring.keep_s = -1


def test_snapshot_starts_at_the_keyframe_before_the_asked_time(packets) -> None:
    ring = PacketRing("gate", keep_s=20.0)
    fill(ring, packets, until=40.0)
    since = OFFSET + 31.3
    clip = ring.snapshot(since)
    assert clip[0].keyframe and clip[0].received_at == pytest.approx(OFFSET + 30.0)
    assert clip[-1].received_at == pytest.approx(OFFSET + 40.0)
    oldest = ring.snapshot(0.0)
    assert ring.snapshot(OFFSET - 100) == oldest  # older than held: from the oldest keyframe
    assert ring.snapshot(OFFSET + 99.0)[0].received_at == pytest.approx(OFFSET + 40.0)  # the newest GOP
    assert PacketRing("empty").snapshot(0.0) == []


def test_byte_bound_drops_whole_oldest_gops(packets) -> None:
    gop_bytes = sum(len(p.data) for p in packets[:20])
    ring = PacketRing("gate", keep_s=60.0, max_bytes=int(gop_bytes * 3.5))
    fill(ring, packets, until=40.0)
    stats = ring.stats()
    assert stats.bytes <= ring.max_bytes and stats.dropped_gops >= 10 and stats.dropped_bytes > 0
    held = ring.snapshot(0.0)
    assert held[0].keyframe and held[-1].received_at == pytest.approx(OFFSET + 40.0)


def test_a_gop_bigger_than_the_bound_is_not_held_until_the_next_keyframe(packets) -> None:
    ring = PacketRing("gate", keep_s=60.0, max_bytes=len(packets[20].data) + 10)  # one keyframe fits
    overflow = None
    for index, packet in enumerate(packets[:20]):
        ring.put(packet)
        if overflow is None and ring.stats().dropped_gops:
            overflow = index  # the first GOP grew past the bound: dropped whole
    assert overflow is not None and overflow < 19
    assert ring.stats().packets == 0 and ring.stats().dropped_gops == 1  # nothing held without a keyframe
    ring.put(packets[20])
    assert ring.snapshot(0.0) == [packets[20]]


def test_packets_before_the_first_keyframe_are_not_held(packets) -> None:
    ring = PacketRing("gate")
    for packet in packets[5:20]:
        ring.put(packet)
    assert ring.snapshot(0.0) == [] and ring.stats().packets == 0
    ring.put(packets[20])
    assert ring.snapshot(0.0) == [packets[20]]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        PacketRing("gate", max_bytes=0)
    with pytest.raises(ValueError, match="subscribe from"):
        PacketRing("gate").subscribe("yesterday")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        PacketRing("gate").subscribe(limit=0)


# --------------------------------------------------------------------------- subscriptions


def test_subscriptions_start_where_asked_and_share_the_ring_packets(packets) -> None:
    ring = PacketRing("gate", keep_s=10.0)
    fill(ring, packets, until=15.0)
    at_next = ring.subscribe("next_keyframe")
    at_last = ring.subscribe("last_keyframe")
    at_time = ring.subscribe(OFFSET + 9.5)
    assert ring.stats().subscribers == 3
    later = [p for p in packets if OFFSET + 15.0 < p.received_at <= OFFSET + 20.0]
    for packet in later:
        ring.put(packet)
    next_items = drain(at_next)
    assert next_items[0].keyframe and next_items[0].received_at == pytest.approx(OFFSET + 16.0)
    assert next_items == [p for p in later if p.received_at >= OFFSET + 16.0]
    last_items = drain(at_last)
    assert last_items[0].received_at == pytest.approx(OFFSET + 14.0) and last_items[-1] is later[-1]
    time_items = drain(at_time)
    assert time_items[0].keyframe and time_items[0].received_at == pytest.approx(OFFSET + 8.0)
    expected = [p for p in packets if OFFSET + 8.0 <= p.received_at <= OFFSET + 20.0]
    assert len(time_items) == len(expected)
    assert all(got is put for got, put in zip(time_items, expected, strict=True))  # the objects put: no copies
    at_next.close()
    ring.put(next(p for p in packets if p.received_at > OFFSET + 20.0))
    assert at_next.get_nowait() is None and at_next.ended and ring.stats().subscribers == 2


def test_get_waits_for_a_packet_from_another_thread(packets) -> None:
    ring = PacketRing("gate")
    subscription = ring.subscribe("next_keyframe")
    putter = threading.Thread(target=lambda: [ring.put(p) for p in packets[:25]])
    putter.start()
    first = subscription.get(timeout=PATIENCE_S)
    putter.join(PATIENCE_S)
    assert first is packets[0]
    assert subscription.get(timeout=0) is packets[1]


def test_a_slow_subscriber_loses_packets_until_a_keyframe_and_is_told(packets) -> None:
    ring = PacketRing("gate", keep_s=5.0)
    slow = ring.subscribe("next_keyframe", limit=25)
    fast = ring.subscribe("next_keyframe", limit=1000)
    for packet in packets[:35]:  # the slow one reads nothing meanwhile
        ring.put(packet)  # returns at once whatever the subscribers do: the reader is never held up
    assert drain(slow) == packets[:25]  # 25..34 did not fit
    for packet in packets[35:60]:
        ring.put(packet)
    items = drain(slow)
    assert items[0] == StreamGap("lost", 15)  # 25..39: lost until the keyframe at 40
    assert items[1] is packets[40] and items[1].keyframe  # resumes at a keyframe: decodable
    assert items[2:] == packets[41:60]
    assert slow.lost_packets == 15 and ring.stats().lost_packets == 15
    assert drain(fast) == packets[:60]  # the other subscriber is untouched


def test_a_new_stream_is_a_boundary_for_snapshots_and_subscribers(packets) -> None:
    ring = PacketRing("gate", keep_s=5.0)
    fill(ring, packets, until=10.0)
    subscription = ring.subscribe("last_keyframe")
    old_stream = packets[0].stream
    new_stream = replace(old_stream)  # equal fields, another connection
    assert new_stream == old_stream and new_stream is not old_stream
    reconnected = restamped(packets[:40], new_stream, shift=12.0)
    for packet in reconnected[3:]:  # the new connection starts mid-GOP
        ring.put(packet)
    held = ring.snapshot(0.0)
    assert held and all(p.stream is new_stream for p in held) and held[0] is reconnected[20]
    items = drain(subscription)
    boundary = next(i for i, item in enumerate(items) if isinstance(item, StreamGap))
    assert all(p.stream is old_stream for p in items[:boundary])
    assert items[boundary] == StreamGap("new_stream", 0)
    assert items[boundary + 1] is reconnected[20]  # then the new stream from its first keyframe
    assert all(p.stream is new_stream for p in items[boundary + 1:])
    assert ring.stats().streams == 2 and ring.stream is new_stream


def test_closing_the_ring_ends_subscriptions_after_their_queue(packets) -> None:
    ring = PacketRing("gate")
    subscription = ring.subscribe("next_keyframe")
    for packet in packets[:5]:
        ring.put(packet)
    ring.close()
    ring.put(packets[5])  # a reader finishing its last network call: ignored
    assert not subscription.ended
    assert drain(subscription) == packets[:5]
    assert subscription.ended and subscription.get(timeout=PATIENCE_S) is None
    late = ring.subscribe("last_keyframe")
    assert late.ended and ring.stats().packets == 0


# --------------------------------------------------------------------------- with a real reader thread


def test_a_reader_thread_feeds_the_ring_while_consumers_read() -> None:
    """The reader puts all 795 packets of the file as fast as it demuxes them, with a byte bound
    small enough to drop GOPs; meanwhile one subscriber follows every packet and another thread
    takes snapshots. Every snapshot starts at a keyframe and runs without a hole, and the
    subscriber gets every packet of the file in order."""
    ring = PacketRing("file", keep_s=60.0, max_bytes=1_500_000)
    follower = ring.subscribe("next_keyframe", limit=1000)
    received: list[EncodedPacket] = []
    snapshots: list[list[EncodedPacket]] = []
    done = threading.Event()

    def follow() -> None:
        while not follower.ended:
            item = follower.get(timeout=0.2)
            if isinstance(item, StreamGap):
                return  # the file again (a reconnect): only the first pass is counted
            if item is not None:
                received.append(item)

    def look() -> None:
        while not done.wait(0.002):  # a snapshot every couple of milliseconds, as often as it gets
            snapshot = ring.snapshot(0.0)
            if snapshot:
                snapshots.append(snapshot)

    threads = [threading.Thread(target=follow), threading.Thread(target=look)]
    for thread in threads:
        thread.start()
    reader = CameraReader("file", str(VTEST_H264), decode_mode="keyframes", analysis_fps=0.5,
                          packet_sink=ring.put, backoff_initial_s=60)
    reader.start()
    try:
        wait_until(lambda: reader.health().state == "backoff", what="the reader to reach the end of the file")
    finally:
        reader.stop(timeout=PATIENCE_S)
        ring.close()
        done.set()
        for thread in threads:
            thread.join(PATIENCE_S)
    assert len(received) == 795 and received[0].keyframe
    assert [p.dts for p in received] == sorted(p.dts for p in received)
    assert all(p.stream is received[0].stream for p in received)
    assert snapshots and ring.stats().dropped_gops > 0
    for snapshot in snapshots:
        assert snapshot[0].keyframe
        dts = [p.dts for p in snapshot]
        assert dts == list(range(dts[0], dts[0] + 1024 * len(dts), 1024))  # 10 fps in 1/10240: no hole
        assert sum(len(p.data) for p in snapshot) <= 1_500_000
    assert reader.packet_sink_errors == 0
