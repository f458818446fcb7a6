"""The clip store: names only from event ids, the size quota, shedding for a full disk, listing
by camera and time, and putting the folder in order at start-up. Clip files are real ones,
remuxed from ../shared/data/vtest_h264.mp4."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from clip_support import VTEST_H264, probe, read_packets
from gateway.evidence.mp4 import Mp4ClipWriter, write_clip
from gateway.evidence.store import ClipInfo, ClipStore, has_fragment, is_event_id

WALL = 1_750_000_000.0


@pytest.fixture(scope="module")
def gop_packets():
    """Two GOPs (4 s) of the sample: one clip's worth of real packets."""
    return read_packets(VTEST_H264, limit=40)


def record(store: ClipStore, packets, camera: str = "gate", at: float = WALL, status: str = "ready") -> ClipInfo:
    """A finished clip of `packets` in `store`, its packets from `at` on (wall time)."""
    info = ClipInfo(str(uuid.uuid4()), camera, "recording", event_ts=at)
    path = store.begin(info)
    write_clip(path, packets)
    finished = replace(info, status=status, from_ts=at, to_ts=at + 3.9, size=path.stat().st_size,
                       packets=len(packets), codec="h264")
    store.save(finished)
    return finished


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("bad", [
    "../history", "../../etc/passwd", "", "A3F9C2E0-1B2C-4D5E-8F90-1234567890AB",
    "a3f9c2e0-1b2c-4d5e-8f90-1234567890ab/../x", "a3f9c2e0-1b2c-4d5e-8f90-1234567890ab\x00",
    "a3f9c2e01b2c4d5e8f901234567890ab", None, 42])
def test_only_lowercase_uuids_name_a_file(tmp_path: Path, bad) -> None:
    store = ClipStore(tmp_path)
    assert not is_event_id(bad)
    with pytest.raises(ValueError, match="not an event id"):
        store.path(bad)
    assert store.get(bad) is None
    event = str(uuid.uuid4())
    assert store.path(event) == tmp_path / "clips" / f"{event}.mp4"
    assert store.path(event).resolve().parent == (tmp_path / "clips").resolve()


def test_an_event_gets_one_clip(tmp_path: Path) -> None:
    store = ClipStore(tmp_path)
    info = ClipInfo(str(uuid.uuid4()), "gate", "recording", event_ts=WALL)
    store.begin(info)
    with pytest.raises(ValueError, match="already has a clip"):
        store.begin(info)


# --------------------------------------------------------------------------- bounds


