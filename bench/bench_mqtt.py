"""Alert delivery benchmark: outbox (SQLite on disk, fsynced) + MqttSink vs bare paho publish.

Both run in the same process against the same real Mosquitto on 127.0.0.1, with the same payload,
QoS 1 and in-flight window, received by the same real subscriber:

* throughput: N messages produced as fast as possible; msg/s from the first publish/submit to the
  last message received by the subscriber (the outbox also with `submit` batches, one fsync
  per batch);
* latency: M messages produced at a steady rate (alert-like, far above real alert rates);
  creation (the `submit()` call / the bare `publish()` call) → receipt by the subscriber, p50/p95.

Prints the gateway/bare ratios; the target is p95 ≤ 100 ms on loopback. Run:

    .venv/bin/python bench/bench_mqtt.py [--messages 3000] [--rate 100] [--latency-messages 500]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

from gateway.config.models import MqttSection  # noqa: E402
from gateway.delivery.outbox import Outbox  # noqa: E402
from gateway.outputs.mqtt.sink import MqttSink  # noqa: E402
from mqtt_broker import Mosquitto  # noqa: E402

GATEWAY_ID = "bench"


class Sink:
    """A real subscriber: records receipt time − creation time per message id."""

    def __init__(self, port: int) -> None:
        self._cond = threading.Condition()
        self.latencies: dict[str, float] = {}
        self.last_at = 0.0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sink",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("bench/bare/#", 1), (f"gw/{GATEWAY_ID}/events/#", 1)])
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("sink could not subscribe")

    def _on_message(self, _c, _u, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        body = json.loads(message.payload)
        with self._cond:
            self.latencies.setdefault(body["event_id"], now - body["created"])
            self.last_at = now
            self._cond.notify_all()

    def reset(self) -> None:
        with self._cond:
            self.latencies.clear()

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.latencies) < count:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(f"only {len(self.latencies)}/{count} messages arrived in {timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def payload(index: int, tag: str, size: int) -> dict:
    body = {
        "schema": "gw.alert/1", "event_id": f"{tag}-{index}", "seq": 0, "state": "start", "type": "crowd",
        "severity": 2, "gateway_id": GATEWAY_ID, "camera_id": "cam1", "count": 12,
        "title_zh": "人员聚集：东门广场 12人", "created": time.time(),
    }
    body["pad"] = "x" * max(0, size - len(json.dumps(body, ensure_ascii=False).encode()))
    return body


def bare_client(port: int, window: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(window)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_phase(sink: Sink, send: Callable[[int], None], count: int, rate: float | None) -> dict:
    """Produce `count` messages through `send` (paced at `rate`/s if given); throughput and latency."""
    sink.reset()
    started = time.time()
    for index in range(count):
        if rate:
            target = started + index / rate
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
        send(index)
    sink.wait(count, timeout=120)
    values = list(sink.latencies.values())
    return {
        "msg_s": count / max(1e-9, sink.last_at - started),
        "p50_ms": percentile(values, 0.50) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "max_ms": max(values) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000, help="messages per throughput phase")
    parser.add_argument("--latency-messages", type=int, default=500, help="messages per latency phase")
    parser.add_argument("--rate", type=float, default=100.0, help="msg/s in the latency phases")
    parser.add_argument("--payload-bytes", type=int, default=1500)
    parser.add_argument("--window", type=int, default=32, help="QoS 1 messages in flight (both sides)")
    parser.add_argument("--batch", type=int, default=20, help="messages per submit() call in the batch phase")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the outbox lives (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        with Mosquitto(Path(tmp) / "broker", persistence=False) as broker:
            sink = Sink(broker.port)
            bare = bare_client(broker.port, args.window)
            outbox = Outbox.in_dir(data_dir)
            publisher = MqttSink(MqttSection(port=broker.port), GATEWAY_ID, outbox, window=args.window)
            publisher.start()
            if not publisher.wait_connected(10):
                raise RuntimeError("publisher did not connect")

            def bare_send(tag: str) -> Callable[[int], None]:
                return lambda i: bare.publish("bench/bare/cam1", json.dumps(payload(i, tag, args.payload_bytes)),
                                              qos=1)

            def gw_send(tag: str) -> Callable[[int], None]:
                return lambda i: publisher.submit([payload(i, tag, args.payload_bytes)])

            def gw_batch_send(tag: str, count: int) -> Callable[[int], None]:
                batch: list[dict] = []

                def send(i: int) -> None:
                    batch.append(payload(i, tag, args.payload_bytes))
                    if len(batch) == args.batch or i == count - 1:
                        publisher.submit(batch)
                        batch.clear()
                return send

            run_phase(sink, bare_send("warm-b"), 200, None)  # warm both paths up
            run_phase(sink, gw_send("warm-g"), 200, None)
            results = {
                "bare_tput": run_phase(sink, bare_send("tb"), args.messages, None),
                "gw_tput": run_phase(sink, gw_send("tg"), args.messages, None),
                "gw_batch": run_phase(sink, gw_batch_send("tm", args.messages), args.messages, None),
                "bare_lat": run_phase(sink, bare_send("lb"), args.latency_messages, args.rate),
                "gw_lat": run_phase(sink, gw_send("lg"), args.latency_messages, args.rate),
            }
            publisher.stop()
            outbox.close()
            bare.disconnect()
            bare.loop_stop()
            sink.close()
    report(results, args)
    return 0


def report(r: dict, args: argparse.Namespace) -> None:
    print(f"MQTT alert delivery, QoS 1, window {args.window}, payload {args.payload_bytes} B, "
          f"Mosquitto on 127.0.0.1, outbox SQLite WAL synchronous=FULL on disk")
    print("(burst latencies include queueing behind the burst; the paced rows are the latency figures)")
    print(f"{'':40}{'msg/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    rows = [
        (f"bare paho, burst of {args.messages}", r["bare_tput"]),
        (f"outbox+publisher, burst of {args.messages}", r["gw_tput"]),
        (f"  same, submit by {args.batch}", r["gw_batch"]),
        (f"bare paho, {args.rate:g} msg/s", r["bare_lat"]),
        (f"outbox+publisher, {args.rate:g} msg/s", r["gw_lat"]),
    ]
    for name, row in rows:
        print(f"{name:40}{row['msg_s']:10.0f}{row['p50_ms']:10.2f}{row['p95_ms']:10.2f}{row['max_ms']:10.2f}")
    ratio = r["gw_tput"]["msg_s"] / r["bare_tput"]["msg_s"]
    print(f"throughput ratio outbox+publisher / bare paho: {ratio:.2f} "
          f"(submit by {args.batch}: {r['gw_batch']['msg_s'] / r['bare_tput']['msg_s']:.2f}); "
          "one fsync per submit() of one message bounds the single-message rate")
    print(f"latency p95 at {args.rate:g} msg/s: {r['gw_lat']['p95_ms']:.2f} ms (bare {r['bare_lat']['p95_ms']:.2f} ms, "
          f"ratio {r['gw_lat']['p95_ms'] / max(1e-9, r['bare_lat']['p95_ms']):.2f}); target ≤ 100 ms: "
          f"{'met' if r['gw_lat']['p95_ms'] <= 100 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
