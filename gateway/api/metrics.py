"""Prometheus metrics for operators (`GET /metrics`), in a registry of their own.

Live values are pulled on scrape from the live view, so nothing can go stale: per-camera state
from its `cameras()`, and every output, the MQTT connection and its outbox, and the data disk
from its `health()`. Only what happens as a stream of events is pushed: inference times (read
from the attached `TimedDetector`, or `observe_inference`) and alerts (counted from the
`EventHistory` as new events arrive, or `count_alert` by hand).

Series (all prefixed `gateway_`):

    camera_up{camera}                      1 while the camera is streaming
    camera_state{camera,state}             1 for the camera's current state
    camera_analysed_fps{camera}            frames per second handed to the detector
    camera_decoded_fps{camera}             frames per second decoded
    camera_frame_age_seconds{camera}       age of the newest frame (absent before the first frame)
    camera_reconnects_total{camera}        reconnections since start
    camera_skip_ratio{camera}              share of due frames the motion gate skipped
    camera_tiles_per_frame{camera}         detector runs per analysed frame (tiled detection)
    camera_inference_ms{camera}            mean detector time per analysed frame, all its tiles
    camera_patrol_state{camera,state}      PTZ patrol cameras: 1 for the patrol's current state
                                           (moving, settling, watching, away, failing, stopped)
    camera_patrol_fault{camera}            1 while the patrol (or a stop) fails past patrol_fault_after_s
    camera_patrol_moves_total{camera}      confirmed moves to a patrol stop
    camera_patrol_move_failures_total{camera}  failed move attempts (each one retried)
    camera_patrol_move_seconds{camera}     how long the last confirmed move took
    camera_packet_ring_bytes{camera}       encoded video the camera's packet ring holds for clips' pre-roll
    camera_packet_ring_seconds{camera}     how many seconds of video that is
    camera_packet_ring_lost_packets_total{camera}  packets a slow clip writer lost (its clip is partial)
    clips / clips_recording                evidence clips kept, and being recorded now
    clips_bytes / clips_max_bytes          the clip folder's size and its cap (storage.clips_max_mb)
    clips_shed_bytes_total                 clip bytes deleted because the data disk was full
    ready{component}                       readiness checks (1 = alive)
    inference_ms                           histogram of detector run time per frame, milliseconds:
                                           pulled from an attached `TimedDetector`-like source
                                           (`bucket_counts`, `count`, `total_ms`, edges
                                           `gateway.camera.timing.INFERENCE_MS_BUCKETS`), else what
                                           `observe_inference` recorded
    outbox_depth                           alert messages not yet acknowledged by the broker
    outbox_bytes / outbox_max_bytes        queued bytes and the cap
    outbox_oldest_undelivered_age_seconds  age of the oldest queued message (0 when empty)
    outbox_evictions_total{kind}           evictions by kind (snapshot, superseded_update, message)
    mqtt_connected                         1 while connected to the broker
    mqtt_published_total                   alert messages acknowledged by the broker
    mqtt_publish_latency_ms{quantile}      put -> PUBACK latency over the last 1000 messages
                                           (quantile 0.5, 0.95 and 1 = max)
    output_up{output}                      1 while the output's delivery thread runs (mqtt, webhook:<id>, ...)
    output_connected{output}               1 while it reaches its far end (MQTT connected, last POST 2xx)
    output_queued{output}                  alerts not yet delivered by it (in its outbox or held in memory)
    output_held_in_memory{output}          of those, alerts held in memory because the disk cannot take them
    output_oldest_undelivered_age_seconds{output}  age of its oldest undelivered alert (0 when none)
    output_delivered_total{output}         alerts its far end took since start
    output_delivery_latency_ms{output,quantile}  put -> delivered latency over its last 1000 alerts
    output_live_streams{output}            GB/T 28181: video streams open to the platform (live and playback)
    output_live_camera_streams{output,camera}  of those, per camera (cameras with a stream open)
    output_live_bytes_total{output,camera} bytes of video sent to the platform, per camera
    output_live_frames_total{output}       video frames sent to the platform
    output_live_invites_total{output}      the platform's INVITEs (requests for video)
    output_live_refused_total{output,reason}  INVITEs refused, by reason (unknown_channel, offline, busy,
                                           bad_offer, no_video, no_recording, codec, no_port, ...)
    output_live_ended_total{output,by}     sessions ended by the platform (BYE) or by the gateway
                                           (camera stopped or silent, clip over, peer gone, no ACK)
    disk_full                              1 while the data disk cannot take alerts (see the disk_full alert)
    alerts_total{type}                     new events by type
    history_snapshot_bytes                 evidence pictures kept for the web page
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.camera.timing import INFERENCE_MS_BUCKETS
from gateway.events.types import ALERT_TYPES
from gateway.onvif.patrol import PATROL_STATES
from gateway.status import CAMERA_STATES, GatewayView

if TYPE_CHECKING:
    from gateway.delivery.history import HistoryStats

log = logging.getLogger(__name__)

PREFIX = "gateway"


class InferenceSource(Protocol):
    """Detector timings in histogram form (the service's `TimedDetector`), read on each scrape:
    `bucket_counts` has one count per edge of INFERENCE_MS_BUCKETS plus one for +Inf."""

    bucket_counts: list[int]
    count: int
    total_ms: float


class HistorySource(Protocol):
    def stats(self) -> HistoryStats: ...

    def subscribe(self, listener: Callable[[Any, str], None]) -> Callable[[], None]: ...


class GatewayMetrics:
    """The gateway's metrics registry: a few pushed series plus a collector that pulls the rest.

    Sources can be given at construction or later with `attach` (the service builds its parts
    in order); a missing source simply exports nothing for its series.
    """

    def __init__(self, view: GatewayView | None = None, history: HistorySource | None = None,
                 inference: InferenceSource | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self.view = view
        self.history: HistorySource | None = None
        self.inference = inference
        self._unsubscribe: Callable[[], None] | None = None
        self._pushed = _Histogram(INFERENCE_MS_BUCKETS)
        self._alerts = dict.fromkeys(ALERT_TYPES, 0)
        self.registry.register(_LiveCollector(self))
        if history is not None:
            self.attach(history=history)

    def attach(self, *, view: GatewayView | None = None, history: HistorySource | None = None,
               inference: InferenceSource | None = None) -> None:
        """Add sources after construction; a history is subscribed to, to count new events.

        inference: an object with `bucket_counts` (one per edge plus +Inf), `count` and
        `total_ms` (the service's `TimedDetector`), read on each scrape.
        """
        with self._lock:
            if inference is not None:
                self.inference = inference
            if view is not None:
                self.view = view
            if history is not None and history is not self.history:
                if self._unsubscribe is not None:
                    self._unsubscribe()
                self.history = history
                self._unsubscribe = history.subscribe(self._on_history_change)

    # ------------------------------------------------------------------ pushed

    def observe_inference(self, ms: float) -> None:
        """One detector call took `ms` milliseconds (used when no inference source is attached)."""
        if ms >= 0 and math.isfinite(ms):
            self._pushed.observe(ms)

    def count_alert(self, alert_type: str) -> None:
        """One new event of `alert_type` (done automatically for a history given to `attach`)."""
        key = alert_type if alert_type in ALERT_TYPES else "other"
        with self._lock:
            self._alerts[key] = self._alerts.get(key, 0) + 1

    def alert_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._alerts)

    def _on_history_change(self, record: Any, kind: str) -> None:
        if kind == "new":
            self.count_alert(record.type)

    # ------------------------------------------------------------------ exposition

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _LiveCollector(Collector):
    """Pulls camera, outbox and publisher state on each scrape."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on what is attached; nothing to pre-declare

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        try:
            yield self._inference(m)
        except Exception as exc:  # noqa: BLE001 - an attached inference source failing must not break the scrape
            log.warning("metrics: cannot read inference times: %s", exc)
        alerts = CounterMetricFamily(f"{PREFIX}_alerts", "New alert events by type.", labels=["type"])
        for alert_type, count in m.alert_counts().items():
            alerts.add_metric([alert_type], float(count))
        yield alerts
        parts: list[tuple[str, Callable[[], Iterator[Metric]]]] = []
        view, history = m.view, m.history
        if view is not None:
            parts += [("cameras", lambda: self._cameras(view)), ("outputs", lambda: self._outputs(view.health()))]
        if history is not None:
            parts.append(("history", lambda: self._history(history)))
        for part, read in parts:
            try:
                yield from read()
            except Exception as exc:  # noqa: BLE001 - a broken source must not break the whole scrape
                log.warning("metrics: cannot read %s: %s", part, exc)

    @staticmethod
    def _inference(m: GatewayMetrics) -> Metric:
        source = m.inference
        if source is not None:
            edges = getattr(source, "buckets", None)
            if edges is None:
                edges = INFERENCE_MS_BUCKETS
            counts, count, total = list(source.bucket_counts), int(source.count), float(source.total_ms)
        else:
            edges, counts, count, total = m._pushed.snapshot()
        family = HistogramMetricFamily(f"{PREFIX}_inference_ms", "Detector run time per detector run (a tiled frame is "
                                                                 "several runs), milliseconds.")
        cumulative, buckets = 0, []
        for edge, n in zip([*map(float, edges), math.inf], counts, strict=True):  # counts: one per edge, +Inf
            cumulative += n
            buckets.append(("+Inf" if edge == math.inf else _edge(edge), float(cumulative)))
        family.add_metric([], buckets, sum_value=total)
        return family

    def _cameras(self, view: GatewayView) -> Iterator[Metric]:
        cameras = view.cameras()
        up = _gauge("camera_up", "1 while the camera is streaming.", ["camera"])
        state = _gauge("camera_state", "1 for the camera's current state.", ["camera", "state"])
        analysed = _gauge("camera_analysed_fps", "Frames per second handed to the detector.", ["camera"])
        decoded = _gauge("camera_decoded_fps", "Frames per second decoded.", ["camera"])
        age = _gauge("camera_frame_age_seconds", "Age of the newest decoded frame.", ["camera"])
        reconnects = CounterMetricFamily(f"{PREFIX}_camera_reconnects", "Stream reconnections since start.",
                                         labels=["camera"])
        skip = _gauge("camera_skip_ratio", "Share of due frames skipped by the motion gate.", ["camera"])
        tiles = _gauge("camera_tiles_per_frame", "Detector runs per analysed frame (tiled detection).", ["camera"])
        frame_ms = _gauge("camera_inference_ms", "Mean detector time per analysed frame, all its tiles, "
                                                 "milliseconds.", ["camera"])
        for cam in cameras:
            up.add_metric([cam.id], 1.0 if cam.state == "streaming" else 0.0)
            for name in CAMERA_STATES:
                state.add_metric([cam.id, name], 1.0 if cam.state == name else 0.0)
            analysed.add_metric([cam.id], float(cam.analysed_fps or 0.0))
            decoded.add_metric([cam.id], float(cam.decoded_fps or 0.0))
            if cam.last_frame_age_s is not None:
                age.add_metric([cam.id], float(cam.last_frame_age_s))
            reconnects.add_metric([cam.id], float(cam.reconnects or 0))
            if cam.skip_ratio is not None:
                skip.add_metric([cam.id], float(cam.skip_ratio))
            tiles.add_metric([cam.id], float(cam.tiles_per_frame))
            if cam.inference_ms is not None:
                frame_ms.add_metric([cam.id], float(cam.inference_ms))
        yield from (up, state, analysed, decoded, age, reconnects, skip, tiles, frame_ms)
        yield from self._patrols(cameras)
        ready = _gauge("ready", "Readiness checks (1 = alive).", ["component"])
        for component, alive in sorted(view.readiness().items()):
            ready.add_metric([component], 1.0 if alive else 0.0)
        yield ready

    @staticmethod
    def _patrols(cameras: list[Any]) -> Iterator[Metric]:
        state = _gauge("camera_patrol_state", "1 for the PTZ patrol's current state.", ["camera", "state"])
        fault = _gauge("camera_patrol_fault", "1 while the PTZ patrol cannot move (patrol_fault alert).",
                       ["camera"])
        moves = CounterMetricFamily(f"{PREFIX}_camera_patrol_moves", "Confirmed moves to a patrol stop.",
                                    labels=["camera"])
        failures = CounterMetricFamily(f"{PREFIX}_camera_patrol_move_failures",
                                       "Failed PTZ move attempts (each one retried).", labels=["camera"])
        seconds = _gauge("camera_patrol_move_seconds", "How long the last confirmed PTZ move took.",
                         ["camera"])
        for cam in cameras:
            patrol = getattr(cam, "patrol", None)
            if patrol is None:
                continue
            for name in PATROL_STATES:
                state.add_metric([cam.id, name], 1.0 if patrol.state == name else 0.0)
            fault.add_metric([cam.id], 1.0 if patrol.fault else 0.0)
            moves.add_metric([cam.id], float(patrol.moves))
            failures.add_metric([cam.id], float(patrol.move_failures))
            if patrol.last_move_s is not None:
                seconds.add_metric([cam.id], float(patrol.last_move_s))
        yield from (state, fault, moves, failures, seconds)

    def _outputs(self, health: dict[str, Any]) -> Iterator[Metric]:
        yield from self._evidence(health)
        yield from self._delivery(health)
        yield from self._live_video(health)
        mqtt = (health.get("outputs") or {}).get("mqtt")
        if mqtt is not None:
            yield from self._outbox(mqtt)
            yield from self._publisher(mqtt)

    @staticmethod
    def _evidence(health: dict[str, Any]) -> Iterator[Metric]:
        """The memory each camera's packet ring holds, and the clip folder (health's `clips`)."""
        ring_bytes = _gauge("camera_packet_ring_bytes", "Encoded video held for clips' pre-roll, bytes.", ["camera"])
        ring_seconds = _gauge("camera_packet_ring_seconds", "Seconds of video the packet ring holds.", ["camera"])
        lost = CounterMetricFamily(f"{PREFIX}_camera_packet_ring_lost_packets", "Packets a slow clip writer lost.",
                                   labels=["camera"])
        for camera_id, camera in sorted((health.get("cameras") or {}).items()):
            ring = camera.get("packet_ring")
            if ring:
                ring_bytes.add_metric([camera_id], float(ring.get("bytes") or 0))
                ring_seconds.add_metric([camera_id], float(ring.get("seconds") or 0.0))
                lost.add_metric([camera_id], float(ring.get("lost_packets") or 0))
        yield from (ring_bytes, ring_seconds, lost)
        clips = health.get("clips")
        if clips:
            yield _value("clips", "Evidence clips kept.", clips.get("clips") or 0)
            yield _value("clips_recording", "Evidence clips being recorded now.", clips.get("recording") or 0)
            yield _value("clips_bytes", "Size of the evidence clip folder, bytes.", clips.get("bytes") or 0)
            yield _value("clips_max_bytes", "Cap of the clip folder (storage.clips_max_mb).",
                         clips.get("max_bytes") or 0)
            shed = CounterMetricFamily(f"{PREFIX}_clips_shed_bytes", "Clip bytes deleted for a full data disk.")
            shed.add_metric([], float(clips.get("shed_bytes") or 0))
            yield shed

    @staticmethod
    def _outbox(mqtt: dict[str, Any]) -> Iterator[Metric]:
        """The MQTT output's outbox (the series kept from before outputs existed)."""
        for name, doc, key in (
            ("outbox_depth", "Alert messages not yet acknowledged by the broker.", "outbox_depth"),
            ("outbox_bytes", "Bytes of queued alert messages.", "outbox_bytes"),
            ("outbox_max_bytes", "Cap of the outbox (storage.outbox_max_mb).", "outbox_max_bytes"),
            ("outbox_oldest_undelivered_age_seconds", "Age of the oldest undelivered alert message (0 when none).",
             "oldest_undelivered_age_s"),
        ):
            yield _value(name, doc, mqtt.get(key) or 0)
        evictions = CounterMetricFamily(f"{PREFIX}_outbox_evictions", "Outbox evictions by kind.", labels=["kind"])
        for kind, count in sorted((mqtt.get("evictions") or {}).items()):
            evictions.add_metric([kind], float(count))
        yield evictions

    @staticmethod
    def _publisher(health: dict[str, Any]) -> Iterator[Metric]:
        yield _value("mqtt_connected", "1 while connected to the MQTT broker.", 1.0 if health.get("connected") else 0.0)
        published = CounterMetricFamily(f"{PREFIX}_mqtt_published", "Alert messages acknowledged by the broker.")
        published.add_metric([], float(health.get("published") or 0))
        yield published
        reconnects = CounterMetricFamily(f"{PREFIX}_mqtt_reconnects", "Reconnections to the MQTT broker.")
        reconnects.add_metric([], float(health.get("reconnects") or 0))
        yield reconnects
        latency = health.get("publish_latency") or {}
        family = _gauge("mqtt_publish_latency_ms",
                        "Alert put -> PUBACK latency over the last 1000 messages (quantile 1 = max).", ["quantile"])
        for quantile, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("1", "max_ms")):
            if latency.get(key) is not None:
                family.add_metric([quantile], float(latency[key]))
        yield family

    @staticmethod
    def _delivery(health: dict[str, Any]) -> Iterator[Metric]:
        up = _gauge("output_up", "1 while the output's delivery thread runs.", ["output"])
        connected = _gauge("output_connected", "1 while the output reaches its far end.", ["output"])
        queued = _gauge("output_queued", "Alerts not yet delivered by the output.", ["output"])
        held = _gauge("output_held_in_memory", "Alerts held in memory: the data disk cannot take them.", ["output"])
        age = _gauge("output_oldest_undelivered_age_seconds", "Age of the oldest undelivered alert.", ["output"])
        delivered = CounterMetricFamily(f"{PREFIX}_output_delivered", "Alerts the far end took since start.",
                                        labels=["output"])
        latency = _gauge("output_delivery_latency_ms", "Put -> delivered latency over the last 1000 alerts "
                         "(quantile 1 = max).", ["output", "quantile"])
        skew = _gauge("output_clock_skew_seconds", "The far end's clock minus the gateway's (GB/T 28181: the "
                      "Date of the REGISTER answer).", ["output"])
        foreign = CounterMetricFamily(f"{PREFIX}_output_foreign_datagrams", "Datagrams dropped because they did "
                                      "not come from the output's far end (GB/T 28181).", labels=["output"])
        for name, output in sorted(health.get("outputs", {}).items()):
            up.add_metric([name], 1.0 if output.get("alive") else 0.0)
            connected.add_metric([name], 1.0 if output.get("connected") else 0.0)
            queued.add_metric([name], float(output.get("queued") or 0))
            held.add_metric([name], float(output.get("held_in_memory") or 0))
            age.add_metric([name], float(output.get("oldest_undelivered_age_s") or 0.0))
            delivered.add_metric([name], float(output.get("delivered") or 0))
            if output.get("clock_skew_s") is not None:
                skew.add_metric([name], float(output["clock_skew_s"]))
            if output.get("foreign_datagrams") is not None:
                foreign.add_metric([name], float(output["foreign_datagrams"]))
            summary = output.get("delivery_latency") or output.get("publish_latency") or {}
            for quantile, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("1", "max_ms")):
                if summary.get(key) is not None:
                    latency.add_metric([name, quantile], float(summary[key]))
        yield from (up, connected, queued, held, age, delivered, latency, skew, foreign)
        yield _value("disk_full", "1 while the data disk cannot take alerts.", 1.0 if health.get("disk_full") else 0.0)

    @staticmethod
    def _live_video(health: dict[str, Any]) -> Iterator[Metric]:
        """The video streams of the outputs that serve video (GB/T 28181)."""
        streams = _gauge("output_live_streams", "Video streams open to the platform.", ["output"])
        per_camera = _gauge("output_live_camera_streams", "Video streams open to the platform, per camera.",
                            ["output", "camera"])
        sent = CounterMetricFamily(f"{PREFIX}_output_live_bytes", "Bytes of video sent to the platform.",
                                   labels=["output", "camera"])
        frames = CounterMetricFamily(f"{PREFIX}_output_live_frames", "Video frames sent to the platform.",
                                     labels=["output"])
        invites = CounterMetricFamily(f"{PREFIX}_output_live_invites", "The platform's requests for video.",
                                      labels=["output"])
        refused = CounterMetricFamily(f"{PREFIX}_output_live_refused", "Requests for video refused, by reason.",
                                      labels=["output", "reason"])
        ended = CounterMetricFamily(f"{PREFIX}_output_live_ended", "Video sessions ended, by who ended them.",
                                    labels=["output", "by"])
        for name, output in sorted(health.get("outputs", {}).items()):
            if "live_streams" not in output:
                continue
            streams.add_metric([name], float(output["live_streams"]))
            for camera, count in sorted((output.get("live_streams_by_camera") or {}).items()):
                per_camera.add_metric([name, camera], float(count))
            for camera, count in sorted((output.get("live_bytes_by_camera") or {}).items()):
                sent.add_metric([name, camera], float(count))
            frames.add_metric([name], float(output.get("live_frames_sent") or 0))
            invites.add_metric([name], float(output.get("live_invites") or 0))
            for reason, count in sorted((output.get("live_refused") or {}).items()):
                refused.add_metric([name, reason], float(count))
            for by in ("gateway", "platform"):
                ended.add_metric([name, by], float(output.get(f"live_ended_by_{by}") or 0))
        yield from (streams, per_camera, sent, frames, invites, refused, ended)

    def _history(self, history: HistorySource) -> Iterator[Metric]:
        stats = history.stats()
        yield _value("history_snapshot_bytes", "Evidence pictures kept for the web page, bytes.", stats.snapshot_bytes)
        yield _value("history_events", "Events in the web page's history.", stats.events)


class _Histogram:
    """Thread-safe bucket counts for pushed observations."""

    def __init__(self, edges: tuple[float, ...]) -> None:
        self.edges = edges
        self._counts = [0] * (len(edges) + 1)
        self._count = 0
        self._total = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = next((i for i, edge in enumerate(self.edges) if value <= edge), len(self.edges))
        with self._lock:
            self._counts[index] += 1
            self._count += 1
            self._total += value

    def snapshot(self) -> tuple[tuple[float, ...], list[int], int, float]:
        with self._lock:
            return self.edges, list(self._counts), self._count, self._total


def _edge(value: float) -> str:
    return str(float(value))


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)


def _value(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(value))