def test_the_quota_deletes_the_oldest_finished_clips_never_a_recording_one(tmp_path: Path, gop_packets) -> None:
    probe_store = ClipStore(tmp_path / "probe")
    size = record(probe_store, gop_packets).size
    store = ClipStore(tmp_path, max_bytes=int(size * 2.5))
    recording = ClipInfo(str(uuid.uuid4()), "gate", "recording", event_ts=WALL - 1000)  # the oldest of all
    store.begin(recording)
    oldest = record(store, gop_packets, at=WALL)
    middle = record(store, gop_packets, at=WALL + 60)
    store.progress(recording.event_id, size // 4, WALL - 996, 10)  # it grows: still within the quota
    assert store.get(oldest.event_id) is not None
    newest = record(store, gop_packets, at=WALL + 120)  # over the quota now: the oldest finished goes
    assert store.get(oldest.event_id) is None and not store.path(oldest.event_id).exists()
    assert not store.path(oldest.event_id).with_suffix(".json").exists()
    assert store.get(middle.event_id) and store.get(newest.event_id) and store.get(recording.event_id)
    stats = store.stats()
    assert stats.clips == 3 and stats.recording == 1 and stats.evicted == 1
    assert stats.bytes == 2 * size + size // 4 <= stats.max_bytes
    store.progress(recording.event_id, size * 3, WALL - 900, 100)  # a long recording outgrows it all
    assert [clip.event_id for clip in store.list()] == [recording.event_id]


def test_shed_frees_room_oldest_first_for_a_full_disk(tmp_path: Path, gop_packets) -> None:
    store = ClipStore(tmp_path)
    clips = [record(store, gop_packets, at=WALL + 60 * index) for index in range(4)]
    freed = store.shed(clips[0].size + 1)  # a little more than one clip: two go
    assert freed == clips[0].size + clips[1].size
    assert [clip.event_id for clip in store.list()] == [clips[2].event_id, clips[3].event_id]
    assert store.stats().shed_bytes == freed
    assert store.shed(0) == 0


def test_max_clips_bounds_the_records(tmp_path: Path, gop_packets) -> None:
    store = ClipStore(tmp_path, max_clips=2)
    first = record(store, gop_packets, at=WALL)
    record(store, gop_packets, at=WALL + 1)
    store.begin(ClipInfo(str(uuid.uuid4()), "gate", "recording", event_ts=WALL + 2))
    assert store.get(first.event_id) is None and store.stats().clips == 2


# --------------------------------------------------------------------------- listing


def test_listing_by_camera_and_time_range(tmp_path: Path, gop_packets) -> None:
    store = ClipStore(tmp_path)
    gate_early = record(store, gop_packets, camera="gate", at=WALL)
    gate_late = record(store, gop_packets, camera="gate", at=WALL + 600)
    north = record(store, gop_packets, camera="north", at=WALL + 300)
    recording = ClipInfo(str(uuid.uuid4()), "gate", "recording", event_ts=WALL + 900)  # no packet yet
    store.begin(recording)

    def ids(**query) -> list[str]:
        return [clip.event_id for clip in store.list(**query)]

    assert ids() == [gate_early.event_id, north.event_id, gate_late.event_id, recording.event_id]
    assert ids(camera_id="gate") == [gate_early.event_id, gate_late.event_id, recording.event_id]
    assert ids(camera_id="gate", since=WALL + 2, until=WALL + 700) == [gate_early.event_id, gate_late.event_id]
    assert ids(since=WALL + 4, until=WALL + 599) == [north.event_id]  # overlap, not containment
    assert ids(camera_id="east") == [] and ids(limit=1) == [gate_early.event_id]


# --------------------------------------------------------------------------- start-up


def test_start_up_puts_the_folder_in_order(tmp_path: Path, gop_packets) -> None:
    store = ClipStore(tmp_path)
    kept = record(store, gop_packets)
    header_only = ClipInfo(str(uuid.uuid4()), "gate", "recording", event_ts=WALL)
    store.begin(header_only)
    store.save(header_only)
    with Mp4ClipWriter(store.path(header_only.event_id), gop_packets[0].stream) as writer:
        for packet in gop_packets[:5]:  # within the first GOP: no fragment written yet
            writer.write(packet)
        crashed_copy = store.path(header_only.event_id).read_bytes()
    store.path(header_only.event_id).write_bytes(crashed_copy)  # as a crash leaves it
    assert not has_fragment(store.path(header_only.event_id))
    folder = store.folder
    (folder / f"{kept.event_id}.json.tmp").write_text("{half a rec")
    orphan = folder / f"{uuid.uuid4()}.mp4"
    orphan.write_bytes(store.path(kept.event_id).read_bytes())
    (folder / f"{uuid.uuid4()}.json").write_text("not json")
    mislabelled = folder / f"{uuid.uuid4()}.json"
    mislabelled.write_text(json.dumps(kept.to_json()))  # says it is another event
    missing = record(store, gop_packets)
    store.path(missing.event_id).unlink()

    reopened = ClipStore(tmp_path)
    assert reopened.get(kept.event_id) == kept and probe(reopened.path(kept.event_id)).frames == 40
    failed = reopened.get(header_only.event_id)
    assert failed.status == "failed" and "before the clip held one whole GOP" in failed.reason
    assert not reopened.path(header_only.event_id).exists()
    assert reopened.get(missing.event_id).status == "failed"
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [f"{kept.event_id}.mp4", f"{kept.event_id}.json", f"{header_only.event_id}.json", f"{missing.event_id}.json"])
    assert json.loads((folder / f"{header_only.event_id}.json").read_text())["status"] == "failed"


def test_threads_record_and_list_at_once(tmp_path: Path, gop_packets) -> None:
    store = ClipStore(tmp_path, max_bytes=10 * 1024 * 1024)
    size = record(ClipStore(tmp_path / "probe"), gop_packets).size
    errors: list[BaseException] = []

    def recorder(camera: str) -> None:
        try:
            for index in range(15):
                info = ClipInfo(str(uuid.uuid4()), camera, "recording", event_ts=WALL + index)
                store.begin(info)
                store.progress(info.event_id, size, WALL + index + 1, 10)
                store.save(replace(info, status="ready", size=size, from_ts=WALL + index, to_ts=WALL + index + 1))
                store.list(camera_id=camera, since=WALL, until=WALL + 100)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=recorder, args=(f"cam{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    stats = store.stats()
    assert stats.bytes <= stats.max_bytes and stats.clips == stats.bytes // size and stats.recording == 0
