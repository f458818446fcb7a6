"""The delivery stack (router, MQTT output, history) on a data directory, driven over stdin.

The disk-full tests run it inside a small tmpfs (tests/small_disk.py): SQLite must open its files
from inside the mount namespace. One command per line, one JSON line in reply:

    emit N [picture] [apart]   route N start alerts of new events (apart: one route each, as
                               alerts come over a day, not in one batch) -> {"event_ids": [...]}
    tick               one supervision turn (router.tick)  -> the state
    state                                                   -> the state (see `state()`)
    stop               stop the router and exit            -> {"stopped": true}

With `--clips N` the data directory also holds N real evidence clips (2 s of the H.264 sample,
remuxed as the clip writer does) in a clip store that the router sheds first on a full disk,
as `gateway run` wires it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clip_support import VTEST_H264, read_packets  # noqa: E402
from delivery_support import delivery_config, make_router, sink, start_alert  # noqa: E402
from gateway.evidence.mp4 import write_clip  # noqa: E402
from gateway.evidence.store import ClipInfo, ClipStore  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--hold-max-kb", type=float, default=16 * 1024)
    parser.add_argument("--clear-s", type=float, default=1.0)
    parser.add_argument("--clips", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    config = delivery_config(Path(args.data_dir), mqtt_port=args.mqtt_port,
                             storage={"hold_max_mb": args.hold_max_kb / 1024})
    router = make_router(config, disk_clear_s=args.clear_s)
    if args.clips:
        router.room_makers.insert(0, clip_store(Path(args.data_dir), args.clips))
    mqtt = sink(router, "mqtt")
    made = 0

    def state() -> dict:
        health = router.health()
        outbox = mqtt.outbox.stats()
        pictures = sorted(p.name for p in (Path(args.data_dir) / "snapshots").glob("*.jpg"))
        clips = sorted(p.name for p in (Path(args.data_dir) / "clips").glob("*.mp4"))
        return {
            "disk_full": health["disk_full"], "disk_alert": router.disk_watch.active,
            "connected": mqtt.connected, "held": outbox.held, "clips": clips,
            "queued": outbox.depth, "problem": outbox.problem, "history": health["history"],
            "evictions": outbox.evictions, "pictures": pictures,
            "pending": [m.event_id for m in mqtt.outbox.pending(0, 1000)],
            "evicted": {m: router.history.get(m).snapshot_evicted for m in event_ids if router.history.get(m)},
        }

    event_ids: list[str] = []
    reply = lambda **fields: print(json.dumps(fields), flush=True)  # noqa: E731
    reply(ready=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "emit":
            picture = "picture" in words[2:]
            messages = [start_alert(made + index, picture=picture)[1] for index in range(int(words[1]))]
            made += len(messages)
            for batch in ([[message] for message in messages] if "apart" in words[2:] else [messages]):
                router.route(batch)
            event_ids += [m.event_id for m in messages]
            reply(event_ids=[m.event_id for m in messages])
        elif words[0] == "tick":
            router.tick()
            reply(**state())
        elif words[0] == "state":
            reply(**state())
        elif words[0] == "stop":
            break
    router.stop()
    reply(stopped=True)
    return 0


def clip_store(data_dir: Path, count: int) -> ClipStore:
    """`count` finished clips of real packets, as the clip writer leaves them."""
    store = ClipStore(data_dir)
    packets = read_packets(VTEST_H264, limit=10)  # 1 s: a 2 MB disk holds two of them beside the rest
    for index in range(count):
        info = ClipInfo(str(uuid.uuid4()), "gate", "recording", event_ts=1_750_000_000.0 + index)
        path = store.begin(info)
        write_clip(path, packets)
        store.save(replace(info, status="ready", from_ts=info.event_ts, to_ts=info.event_ts + 0.9,
                           size=path.stat().st_size, packets=len(packets), codec="h264"))
    return store


if __name__ == "__main__":
    sys.exit(main())
