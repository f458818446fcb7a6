"""One camera's analytics: masks -> tracker -> zones -> rules -> alert messages.

Pure logic driven by the caller's clock: `t` (monotonic seconds; a file's timestamps in replay)
times the rules, `now` (aware wall clock) stamps the payloads and decides schedules.

Who is counted:
- `FrameResult.boxes/scores/track_ids` and `zone_counts` are the confirmed tracks seen in this
  frame. A new person becomes confirmed on their second detection (ByteTrack's tentative
  stage; everyone on the very first frame is confirmed at once), so one-frame false positives
  never count.
- Rules count the *present* people: those seen now plus confirmed tracks missed for at most
  `coast_frames` frames (at their predicted position). A detector miss therefore does not
  drop the count, end a gathering, or fake a 'growth' when the person reappears.
- With a counting model (`counting.mode` model or auto), crowd and growth rules and the zone
  counts use the count `CountSwitch` chooses per place: the model's estimate where the scene
  is dense, the detector's elsewhere (`gateway.analytics.counting`). Gatherings and loitering
  always work on tracks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from detectors.base import Detections
from gateway.analytics.alerts import AlertDesk, FrameSource
from gateway.analytics.counting import CountingModel, CountMap, CountSwitch, CrowdCounter
from gateway.analytics.geometry import (
    Region,
    foot_points,
    frame_rectangle,
    ground_model,
    polygon_to_frame,
)
from gateway.analytics.rules.engine import RuleEngine
from gateway.analytics.rules.scene import Scene
from gateway.analytics.tracker import ByteTracker, TrackerSettings, TrackFrame
from gateway.config.models import Camera, GatewaySection
from gateway.events.lifecycle import AlertMessage
from gateway.events.snapshot import Evidence, Snapshot, take_snapshot
from gateway.privacy import fill_masks

COAST_FRAMES = 3
"""A confirmed person missed for up to this many analysed frames is still counted."""


@dataclass(frozen=True)
class FrameResult:
    """What one analysed frame produced (see the module docstring for who is counted).

    persons/zone_counts: the counts the rules used (detector people seen in this frame, or the
    model's estimate where it was chosen); detected: people the detector sees (len(boxes));
    estimated: the counting model's estimate for the frame (None without a model or while its
    background warms up), as it is, not steadied; count_source: where `persons` comes from;
    zone_sources: where each zone's count comes from; counting_failure: why the counting model
    was given up on this frame (the frame was counted with the detector).
    """

    boxes: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray
    zone_counts: dict[str, int]
    events: list[AlertMessage] = field(default_factory=list)
    persons: int = 0
    detected: int = 0
    estimated: float | None = None
    count_source: str = "detector"
    count_map: CountMap | None = None
    counting_failure: str | None = None
    zone_sources: dict[str, str] = field(default_factory=dict)


class CameraAnalytics:
    """The analytics of one camera, fed frame by frame (see the module docstring).

    frame_size: (width, height) of the decoded frames; polygons are scaled to it once here.
    details: facts every alert of this view carries in `details` (e.g. the PTZ preset).
    counting_model: the camera's fitted counting model (None: count with the detector);
    counting_features: keep a counter (background and features) even without a model, for an
    installer annotating frames. counting_mode: overrides `camera.counting.mode` (a model fitted
    in the page counts in `auto` until the configuration says otherwise).
    Use: `masked = prepare(frame)` -> detector -> `process(detections, t, now, masked,
    counting_image=masked)`; `close_all` at shutdown ends whatever is still open.
    """

    def __init__(
        self,
        camera: Camera,
        gateway: GatewaySection,
        frame_size: tuple[int, int],
        tracker: TrackerSettings | None = None,
        coast_frames: int = COAST_FRAMES,
        details: dict | None = None,
        counting_model: CountingModel | None = None,
        counting_features: bool = False,
        counting_mode: str | None = None,
    ):
        self.camera = camera
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.masks = [polygon_to_frame(m.polygon, camera, self.frame_size) for m in camera.masks]
        self.zones = {z.id: polygon_to_frame(z.polygon, camera, self.frame_size) for z in camera.zones}
        self._mask_regions = [Region(mask) for mask in self.masks]
        self._zone_regions = {zone: Region(polygon) for zone, polygon in self.zones.items()}
        self.ground = ground_model(camera, self.frame_size)
        self.zone_area_m2: dict[str | None, float | None] = {
            zone: self.ground.area_m2(polygon) for zone, polygon in self.zones.items()
        }
        self.zone_area_m2[None] = self.ground.area_m2(frame_rectangle(self.frame_size))
        self.coast_frames = coast_frames
        self.tracker = ByteTracker(tracker)
        self.engines = [RuleEngine(rule, ZoneInfo(gateway.timezone)) for rule in camera.rules]
        self.desk = AlertDesk(camera, gateway, self.frame_size, self.zones, self.masks, details)
        self.switch = CountSwitch(counting_mode or camera.counting.mode)  # type: ignore[arg-type]
        self.counter = (CrowdCounter(self.frame_size, self.zones, self.masks, counting_model)
                        if counting_model is not None or counting_features else None)

    def start_counting_features(self) -> None:
        """Keep a counter (background and features) running without a model, for annotation."""
        if self.counter is None:
            self.counter = CrowdCounter(self.frame_size, self.zones, self.masks)

    def use_counting_model(self, model: CountingModel, mode: str) -> None:
        """Count with a newly fitted model from the next frame on (the background stays warm)."""
        if self.counter is None:
            self.counter = CrowdCounter(self.frame_size, self.zones, self.masks, model)
        else:
            self.counter.use_model(model)
        self.switch = CountSwitch(mode)  # type: ignore[arg-type]

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """The frame the detector should see: private areas filled (a copy only if there are any)."""
        self._check_size(frame)
        if not self.masks:
            return frame
        masked = frame.copy()
        fill_masks(masked, self.masks)
        return masked

    def prepare_scaled(self, image: np.ndarray) -> np.ndarray:
        """`prepare` for the frame already shrunk to the detector's input (replay's fast path):
        the private areas are filled at that scale."""
        height, width = image.shape[:2]
        if (width, height) == self.frame_size:
            return self.prepare(image)
        if not self.masks:
            return image
        scale = np.array([width / self.frame_size[0], height / self.frame_size[1]], np.float32)
        masked = image.copy()
        fill_masks(masked, [mask * scale for mask in self.masks])
        return masked

    def process(
        self, detections: Detections, t: float, now: datetime, frame: FrameSource | None = None,
        sensors: Mapping[str, bool] | None = None, counting_image: np.ndarray | None = None,
    ) -> FrameResult:
        """Track, count and evaluate rules for one analysed frame; `frame` is for snapshots;
        `sensors` (sensor id -> active) for rules conditioned on a sensor; `counting_image`
        (the masked frame) for the counting model."""
        if isinstance(frame, np.ndarray):
            self._check_size(frame)
        boxes, scores = self.unmasked(detections)
        count_map, counting_failure = None, None
        if self.counter is not None and counting_image is not None:
            try:
                count_map = self.counter.observe(counting_image, boxes, t)
            except Exception as error:  # noqa: BLE001 - a counting model must not cost the frame: the detector counts
                counting_failure = self._give_up_counting(error)
        people, _ = self.tracker.update(boxes, scores, t)
        scene = self._scene(people, t, sensors or {}, count_map)
        signals = [signal for engine in self.engines for signal in engine.step(scene, now)]
        events = self.desk.handle(signals, scene, now, frame)
        seen = people.visible
        persons, source = scene.count_in(None)
        return FrameResult(
            boxes=people.boxes[seen],
            scores=people.scores[seen],
            track_ids=people.ids[seen],
            zone_counts={zone: self._output_count(scene, zone, seen) for zone in self.zones},
            events=events,
            persons=persons if source == "model" else int(np.count_nonzero(seen)),
            detected=int(np.count_nonzero(seen)),
            estimated=None if count_map is None else round(count_map.total, 1),
            count_source=source,
            count_map=count_map,
            counting_failure=counting_failure,
            zone_sources={zone: scene.count_in(zone)[1] for zone in self.zones},
        )

    def _give_up_counting(self, error: Exception) -> str:
        """Count with the detector from now on (the model, or the features when there is no
        model, failed); returns why, in one line."""
        if self.counter is not None and self.counter.model is not None:
            self.counter.drop_model()
        else:
            self.counter = None
        return " ".join(f"{type(error).__name__}: {error}".split())[:200]

    @staticmethod
    def _output_count(scene: Scene, zone: str, seen: np.ndarray) -> int:
        """A zone's count for outputs: the model's when chosen, else the people seen now."""
        count, source = scene.count_in(zone)
        return count if source == "model" else int(np.count_nonzero(scene.in_zone[zone] & seen))

    @property
    def has_open_events(self) -> bool:
        """An event is running: the motion gate must not skip frames (a still crowd is a crowd)."""
        return self.desk.has_open_events

    def live_snapshot(self, frame: np.ndarray, result: FrameResult | None, now: datetime) -> Snapshot:
        """The frame as the analysis sees it, for the live view and the centre's remote look:
        masks filled, every zone outlined, the last analysed people boxed, count and time."""
        boxes = result.boxes if result is not None else np.zeros((0, 4), np.float32)
        track_ids = result.track_ids if result is not None else np.zeros((0,), np.int64)
        evidence = Evidence(
            boxes=boxes, track_ids=track_ids, highlight=np.zeros(len(boxes), bool),
            zones=tuple(self.zones.values()), masks=self.masks,
            caption=(f"{self.camera.id}  people {len(boxes)}", now.strftime("%Y-%m-%d %H:%M:%S %z")),
        )
        return take_snapshot(frame, evidence, now)

    def close_all(self, t: float, now: datetime) -> list[AlertMessage]:
        """End every open event (shutdown, end of a replay); rules start afresh afterwards."""
        signals = [signal for engine in self.engines for signal in engine.close(t)]
        return self.desk.close(signals, t, now)

    def unmasked(self, detections: Detections) -> tuple[np.ndarray, np.ndarray]:
        """Detections whose foot point is outside every mask (people standing in private areas)."""
        boxes = np.asarray(detections.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(detections.scores, dtype=np.float32).reshape(-1)
        if not self.masks or not len(boxes):
            return boxes, scores
        feet = foot_points(boxes)
        hidden = np.zeros(len(boxes), bool)
        for region in self._mask_regions:
            hidden |= region.contains(feet)
        return boxes[~hidden], scores[~hidden]

    def _scene(self, people: TrackFrame, t: float, sensors: Mapping[str, bool],
               count_map: CountMap | None) -> Scene:
        feet = foot_points(people.boxes)
        in_zone: dict[str | None, np.ndarray] = {
            zone: region.contains(feet) for zone, region in self._zone_regions.items()
        }
        in_zone[None] = np.ones(len(people), bool)
        present = people.missed <= self.coast_frames
        counts = {}
        for zone, members in in_zone.items():
            estimated = None if count_map is None else (count_map.total if zone is None else count_map.zones[zone])
            counts[zone] = self.switch.choose(zone, int(np.count_nonzero(present & members)), estimated, t)
        return Scene(
            t=t,
            people=people,
            present=present,
            in_zone=in_zone,
            zone_area_m2=self.zone_area_m2,
            ground=self.ground,
            sensors=sensors,
            counts=counts,
            count_map=count_map,
        )

    def _check_size(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if (width, height) != self.frame_size:
            raise ValueError(
                f"camera {self.camera.id}: frame is {width}x{height} but analytics were set up "
                f"for {self.frame_size[0]}x{self.frame_size[1]}"
            )
