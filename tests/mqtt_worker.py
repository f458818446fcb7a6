"""A gateway-shaped publishing process for the kill -9 test: outbox on disk + MqttSink.

Run as `python tests/mqtt_worker.py --db PATH --port N --gateway-id ID`. It prints JSON lines on
stdout (`{"ready": ...}`, `{"connected": true}`, replies to commands) and reads commands on stdin:

    put N PREFIX    queue N alerts: event ids PREFIX-0, PREFIX-1, … with seq 0..4 each
    depth           print the outbox depth
    stop            clean stop (the test normally sends SIGKILL instead)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.backoff import Backoff
from gateway.config.models import MqttSection  # noqa: E402
from gateway.delivery.outbox import Outbox  # noqa: E402
from gateway.outputs.mqtt.sink import MqttSink  # noqa: E402

_print_lock = threading.Lock()


def emit(**fields: object) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def alert(prefix: str, index: int) -> dict:
    event, seq = divmod(index, 5)
    return {
        "schema": "gw.alert/1",
        "event_id": f"{prefix}-{event}",
        "seq": seq,
        "state": "start" if seq == 0 else "update",
        "type": "crowd",
        "camera_id": "cam1",
        "count": 10 + index,
        "created": time.time(),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateway-id", default="gk")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    outbox = Outbox(args.db)
    settings = MqttSection(host="127.0.0.1", port=args.port, keepalive_s=5, heartbeat_s=5)
    publisher = MqttSink(settings, args.gateway_id, outbox, backoff=Backoff(0.2, 1.0))
    publisher.start()
    emit(ready=True, depth=outbox.depth())

    def report_connected() -> None:
        if publisher.wait_connected(60):
            emit(connected=True)

    threading.Thread(target=report_connected, daemon=True).start()

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "put":
            count, prefix = int(words[1]), words[2]
            for index in range(count):
                publisher.submit([alert(prefix, index)])
            emit(queued=count, depth=outbox.depth())
        elif words[0] == "depth":
            emit(depth=outbox.depth())
        elif words[0] == "stop":
            break
    publisher.stop()
    outbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
